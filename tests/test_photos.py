"""Photos as input: each image its own moment (labels, tracks, names), the `source` column, per-image
sizes in run.json, extract refusing a changed folder, the photo report, CenterFace's padding, and
`evaluate` on a folder of labelled full-size photos. Every input is built here from the shipped
astronaut photo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import emoreel
from emoreel.analysis.evaluate_photos import evaluate_photos, is_photo_folder
from emoreel.analysis.run import analyze_to_dir
from emoreel.cli import main
from emoreel.config import AnalyzeOptions
from emoreel.faces.detect import CenterFaceDetector
from emoreel.media.sample import astronaut
from emoreel.outputs.report import render
from emoreel.results import COLUMNS, load_results


def side_by_side() -> np.ndarray:
    """Two astronauts (one mirrored) in one 1024x512 photo."""
    a = astronaut()
    return np.concatenate([a, a[:, ::-1]], axis=1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """img_001 and img_002 are the same 512 px photo (the face at the same place: a tracker would chain them),
    img_003 is unreadable, img_004 is the photo at 1400 px, img_005 holds two faces."""
    d = tmp_path_factory.mktemp("photos") / "shots"
    d.mkdir()
    a = astronaut()
    cv2.imwrite(str(d / "img_001.jpg"), a)
    cv2.imwrite(str(d / "img_002.jpg"), a)
    (d / "img_003.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(d / "img_004.png"), cv2.resize(a, (1400, 1400), interpolation=cv2.INTER_CUBIC))
    cv2.imwrite(str(d / "img_005.jpg"), side_by_side())
    return d


@pytest.fixture(scope="module")
def analyzed(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("res") / "out"
    assert main(["analyze", str(photos), "-o", str(out), "--quiet"]) == 0
    return out


def rows_of(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_image_is_labelled_on_its_own(analyzed):
    rows = rows_of(analyzed)
    assert [r["source"] for r in rows] == ["img_001.jpg", "img_002.jpg", "img_004.png", "img_005.jpg", "img_005.jpg"]
    assert all(r["accepted"] == "1" for r in rows)
    for r in rows:  # no repeater/EMA: the first (and only) moment of each face is labelled
        assert r["emotion"] == "happy"
        assert r["emotion_smooth"] == r["emotion"]
        assert float(r["smooth_prob"]) == pytest.approx(float(r["emotion_prob"]))


def test_no_track_spans_two_images(analyzed):
    rows = rows_of(analyzed)
    ids = [r["track_id"] for r in rows]
    assert len(set(ids)) == len(ids), f"every face its own track, got {ids}"


def test_source_column_is_last_and_loads(analyzed, tmp_path):
    assert COLUMNS[-1] == "source"
    res = load_results(analyzed)
    assert list(res.cols["source"]) == [r["source"] for r in rows_of(analyzed)]
    assert next(res.rows()).source == "img_001.jpg"
    # results written before the column still load, with empty sources
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text((analyzed / "run.json").read_text())
    with open(analyzed / "results.csv", newline="") as src, open(old / "results.csv", "w", newline="") as dst:
        w = csv.writer(dst, lineterminator="\n")
        for row in csv.reader(src):
            w.writerow(row[:-1])
    res = load_results(old)
    assert len(res) == 5 and set(res.cols["source"]) == {""}


def test_to_pandas_gives_the_csv_as_a_data_frame(analyzed):
    """Python users (as with fer and py-feat) get a DataFrame: results.csv's columns, its rows, numbers as numbers."""
    pytest.importorskip("pandas")
    df = load_results(analyzed).to_pandas()
    csv_rows = rows_of(analyzed)
    assert list(df.columns) == list(COLUMNS) and len(df) == len(csv_rows)
    assert df["source"].tolist() == [r["source"] for r in csv_rows]
    assert df["frame"].dtype.kind == "i" and df["happy"].dtype.kind == "f"
    assert np.allclose(df["happy"].to_numpy(), [float(r["happy"]) if r["happy"] else np.nan for r in csv_rows], equal_nan=True)


def test_run_json_lists_every_image_size_and_the_skipped_one(analyzed):
    meta = json.loads((analyzed / "run.json").read_text())
    assert meta["input"]["kind"] == "images"
    assert meta["images"] == [
        {"frame": 0, "name": "img_001.jpg", "width": 512, "height": 512},
        {"frame": 1, "name": "img_002.jpg", "width": 512, "height": 512},
        {"frame": 3, "name": "img_004.png", "width": 1400, "height": 1400},
        {"frame": 4, "name": "img_005.jpg", "width": 1024, "height": 512},
    ]
    assert meta["skipped_images"] == ["img_003.jpg"]
    # photos are detected at up to image_max_side (1280), not the video default (320)
    assert meta["detector"]["max_side"] == AnalyzeOptions().image_max_side == 1280
    assert meta["detector"]["working_size"] == [512, 512]


def test_video_rows_name_the_video(tmp_path):
    from emoreel.media.sample import make_example_video

    video = make_example_video(tmp_path / "clip.mp4", frames=3)
    analyze_to_dir(video, tmp_path / "o", AnalyzeOptions(threads=1))
    rows = rows_of(tmp_path / "o")
    assert rows and {r["source"] for r in rows} == {"clip.mp4"}
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    assert "images" not in meta and meta["detector"]["max_side"] == 320


def test_extract_works_on_photos_and_refuses_a_changed_folder(photos, analyzed, tmp_path, capsys):
    assert main(["extract", str(analyzed), "--emotion", "happy", "-o", str(tmp_path / "x")]) == 0
    crops = sorted(p.name for p in (tmp_path / "x" / "crops").glob("*.png"))
    assert len(crops) == 5
    # crops are named after their photo (not a time and frame), and the manifest says which photo
    assert [c.split("_face")[0] for c in crops] == ["img_001", "img_002", "img_004", "img_005", "img_005"]
    with open(tmp_path / "x" / "manifest.csv", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert sorted(r["source"] for r in manifest) == ["img_001.jpg", "img_002.jpg", "img_004.png", "img_005.jpg", "img_005.jpg"]
    assert all(Path(r["file"]).name.startswith(Path(r["source"]).stem + "_face") for r in manifest)
    capsys.readouterr()
    moved = photos / "img_002.jpg"
    moved.rename(photos / "img_002_renamed.jpg")
    try:
        assert main(["extract", str(analyzed), "--emotion", "happy", "-o", str(tmp_path / "y")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "changed since analyze" in err and "img_002.jpg" in err and "img_002_renamed.jpg" in err
        assert not (tmp_path / "y" / "crops").exists()
    finally:
        (photos / "img_002_renamed.jpg").rename(moved)
    (photos / "img_005.jpg").rename(photos / "img_005.bak")
    try:
        assert main(["extract", str(analyzed), "--emotion", "happy", "-o", str(tmp_path / "z")]) == 2
        assert "image 4 (img_005.jpg) is missing" in capsys.readouterr().err
    finally:
        (photos / "img_005.bak").rename(photos / "img_005.jpg")


def test_report_lists_each_image_with_its_faces(photos, analyzed):
    res = load_results(analyzed)
    page = render(res, photos)
    for name in ("img_001.jpg", "img_002.jpg", "img_004.png", "img_005.jpg"):
        assert f'data-name="{name}"' in page
    entry = page.split('data-name="img_005.jpg"')[1].split('<div class="photo"')[0]
    assert entry.count('data-emotion="happy"><img src="data:image/jpeg') == 2, "both faces of the photo, with crops"
    assert "Timeline" not in page and "1 unreadable skipped" in page


def test_known_faces_name_each_face_of_each_image(photos, tmp_path):
    pytest.importorskip("dlib")
    people = tmp_path / "people"
    people.mkdir()
    cv2.imwrite(str(people / "eileen.jpg"), astronaut())
    out = tmp_path / "o"
    analyze_to_dir(photos, out, AnalyzeOptions(known_faces=str(people)))
    rows = rows_of(out)
    assert [r["person"] for r in rows[:3]] == ["eileen"] * 3
    five = [r for r in rows if r["source"] == "img_005.jpg"]
    assert sorted(r["person"] for r in five)[0] == "eileen", "one of the two faces of one photo is eileen"
    assert len({r["track_id"] for r in rows}) == len(rows)


def test_centerface_input_never_depends_on_the_previous_image():
    face = astronaut()[40:300, 150:400]  # 260x250: pads to 288x256, the face close to the padding
    other = np.random.default_rng(0).integers(0, 256, (280, 250, 3), dtype=np.uint8)  # other size, same padding
    fresh = CenterFaceDetector(max_side=0, threshold=0.3)
    want = fresh.detect(face)
    assert len(want) == 1
    reused = CenterFaceDetector(max_side=0, threshold=0.3)
    reused.detect(other)
    got = reused.detect(face)
    np.testing.assert_array_equal(got.boxes, want.boxes)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.landmarks, want.landmarks)


# --------------------------------------------------------------------------- evaluate --photos


@pytest.fixture(scope="module")
def labelled_photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("labelled")
    (d / "happy").mkdir()
    (d / "Sadness").mkdir()
    (d / "contempt").mkdir()
    a = astronaut()
    for s in (256, 512, 1400):
        cv2.imwrite(str(d / "happy" / f"astronaut_{s}.jpg"), cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA if s < 512 else cv2.INTER_CUBIC))
    cv2.imwrite(str(d / "Sadness" / "wall.png"), np.full((300, 400, 3), 128, np.uint8))  # no face
    cv2.imwrite(str(d / "contempt" / "x.jpg"), a)  # not a class of the model
    return d


def test_evaluate_photos_runs_the_pipeline(labelled_photos):
    r = evaluate_photos(labelled_photos, options=AnalyzeOptions(threads=1))
    assert r.n_photos == 4 and r.found == 3
    assert r.accuracy_found == 1.0 and r.accuracy_all == 0.75
    assert r.per_class["happy"] == {"photos": 3, "found": 3, "recall": 1.0, "recall_all": 1.0, "precision": 1.0}
    assert r.per_class["sad"]["found"] == 0
    assert r.skipped_classes == {"contempt": 1}
    big = next(p for p in r.photos if p.name == "happy/astronaut_1400.jpg")
    assert big.predicted == "happy" and big.face_px > 250, "the largest face, in the photo's own pixels"
    assert abs(big.yaw) < 15
    assert r.by_yaw == {"0-15": {"n": 3, "correct": 3, "accuracy": 1.0}}


def test_evaluate_cli_detects_photos_and_prints_json(labelled_photos, tmp_path, capsys):
    assert is_photo_folder(labelled_photos)
    assert main(["evaluate", "--data", str(labelled_photos), "--json", "--plot", str(tmp_path / "c.png")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "photos" and d["photos"] == 4 and d["faces_found"] == 3
    assert d["accuracy_found"] == 1.0 and d["accuracy_all"] == 0.75
    assert d["confusion"][3][3] == 3 and "0-15" in d["by_yaw"]
    assert {p["name"]: p["predicted"] for p in d["per_photo"]}["Sadness/wall.png"] == ""
    assert (tmp_path / "c.png").is_file()


def test_48px_crops_stay_a_face_set(tmp_path):
    crops = tmp_path / "crops" / "val" / "happy"
    crops.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(crops / f"{i}.png"), cv2.resize(cv2.cvtColor(astronaut()[60:250, 140:330], cv2.COLOR_BGR2GRAY), (48, 48)))
    assert not is_photo_folder(tmp_path / "crops", "val")
    flat = tmp_path / "flat" / "happy"  # <class>/ of 48 px crops: not photos either
    flat.mkdir(parents=True)
    cv2.imwrite(str(flat / "0.png"), np.zeros((48, 48), np.uint8))
    assert not is_photo_folder(tmp_path / "flat")


def test_identity_never_links_faces_of_different_images(tmp_path):
    """A face that matches nobody stays unknown, although in a video it would take the name of a similar
    face one frame before (re-identification of a lost track): two photos are not one scene."""
    pytest.importorskip("dlib")
    people, shots = tmp_path / "people", tmp_path / "shots"
    people.mkdir()
    shots.mkdir()
    a = astronaut()
    cv2.imwrite(str(people / "eileen.png"), a)
    cv2.imwrite(str(shots / "1.png"), a[:, ::-1])  # 0.21 from the reference: a match under 0.3
    cv2.imwrite(str(shots / "2.png"), cv2.resize(cv2.resize(a, (160, 160)), (512, 512)))  # 0.33: no match; 0.33 from 1.png
    out = tmp_path / "o"
    analyze_to_dir(shots, out, AnalyzeOptions(known_faces=str(people), tolerance=0.3, threads=1))
    assert [(r["source"], r["person"]) for r in rows_of(out)] == [("1.png", "eileen"), ("2.png", "unknown")]


def _face_crop(k: float = 0.78, size: int = 192):
    """The astronaut's face cropped so tight (``k`` x its box, centred) that it fills the photo: the
    detector finds it scoring 0.44, under its 0.5 threshold (a face crop lacks the context it expects)."""
    from emoreel.faces.detect import create_detector
    from emoreel.media.sample import astronaut

    img = astronaut()
    b = create_detector("centerface", max_side=0).detect(img).boxes[0]
    cx, cy, s = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) * k / 2
    crop = img[int(cy - s) : int(cy + s), int(cx - s) : int(cx + s)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)


def test_a_photo_that_is_all_face_gets_a_second_look(tmp_path):
    """A tight face crop scores under the detector's threshold; photos get a second look down to
    --photo-threshold for one large face, which is then gated and classified like any other. A photo
    with no face (or only a small, weak one) gets nothing, and --photo-threshold 0.5 turns it off."""
    from emoreel.faces.detect import create_detector

    crop = _face_crop()
    score = create_detector("centerface", max_side=0).detect_at(crop, 0.05).scores
    assert len(score) == 1 and 0.3 < score[0] < 0.5
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "crop.png"), crop)
    tiles = np.tile(_face_crop(size=96), (5, 5, 1))  # 25 weak faces (0.28-0.41), each a fifth of the side: too small
    assert len(create_detector("centerface", max_side=0).detect_at(tiles, 0.2)) > 5
    cv2.imwrite(str(photos / "tiles.png"), tiles)
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    cv2.imwrite(str(photos / "noise.png"), cv2.GaussianBlur(noise, (0, 0), 3))
    obs = list(emoreel.analyze(photos))
    assert [(o.source, o.accepted) for o in obs] == [("crop.png", True)]
    assert 0.3 < obs[0].det_score < 0.5 and obs[0].emotion == "happy"
    assert list(emoreel.analyze(photos, photo_threshold=0.5)) == []


def test_the_second_look_never_adds_a_face_already_found(tmp_path):
    """A face found and rejected by the gate (here: --max-yaw 1) is not found again as a weaker box."""
    from emoreel.media.sample import astronaut

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), astronaut())
    obs = list(emoreel.analyze(photos, max_yaw=1))
    assert [(o.accepted, o.reject_reason) for o in obs] == [(False, "not_frontal")]


def test_one_image_file_follows_the_photo_rules(photos, analyzed, tmp_path):
    """`analyze photo.jpg` is a photo, not a one-frame video: detected at photo size, labelled at once (the
    smoothed label is the photo's own), named in the source column, the same as that photo in a folder."""
    out = tmp_path / "one"
    assert main(["analyze", str(photos / "img_004.png"), "-o", str(out), "--quiet"]) == 0
    (row,) = rows_of(out)
    meta = json.loads((out / "run.json").read_text())
    assert meta["input"]["kind"] == "images" and row["source"] == "img_004.png"
    same = [r for r in rows_of(analyzed) if r["source"] == "img_004.png"]
    assert len(same) == 1 and row["emotion_smooth"] == same[0]["emotion_smooth"] == "happy"
    assert row["happy"] == same[0]["happy"] and row["smooth_prob"] == row["emotion_prob"]


def test_numpy_images_are_analysed_as_photos():
    """emoreel.analyze(image) and analyze([images]) work on NumPy images as peers do; other types are one line."""
    a = astronaut()
    (ob,) = list(emoreel.analyze(a))
    assert ob.source == "image 0" and ob.emotion_smooth == "happy" and ob.smooth_prob == pytest.approx(ob.emotion_prob)
    grey = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    obs = list(emoreel.analyze([a, grey, np.zeros((64, 64, 3), np.uint8)]))
    assert [o.source for o in obs] == ["image 0", "image 1"] and all(o.emotion_smooth == "happy" for o in obs)
    from emoreel.errors import InputError

    for bad, words in ((3.5, "cannot analyze a float"), (a.astype(float), "uint8"), ([a, "x.jpg"], "cannot analyze a list")):
        with pytest.raises(InputError, match=words) as e:
            list(emoreel.analyze(bad))
        assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_a_photo_with_a_long_name_still_gives_a_crop(tmp_path):
    """A file name near the file system's 255-byte limit (non-ASCII: 2 bytes a letter): its crop's name, which
    adds the face, emotion and probability, is shortened (with a hash, so two such photos stay apart)."""
    d = tmp_path / "shots"
    d.mkdir()
    names = ["ä" * 120 + ".jpg", "ä" * 119 + "b.jpg"]  # 244 bytes each, the same first 200
    for n in names:
        cv2.imwrite(str(d / n), astronaut())
    assert main(["analyze", str(d), "-o", str(tmp_path / "o"), "--quiet"]) == 0
    assert main(["extract", str(tmp_path / "o"), "--emotion", "happy", "-o", str(tmp_path / "x")]) == 0
    crops = sorted((tmp_path / "x" / "crops").glob("*.png"))
    assert len(crops) == 2 and len({c.name for c in crops}) == 2
    assert all(len(c.name.encode("utf-8")) <= 255 and c.name.startswith("ä" * 20) and "_face00" in c.name and "_happy_" in c.name
               for c in crops)  # fmt: skip
    with open(tmp_path / "x" / "manifest.csv", newline="", encoding="utf-8") as fh:
        assert sorted(r["source"] for r in csv.DictReader(fh)) == sorted(names)
