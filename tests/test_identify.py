"""Known people: the gallery loader, its cache, voting, bad input, and the real clip when present."""

from __future__ import annotations

import collections
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib")

from emoreel.errors import DataError  # noqa: E402
from emoreel.identify import Embedder, Gallery, Identifier  # noqa: E402
from emoreel.sample import astronaut  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def write(path: Path, img) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def test_single_files_and_subfolders(tmp_path, embedder):
    write(tmp_path / "g" / "collins.jpg", astronaut())
    write(tmp_path / "g" / "eileen" / "a.jpg", astronaut()[:, ::-1])
    write(tmp_path / "g" / "eileen" / "b.png", cv2.resize(astronaut(), (300, 300)))
    (tmp_path / "g" / "notes.txt").write_text("ignored")
    g = Gallery.load(tmp_path / "g", embedder, cache_dir=tmp_path / "cache")
    assert g.people == ["collins", "eileen"]
    assert g.names.count("eileen") == 2 and g.embeddings.shape == (3, 128)
    names, d = g.match(g.embeddings[:1])
    assert d[0] < 1e-5  # an embedding matches itself
    assert float(np.linalg.norm(g.embeddings[0] - g.embeddings[1])) < 0.6  # same person, mirrored


def test_cache_is_used_and_invalidated_per_file(tmp_path, embedder):
    write(tmp_path / "g" / "a.jpg", astronaut())
    write(tmp_path / "g" / "b.jpg", astronaut()[:, ::-1])
    cache = tmp_path / "cache"
    before = embedder.computed
    Gallery.load(tmp_path / "g", embedder, cache_dir=cache)
    assert embedder.computed - before == 2
    Gallery.load(tmp_path / "g", embedder, cache_dir=cache)
    assert embedder.computed - before == 2  # nothing embedded again
    write(tmp_path / "g" / "b.jpg", cv2.resize(astronaut(), (400, 400)))  # a changed photo
    Gallery.load(tmp_path / "g", embedder, cache_dir=cache)
    assert embedder.computed - before == 3  # only b again
    assert not list((tmp_path / "g").glob(".*")), "nothing is written into the photo folder"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda g: write(g / "nobody.jpg", np.full((200, 200, 3), 128, np.uint8)), "nobody.jpg must show exactly one face, found 0"),
        (lambda g: write(g / "pair.jpg", np.hstack([astronaut(), astronaut()])), "pair.jpg must show exactly one face, found 2"),
        (lambda g: (g.mkdir(), (g / "broken.jpg").write_bytes(b"not a jpeg")), "cannot read reference image"),
        (lambda g: (write(g / "anna.jpg", astronaut()), write(g / "anna" / "x.jpg", astronaut())), "two entries for person 'anna'"),
        (lambda g: g.mkdir(), "no reference images"),
    ],
    ids=["no-face", "two-faces", "unreadable", "same-name", "empty"],
)
def test_bad_galleries(tmp_path, embedder, setup, message):
    g = tmp_path / "g"
    setup(g)
    with pytest.raises(DataError, match=message):
        Gallery.load(g, embedder, cache_dir=tmp_path / "cache")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Gallery.load(tmp_path / "nope")


def test_voting(embedder):
    g = Gallery(["anna", "ben"], np.eye(2, 128, dtype=np.float32))
    ident = Identifier(g, tolerance=0.6, embedder=embedder)
    assert ident.person(1) == ""
    assert ident.record(1, "anna", 0.7) == ""  # over tolerance: not a match
    assert ident.person(1) == "unknown"
    ident.record(1, "anna", 0.5)
    ident.record(1, "ben", 0.3)
    ident.record(1, "anna", 0.55)
    assert ident.person(1) == "anna"  # most matches wins
    ident.record(2, "anna", 0.5)
    ident.record(2, "ben", 0.4)
    assert ident.person(2) == "ben"  # a tie goes to the smaller mean distance
    assert ident.final_persons() == {1: "anna", 2: "ben"}


def test_reidentification_links_an_unmatched_track_to_a_named_one(embedder):
    g = Gallery(["anna"], np.eye(1, 128, dtype=np.float32))
    ident = Identifier(g, tolerance=0.6, link_tolerance=0.45, embedder=embedder)
    face = np.zeros(128, np.float32)
    face[1] = 1.0
    ident.record(1, "anna", 0.55, face)  # anna, barely matched
    ident.record(2, "anna", 0.65, face + 0.01)  # the same face later, just over tolerance
    stranger = np.zeros(128, np.float32)
    stranger[2] = 1.0
    ident.record(3, "anna", 0.9, stranger)
    assert ident.final_persons() == {1: "anna", 2: "anna", 3: "unknown"}


@pytest.mark.skipif(not (SHARED / "video" / "short_hamilton_clip.mp4").exists(), reason="../shared not present")
def test_real_clip_names_singer_and_pianist(tmp_path):
    from emoreel.config import AnalyzeOptions
    from emoreel.pipeline import analyze_to_dir
    from emoreel.results import load_results

    analyze_to_dir(SHARED / "video" / "short_hamilton_clip.mp4", tmp_path / "o",
                   AnalyzeOptions(known_faces=str(SHARED / "people")))  # fmt: skip
    c = load_results(tmp_path / "o").cols
    frames, persons, widths = c["frame"], c["person"], c["w"]
    singer = (frames >= 82) & (frames <= 210)  # the singer faces the camera
    assert collections.Counter(persons[singer]).most_common(1)[0][0] == "lin-manuel-miranda"
    pianist = (frames >= 20) & (frames <= 81) & (widths > 100)  # the pianist's close-up
    assert set(persons[pianist]) == {"alex-lacamoire"}
    audience = (frames >= 211)
    assert not {"lin-manuel-miranda", "alex-lacamoire"} & set(persons[audience])
    assert not {"lin-manuel-miranda", "alex-lacamoire"} & set(c["match"][audience])


def test_only_known_skips_emotion_for_unknown_faces(tmp_path):
    from emoreel.config import AnalyzeOptions
    from emoreel.pipeline import analyze_to_dir
    from emoreel.results import load_results
    from emoreel.sample import make_example_video

    write(tmp_path / "people" / "collins.jpg", astronaut())
    video = make_example_video(tmp_path / "v.mp4", frames=12)
    # a tolerance nobody meets: every face stays unknown, so no emotion work is done
    analyze_to_dir(video, tmp_path / "o", AnalyzeOptions(known_faces=str(tmp_path / "people"), tolerance=0.01, only_known=True, id_every=1))
    c = load_results(tmp_path / "o").cols
    assert len(c["frame"]) == 24
    assert set(c["reject_reason"]) == {"unknown_person"} and set(c["emotion"]) == {""}
    assert set(c["person"]) == {"unknown"}
    # with a normal tolerance both astronauts are collins and are classified
    analyze_to_dir(video, tmp_path / "o2", AnalyzeOptions(known_faces=str(tmp_path / "people"), only_known=True, id_every=1))
    c = load_results(tmp_path / "o2").cols
    assert set(c["person"]) == {"collins"} and (c["accepted"] == 1).all() and all(c["emotion"])
