"""Loaders for FER2013's CSV, image-folder trees and zips of them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.errors import DataError
from emoreel.model.datasets import canonical_class, load_dataset, load_fer_csv, load_image_folder
from emoreel.types import EMOTIONS

SHARED_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013-train-val.zip"


def pixels(v: int, n: int = 48 * 48) -> str:
    return " ".join([str(v)] * n)


def test_kaggle_csv_splits_and_bad_rows(tmp_path):
    p = tmp_path / "fer2013.csv"
    rows = [
        "emotion,pixels,Usage",
        f"3,{pixels(10)},Training",
        f"0,{pixels(20)},Training",
        f"6,{pixels(30)},PublicTest",
        f"4,{pixels(40)},PrivateTest",
        f"2,{pixels(50, 2000)},Training",  # not a square image
        f"1,{' '.join(['x'] * 2304)},Training",  # non-numeric
        f"9,{pixels(60)},Training",  # label out of range
        "5,,Training",  # no pixels
        "3",  # truncated row
        f"2,{pixels(300)},Training",  # pixel value out of range
    ]
    p.write_text("\n".join(rows) + "\n")
    tr = load_fer_csv(p, "train")
    assert len(tr) == 2 and tr.labels.tolist() == [3, 0] and tr.bad_files == 6
    assert tr.images.shape == (2, 48, 48) and tr.images[0, 0, 0] == 10
    va = load_dataset(p, "val")
    assert va.labels.tolist() == [6] and va.bad_files == 1  # the truncated row has no split: bad in every one
    assert load_dataset(p, "test").labels.tolist() == [4]
    assert load_fer_csv(p, "PublicTest").labels.tolist() == [6]  # a raw Usage value works too


def test_csv_without_usage_column_is_one_split(tmp_path):
    p = tmp_path / "faces.csv"
    p.write_text(f"emotion,pixels\n5,{pixels(7, 64 * 64)}\n1,{pixels(9)}\n")
    data = load_dataset(p, "val")
    assert data.labels.tolist() == [5, 1] and data.images.shape == (2, 48, 48)  # 64x64 resized to 48x48


def test_synonyms():
    for name, cls in [("Anger", "angry"), ("sadness", "sad"), ("Happiness", "happy"), (" Surprised ", "surprise")]:
        assert canonical_class(name) == cls
    assert canonical_class("contempt") is None


def test_csv_without_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a FER2013 CSV"):
        load_fer_csv(p)


def make_tree(root: Path, split="train", classes=("Anger", "Happiness", "sadness", "contempt"), per=3) -> Path:
    for ci, cls in enumerate(classes):
        d = root / split / cls
        d.mkdir(parents=True)
        for k in range(per):
            cv2.imwrite(str(d / f"{k}.png"), np.full((64, 64), 40 * ci + k, np.uint8))  # resized to 48
    (root / split / "Happiness" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_folder_tree_synonyms_unknown_and_broken(tmp_path):
    root = make_tree(tmp_path / "faces")
    data = load_image_folder(root, "train")
    assert data.counts() == {**{e: 0 for e in EMOTIONS}, "angry": 3, "happy": 3, "sad": 3}
    assert data.skipped_classes == {"contempt": 3}
    assert data.bad_files == 1
    assert data.images.shape == (9, 48, 48)
    assert "contempt" in data.summary() and "1 unreadable" in data.summary()


def test_same_tree_inside_a_zip(tmp_path):
    root = make_tree(tmp_path / "faces")
    zpath = tmp_path / "faces.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in root.rglob("*"):
            if f.is_file():
                z.write(f, "release/" + f.relative_to(root).as_posix())
    a, b = load_image_folder(root, "train"), load_dataset(zpath, "train")
    assert np.array_equal(np.sort(a.labels), np.sort(b.labels)) and b.bad_files == 1


def test_missing_split_and_paths(tmp_path):
    root = make_tree(tmp_path / "faces")
    with pytest.raises(DataError, match="no images under <val>"):
        load_image_folder(root, "val")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope")
    bad = tmp_path / "bad.zip"
    bad.write_text("zip? no")
    with pytest.raises(DataError, match="not a zip"):
        load_dataset(bad)


@pytest.mark.skipif(not SHARED_ZIP.exists(), reason="../shared/data/fer2013-train-val.zip not present")
def test_real_fer2013_val_split():
    va = load_dataset(SHARED_ZIP, "val")
    assert va.counts() == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "sad": 653, "surprise": 415, "neutral": 607}
    assert va.bad_files == 0 and not va.skipped_classes
