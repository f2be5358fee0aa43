"""Known people: the gallery loader, its cache, bad input, voting, and the real clip when present."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib")

from emoreel.errors import DataError, InputError  # noqa: E402
from emoreel.faces.gallery import Embedder, Gallery  # noqa: E402
from emoreel.faces.identify import UNKNOWN, Identifier  # noqa: E402
from emoreel.media.sample import astronaut  # noqa: E402
from emoreel.types import Faces  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = SHARED / "video" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def write(path: Path, img) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def load(folder, embedder, tmp_path, **kw) -> Gallery:
    return Gallery.load(folder, embedder, cache_dir=tmp_path / "cache", **kw)


# --------------------------------------------------------------------------- gallery


def test_single_files_and_subfolders(tmp_path, embedder):
    g = tmp_path / "g"
    write(g / "collins.jpg", astronaut())
    write(g / "eileen" / "a.jpg", astronaut()[:, ::-1])
    write(g / "eileen" / "b.png", cv2.resize(astronaut()[40:480, 40:480], (300, 300)))  # cropped, smaller
    (g / "notes.txt").write_text("ignored")
    write(g / ".hidden.jpg", np.zeros((10, 10, 3), np.uint8))  # hidden: ignored
    gal = load(g, embedder, tmp_path)
    assert gal.people == ["collins", "eileen"]
    assert gal.names.count("eileen") == 2 and gal.embeddings.shape == (3, 128)
    assert gal.files == ["collins.jpg", "eileen/a.jpg", "eileen/b.png"] and gal.from_cache == 0
    names, d = gal.match(gal.embeddings[:1])
    assert names == ["collins"] and d[0] < 1e-5  # an embedding matches itself
    assert float(np.linalg.norm(gal.embeddings[0] - gal.embeddings[1])) < 0.6  # same person, mirrored
    assert float(np.linalg.norm(gal.embeddings[0] - gal.embeddings[2])) < 0.6  # same person, cropped


def test_cache_is_used_and_invalidated_per_file(tmp_path, embedder):
    g = tmp_path / "g"
    write(g / "a.jpg", astronaut())
    write(g / "b.jpg", astronaut()[:, ::-1])
    write(g / "c" / "1.jpg", cv2.resize(astronaut(), (400, 400)))
    before = embedder.computed
    first = load(g, embedder, tmp_path)
    assert embedder.computed - before == 3 and first.from_cache == 0
    second = load(g, embedder, tmp_path)
    assert embedder.computed - before == 3 and second.from_cache == 3  # nothing embedded again
    np.testing.assert_allclose(second.embeddings, first.embeddings, atol=1e-5)

    st = (g / "a.jpg").stat()
    os.utime(g / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    (g / "c" / "1.jpg").rename(g / "c" / "2.jpg")  # renamed
    assert load(g, embedder, tmp_path).from_cache == 3
    assert embedder.computed - before == 3  # found again by content hash

    write(g / "b.jpg", cv2.resize(astronaut(), (300, 300)))  # a changed photo
    third = load(g, embedder, tmp_path)
    assert embedder.computed - before == 4 and third.from_cache == 2  # only b again
    assert third.files == ["a.jpg", "b.jpg", "c/2.jpg"]
    assert not list(g.rglob(".*")), "nothing is written into the photo folder"


def test_cache_of_another_model_or_corrupt_is_ignored(tmp_path, embedder):
    g = tmp_path / "g"
    write(g / "a.jpg", astronaut())
    load(g, embedder, tmp_path)
    jittered = Embedder(jitter=1)
    assert load(g, jittered, tmp_path).from_cache == 0 and jittered.computed == 1  # other settings: embedded again
    (cache_file,) = (tmp_path / "cache").glob("*.json")
    cache_file.write_text("{not json")
    assert load(g, embedder, tmp_path).from_cache == 0  # a corrupt cache is ignored
    assert load(g, embedder, tmp_path).from_cache == 1  # and rewritten
    data = json.loads(cache_file.read_text())
    data["files"]["a.jpg"]["embedding"] = [1.0, 2.0]  # a damaged entry
    cache_file.write_text(json.dumps(data))
    assert load(g, embedder, tmp_path).from_cache == 0


def test_unwritable_cache_only_warns(tmp_path, embedder, caplog):
    g = tmp_path / "g"
    write(g / "a.jpg", astronaut())
    (tmp_path / "afile").write_text("")  # a cache dir below a file cannot be created, even by root
    with caplog.at_level(logging.WARNING, logger="emoreel.faces.gallery"):
        gal = Gallery.load(g, embedder, cache_dir=tmp_path / "afile" / "cache")
    assert gal.people == ["a"]
    assert any("cannot write gallery cache" in r.getMessage() for r in caplog.records)


def test_cache_off_writes_nothing(tmp_path, embedder):
    g = tmp_path / "g"
    write(g / "a.jpg", astronaut())
    load(g, embedder, tmp_path, cache=False)
    assert not (tmp_path / "cache").exists()


def _noise(h=200, w=200):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda g: write(g / "nobody.jpg", np.full((200, 200, 3), 128, np.uint8)), r"nobody\.jpg must show exactly one face, found 0"),
        (lambda g: write(g / "noise.png", _noise()), r"noise\.png must show exactly one face, found 0"),
        (lambda g: write(g / "pair.jpg", np.hstack([astronaut(), astronaut()])), r"pair\.jpg must show exactly one face, found 2"),
        (lambda g: write(g / "anna" / "pair.jpg", np.hstack([astronaut(), astronaut()])), r"anna/pair\.jpg must show exactly one face, found 2"),
        (lambda g: (g.mkdir(), (g / "broken.jpg").write_bytes(b"not a jpeg")), r"cannot read reference image .*broken\.jpg"),
        (lambda g: (write(g / "anna" / "ok.jpg", astronaut()), (g / "anna" / "empty.png").write_bytes(b"")), r"cannot read reference image .*anna/empty\.png"),
        (lambda g: (g.mkdir(), os.symlink(g / "gone.jpg", g / "ghost.jpg")), r"cannot read reference image .*ghost\.jpg"),
        (lambda g: (write(g / "anna.jpg", astronaut()), write(g / "anna" / "x.jpg", astronaut())), "two entries for person 'anna'"),
        (lambda g: (write(g / "anna.jpg", astronaut()), write(g / "anna.png", astronaut())), "two entries for person 'anna'.*anna.jpg and anna.png"),
        (lambda g: (write(g / "Anna.jpg", astronaut()), write(g / "anna.png", astronaut())), "two entries for person 'anna'"),
        (lambda g: g.mkdir(), "no reference images"),
        (lambda g: (g.mkdir(), (g / "readme.txt").write_text("x")), "no reference images"),
        (lambda g: (g / "anna").mkdir(parents=True), r"person folder .*anna holds no images"),
        (lambda g: None, "does not exist"),
        (lambda g: g.write_text("a file"), "is not a folder"),
    ],
    ids=["flat", "noise", "two-faces", "two-faces-in-subfolder", "unreadable", "empty-file", "broken-link", "file-and-folder",
         "jpg-and-png", "case", "empty", "no-images", "empty-person", "missing", "not-a-folder"],  # fmt: skip
)
def test_bad_galleries(tmp_path, embedder, setup, message):
    g = tmp_path / "g"
    setup(g)
    with pytest.raises(DataError, match=message) as e:
        load(g, embedder, tmp_path)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- voting (no model runs)


class StubEmbedder:
    """Stands in for :class:`Embedder`: the embedding of a face is looked up by its box's x1."""

    signature = "stub"

    def __init__(self, table: dict[int, np.ndarray]):
        self.table, self.computed = table, 0

    def embed(self, image, boxes):
        self.computed += len(boxes)
        return np.stack([self.table[int(b[0])] for b in boxes]).astype(np.float32)


def unit(k: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(128, np.float32)
    v[k] = scale
    return v


def towards(a: np.ndarray, b: np.ndarray, d: float) -> np.ndarray:
    """A point at distance ``d`` from ``a`` (a and b orthonormal)."""
    return a + d * b


def faces_at(xs, size=80, ids=None) -> Faces:
    """Square faces at x positions ``xs`` (``size`` one side length or one per face), tracks 1, 2, ... unless ``ids``."""
    sizes = np.broadcast_to(size, len(xs))
    boxes = [[x, 10, x + s, 10 + s] for x, s in zip(xs, sizes)]
    f = Faces(np.array(boxes, float), np.ones(len(xs)), np.full((len(xs), 5, 2), np.nan))
    f.track_ids = np.array(ids if ids is not None else range(1, len(xs) + 1), np.int64)
    return f


GALLERY = Gallery(["anna", "ben"], np.stack([unit(0), unit(1)]))
IMAGE = np.random.default_rng(1).integers(0, 256, (120, 900, 3), dtype=np.uint8)  # sharp everywhere


def test_voting():
    ident = Identifier(GALLERY, tolerance=0.6, embedder=StubEmbedder({}))
    assert ident.person(1) == ""  # never embedded
    assert ident.record(1, "anna", 0.7) == ""  # over tolerance: not a match
    assert ident.person(1) == UNKNOWN
    ident.record(1, "anna", 0.5)
    ident.record(1, "ben", 0.3)
    ident.record(1, "anna", 0.55)
    assert ident.person(1) == "anna"  # most matches wins
    ident.record(2, "anna", 0.5)
    ident.record(2, "ben", 0.4)
    assert ident.person(2) == "ben"  # a tie goes to the smaller mean distance
    assert ident.final_persons() == {1: "anna", 2: "ben"}


def test_bad_parameters():
    for kw in ({"tolerance": 0}, {"every": 0}, {"every": 1.5}, {"min_face": -1}, {"backoff": 0}):
        with pytest.raises(InputError):
            Identifier(GALLERY, embedder=StubEmbedder({}), **kw)


def test_observe_embeds_big_sharp_faces_once_per_interval():
    table = {100: towards(unit(0), unit(5), 0.3), 300: towards(unit(1), unit(5), 0.7), 500: unit(0), 700: unit(0)}
    stub = StubEmbedder(table)
    ident = Identifier(GALLERY, tolerance=0.6, every=5, min_face=60, backoff=1, embedder=stub)
    image = IMAGE.copy()
    image[:, 700:] = 90  # a flat (blurred) region: the face there is never embedded
    both = faces_at([100, 300, 500, 700], size=[80, 80, 40, 80])  # the third is too small
    matches, d = ident.observe(image, both, 0)
    assert matches == ["anna", "", "", ""]
    np.testing.assert_allclose(d[:2], [0.3, 0.7], atol=1e-5)  # the nearest person's distance when no match
    assert np.isnan(d[2:]).all() and stub.computed == 2
    assert [ident.person(t) for t in (1, 2, 3, 4)] == ["anna", UNKNOWN, "", ""]
    for frame in range(1, 5):  # not due yet
        matches, d = ident.observe(image, both, frame)
        assert matches == [""] * 4 and np.isnan(d).all()
        assert ident.person(1) == "anna"  # the vote holds between embeddings
    ident.observe(image, both, 5)
    assert stub.computed == 4


def test_backoff_once_a_track_has_settled():
    stub = StubEmbedder({100: unit(0)})
    ident = Identifier(GALLERY, every=5, backoff=4, embedder=stub)
    embedded = []
    for f in range(100):
        before = stub.computed
        ident.observe(IMAGE, faces_at([100]), f)
        if stub.computed > before:
            embedded.append(f)
    assert embedded == [0, 5, 10, 20, 40, 60, 80]  # every 5, after 3 agreeing votes 10, then 20 (the cap, 4 x 5)
    ident.record(1, "ben", 0.1)  # a different outcome restarts the schedule
    assert ident.interval(1) == 5


def test_untracked_faces_are_matched_but_not_voted():
    stub = StubEmbedder({100: unit(0)})
    ident = Identifier(GALLERY, every=5, embedder=stub)
    for f in range(3):
        matches, _ = ident.observe(IMAGE, faces_at([100], ids=[-1]), f)
        assert matches == ["anna"]
    assert stub.computed == 3 and ident.final_persons() == {} and ident.person(-1) == ""


def test_one_name_per_frame():
    # two faces both nearest to anna: the closer keeps her, the other takes ben if under tolerance, else nothing
    table = {100: towards(unit(0), unit(5), 0.2), 300: towards(unit(0), unit(6), 0.3), 500: towards(unit(0), unit(7), 0.4)}
    ident = Identifier(GALLERY, tolerance=0.6, embedder=StubEmbedder(table))
    matches, d = ident.observe(IMAGE, faces_at([100, 300, 500]), 0)
    assert matches == ["anna", "", ""]
    np.testing.assert_allclose(d, [0.2, 0.3, 0.4], atol=1e-5)
    assert [ident.person(t) for t in (1, 2, 3)] == ["anna", UNKNOWN, UNKNOWN]
    # the runner-up gets its second choice when that is under tolerance
    near_both = (unit(0) + unit(1)) / 2  # 0.707 from each, too far at 0.6; fine at 0.75
    ident = Identifier(GALLERY, tolerance=0.75, embedder=StubEmbedder({100: unit(0) * 0.9, 300: near_both}))
    matches, _ = ident.observe(IMAGE, faces_at([100, 300]), 0)
    assert matches == ["anna", "ben"]


def test_simultaneous_tracks_never_share_a_person():
    ident = Identifier(GALLERY, embedder=StubEmbedder({}))
    for f in (0, 10, 20):
        ident.record(1, "anna", 0.3, frame_index=f)
    ident.record(2, "anna", 0.5, frame_index=15)  # on screen with track 1: embedded in another frame
    ident.record(3, "anna", 0.5, frame_index=40)  # later, alone: may be anna again
    ident.observe(IMAGE, faces_at([100, 300], size=10, ids=[1, 2]), 21)  # both visible, too small to embed
    assert (ident.person(1), ident.person(2)) == ("anna", UNKNOWN)
    assert ident.final_persons() == {1: "anna", 2: UNKNOWN, 3: "anna"}


def test_reidentification_bridges_short_gaps_only():
    g = Gallery(["anna"], unit(0)[None])
    ident = Identifier(g, tolerance=0.6, link_tolerance=0.45, link_gap=60, embedder=StubEmbedder({}))
    face = unit(1)
    ident.record(1, "anna", 0.55, face, frame_index=0)  # anna, barely matched
    ident.record(1, "anna", 0.55, face, frame_index=30)
    ident.record(2, "anna", 0.65, face + unit(2, 0.1), frame_index=50)  # the same face soon after, just over tolerance
    ident.record(3, "anna", 0.65, face + unit(2, 0.1), frame_index=300)  # as close, but much later
    ident.record(4, "anna", 0.9, unit(3), frame_index=40)  # a stranger
    ident.record(5, "anna", 0.65, face, frame_index=20)  # close, but on screen together with track 1
    ident.record(5, "anna", 0.65, face, frame_index=25)
    assert ident.final_persons() == {1: "anna", 2: "anna", 3: UNKNOWN, 4: UNKNOWN, 5: UNKNOWN}
    assert ident.person(2) == "anna" and ident.person(3) == UNKNOWN


# --------------------------------------------------------------------------- the real clip


def run_clip(video: Path, people: Path, out: Path) -> dict[str, np.ndarray]:
    """results.csv columns of the full pipeline with known people (the one place to change how it is run)."""
    from emoreel.config import AnalyzeOptions
    from emoreel.analysis.run import analyze_to_dir
    from emoreel.results import load_results

    analyze_to_dir(video, out, AnalyzeOptions(known_faces=str(people)))
    return load_results(out).cols


@pytest.mark.skipif(not CLIP.exists(), reason="../shared not present")
def test_real_clip_names_singer_and_pianist(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a cold gallery cache
    c = run_clip(CLIP, SHARED / "people", tmp_path / "o")
    frames, tracks, persons, widths = c["frame"], c["track_id"], c["person"], c["w"]
    track_person = {int(t): p for t, p in zip(tracks, persons)}
    assert all(track_person[int(t)] == p for t, p in zip(tracks, persons)), "one final person per track"

    def tracks_where(mask):
        return {int(t) for t in np.unique(tracks[mask])}

    singer = tracks_where((frames >= 82) & (frames <= 210) & (widths > 70))  # the singer faces the camera
    pianist = tracks_where((frames >= 20) & (frames <= 81) & (widths > 100))  # the pianist's close-up
    audience = tracks_where(frames >= 211)
    assert singer and pianist and audience
    assert {track_person[t] for t in singer} == {"lin-manuel-miranda"}
    # his close-up tracks are his; a fragment of a frame or two while he turns away may stay unknown, never someone else
    lengths = {t: int((tracks == t).sum()) for t in pianist}
    assert {track_person[t] for t in pianist if lengths[t] >= 5} == {"alex-lacamoire"}
    assert {track_person[t] for t in pianist} <= {"alex-lacamoire", "unknown"}
    named = {"lin-manuel-miranda", "alex-lacamoire"}
    assert not named & {track_person[t] for t in audience}
    assert not named & set(c["match"][frames >= 211]), "no audience face matches in any frame"
    assert not named & set(persons[frames >= 211])
    # per-frame evidence: every singer face that was embedded matched him
    embedded = (frames >= 82) & (frames <= 210) & np.isfinite(c["match_distance"])
    assert embedded.sum() >= 5 and set(c["match"][embedded]) == {"lin-manuel-miranda"}


def test_only_known_skips_emotion_for_unknown_faces(tmp_path, monkeypatch):
    from emoreel.config import AnalyzeOptions
    from emoreel.analysis.run import analyze_to_dir
    from emoreel.results import load_results
    from emoreel.media.sample import make_example_video

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write(tmp_path / "people" / "collins.jpg", astronaut())
    video = make_example_video(tmp_path / "v.mp4", frames=12)
    # a tolerance nobody meets: every face stays unknown, so no emotion work is done
    analyze_to_dir(video, tmp_path / "o", AnalyzeOptions(known_faces=str(tmp_path / "people"), tolerance=0.01, only_known=True, id_every=1))
    c = load_results(tmp_path / "o").cols
    assert len(c["frame"]) == 24
    assert set(c["reject_reason"]) == {"unknown_person"} and set(c["emotion"]) == {""}
    assert set(c["person"]) == {"unknown"}
    # with a normal tolerance the astronaut is collins and is classified; the mirrored copy on screen at
    # the same time cannot also be collins (one person per frame), so it is skipped as unknown
    analyze_to_dir(video, tmp_path / "o2", AnalyzeOptions(known_faces=str(tmp_path / "people"), only_known=True, id_every=1))
    c = load_results(tmp_path / "o2").cols
    known = c["person"] == "collins"
    assert set(c["person"]) == {"collins", "unknown"}
    assert (c["accepted"][known] == 1).all() and all(c["emotion"][known])
    assert set(c["reject_reason"][~known]) == {"unknown_person"}


def test_tracks_never_embedded_are_unidentified_not_unknown():
    """Too small for min_face the whole time: `unidentified` (never tried), unlike `unknown` (tried, no match)."""
    from emoreel.faces.identify import UNIDENTIFIED

    stub = StubEmbedder({100: unit(0), 300: towards(unit(1), unit(5), 0.7)})
    ident = Identifier(GALLERY, tolerance=0.6, every=5, min_face=60, embedder=stub)
    for f in range(10):
        ident.observe(IMAGE, faces_at([100, 300, 500], size=[80, 80, 30]), f)
    assert ident.person(3) == ""  # while the run goes on: not (yet) embedded
    assert ident.final_persons() == {1: "anna", 2: UNKNOWN, 3: UNIDENTIFIED}
