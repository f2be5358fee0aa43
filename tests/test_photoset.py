"""Labelled photo sets with people (webfaces.zip's layout): the fixed person-disjoint split, `evaluate`
through the photo path on a zip, and packing training faces cropped the way analyze crops them.
Built from the shipped astronaut photo; the real webfaces split is checked when ../shared is present."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.cli import main
from emoreel.model.datasets import load_pack
from emoreel.model.photoset import DEV_SHARE, LabelledPhoto, PhotoSet, person_split
from emoreel.media.sample import astronaut

WEBFACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "webfaces.zip"


def synthetic_rows(seed: int = 0) -> list[LabelledPhoto]:
    """300 people: most with 1-3 neutral/happy photos, a few with many, rare classes held by few people."""
    rng = random.Random(seed)
    rows = []
    for p in range(300):
        n = 40 if p % 97 == 0 else rng.randint(1, 3)
        for k in range(n):
            emo = "happy" if rng.random() < 0.45 else "neutral"
            if p % 11 == 0:
                emo = "sad"
            if p % 29 == 0:
                emo = "disgust"
            rows.append(LabelledPhoto(f"{emo}/p{p}_{k}.jpg", emo, f"person {p}"))
    return rows


def test_split_keeps_people_apart_and_shares_each_class():
    rows = synthetic_rows()
    side = person_split(rows)
    dev = [r for r in rows if side[r.person] == "dev"]
    assert {r.person for r in dev}.isdisjoint({r.person for r in rows if side[r.person] == "train"})
    people_share = sum(v == "dev" for v in side.values()) / len(side)
    assert 0.1 < people_share < 0.3
    totals, in_dev = Counter(r.emotion for r in rows), Counter(r.emotion for r in dev)
    for emo, n in totals.items():  # each class near its 20% (one person of a rare class is a big step)
        assert DEV_SHARE * n - 1 <= in_dev[emo] <= 1.25 * DEV_SHARE * n + 40, (emo, in_dev[emo], n)


def test_split_is_a_fixed_rule_of_the_rows_not_of_their_order():
    rows = synthetic_rows()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert person_split(rows) == person_split(shuffled)
    # adding a new person moves nobody else's photos across
    more = rows + [LabelledPhoto("happy/new.jpg", "happy", "someone new")]
    before, after = person_split(rows), person_split(more)
    moved = [p for p in before if before[p] != after[p]]
    assert len(moved) <= 2


@pytest.mark.skipif(not WEBFACES.exists(), reason="needs ../shared/data/webfaces.zip")
def test_webfaces_dev_split_is_the_documented_one():
    """docs/model.md's numbers are on this exact split: 2,869 photos of 1,043 people (neutral 1,374, happy 1,248)."""
    with PhotoSet(WEBFACES) as ps:
        dev = ps.split("dev")
        train = ps.split("train")
    assert len(dev) == 2869 and len({r.person for r in dev}) == 1043
    assert len(dev) + len(train) == 13681 and not {r.person for r in dev} & {r.person for r in train}
    counts = Counter(r.emotion for r in dev)
    assert counts["neutral"] == 1374 and counts["happy"] == 1248 and counts["fear"] == 5


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory) -> Path:
    """A zip like webfaces.zip: set/labels.csv and set/<class>/*.jpg; 12 people, one photo without a face."""
    a = astronaut()[10:230, 120:330]  # the face (CenterFace: 181-270 x 58-178) and some of the photo around it
    d = tmp_path_factory.mktemp("set")
    path = d / "faces.zip"
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for p in range(12):
            emo = ("happy", "neutral", "sad")[p % 3]
            img = cv2.resize(a, (100 + 5 * p, 105 + 5 * p), interpolation=cv2.INTER_AREA)
            if p % 2:
                img = img[:, ::-1]
            name = f"{emo}/person{p:02d}_0001.jpg"
            zf.writestr(f"set/{name}", cv2.imencode(".jpg", img)[1].tobytes())
            rows.append((name, emo, f"person{p:02d}"))
        grey = np.full((120, 120, 3), 128, np.uint8)
        zf.writestr("set/neutral/wall_0001.jpg", cv2.imencode(".jpg", grey)[1].tobytes())
        rows.append(("neutral/wall_0001.jpg", "neutral", "wall"))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "emotion", "person", "contributor"])
        w.writerows([(*r, "test") for r in rows])
        zf.writestr("set/labels.csv", buf.getvalue())
    return path


def test_evaluate_runs_a_photo_set_through_the_photo_path(photo_set, capsys):
    assert main(["evaluate", "--data", str(photo_set), "--split", "all", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["photos"] == 13 and d["faces_found"] == 12  # the grey wall has no face and counts as wrong
    assert d["per_class"]["happy"]["recall_all"] == 1.0  # the astronaut smiles, however large or mirrored
    assert d["neutral_share"]["true"] == pytest.approx(4 / 12, abs=1e-3)
    assert "people held out" not in d["data"]
    assert main(["evaluate", "--data", str(photo_set), "--json"]) == 0  # default: dev, the held-out people
    dev = json.loads(capsys.readouterr().out)
    with PhotoSet(photo_set) as ps:
        assert dev["photos"] == len(ps.split("dev")) and "people held out" in dev["data"]


def test_evaluate_refuses_an_unknown_split_of_a_photo_set(photo_set, capsys):
    assert main(["evaluate", "--data", str(photo_set), "--split", "val"]) != 0
    err = capsys.readouterr().err
    assert "no split 'val'" in err and "dev" in err and "Traceback" not in err


def test_pack_crops_faces_as_analyze_does_with_small_copies(photo_set, tmp_path, capsys):
    out = tmp_path / "pack.npz"
    assert main(["train", "--data", str(photo_set), "--pack", str(out), "--small-copies", "2"]) == 0
    train, dev = load_pack(out, "train"), load_pack(out, "dev")
    with PhotoSet(photo_set) as ps:
        n_train = sum(r.person != "wall" for r in ps.split("train"))
        n_dev = sum(r.person != "wall" for r in ps.split("dev"))
    assert len(train) == 3 * n_train and len(dev) == n_dev  # each found face and its two small copies
    assert train.images.shape[1:] == (48, 48) and train.images.dtype == np.uint8
    face, small = train.images[0].astype(float), train.images[1].astype(float)
    assert np.corrcoef(face.ravel(), small.ravel())[0, 1] > 0.5  # the same face, aligned the same way
    assert cv2.Laplacian(small, cv2.CV_64F).var() < cv2.Laplacian(face, cv2.CV_64F).var()  # with less detail


def test_hostile_or_broken_labels_never_write_outside_or_crash(tmp_path, capsys, caplog):
    """An emotion column naming a path, a photo listed but missing, a class emoreel lacks: the evaluation
    writes nothing outside its folder, leaves those rows out with a warning, and scores the rest."""
    a = astronaut()[10:230, 120:330]
    path = tmp_path / "bad.zip"
    escaped = tmp_path / "escaped"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("happy/a.jpg", cv2.imencode(".jpg", a)[1].tobytes())
        zf.writestr("labels.csv", "Image, Emotion ,PERSON\nhappy/a.jpg,happy,p1\nhappy/a.jpg,../../escaped,p2\n"
                                  f"happy/a.jpg,{escaped},p3\nhappy/gone.jpg,happy,p4\nhappy/a.jpg,contempt,p5\n")
    assert main(["evaluate", "--data", str(path), "--split", "all", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["photos"] == 1 and "Traceback" not in out.err
    assert not escaped.exists() and not (tmp_path.parent / "escaped").exists()
    assert "gone.jpg" in caplog.text and "'contempt'" in caplog.text and "'../../escaped'" in caplog.text


def test_a_photo_set_is_never_trained_on_as_crops(photo_set, capsys):
    """Training straight on a photo set would read every person, dev included, as whole-photo crops: refused."""
    assert main(["train", "--data", "x.zip", "--add-data", str(photo_set), "--out", "/nonexistent/run"]) != 0
    err = capsys.readouterr().err
    assert "photo set" in err and "--pack" in err and len(err.strip().splitlines()) == 1
