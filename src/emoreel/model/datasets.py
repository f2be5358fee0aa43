"""Labelled face sets for training and evaluation.

Two FER2013 layouts are read, plus any face set in the same folder layout:

* Kaggle's original ``fer2013.csv`` (``emotion,pixels,Usage``);
* an image-folder tree ``<root>/<split>/<class>/*.jpg|png``, from a folder or
  straight from a ``.zip``.

Class folder names map case-insensitively, with the usual synonyms; classes the
model does not have (e.g. ``contempt``) and unreadable files are counted and
reported in :class:`LabelledFaces`, never fatal.
"""

from __future__ import annotations

import csv
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DataError
from ..types import EMOTIONS

log = logging.getLogger(__name__)


SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "calm": "neutral",
}

# CSV ``Usage`` values of the official FER2013 splits, by our split name.
CSV_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class LabelledFaces:
    """Grey face images with integer labels into ``classes``."""

    images: np.ndarray  # (N, size, size) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...] = EMOTIONS
    source: str = ""
    bad_files: int = 0
    skipped_classes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c[i]) for i, name in enumerate(self.classes)}

    def summary(self) -> str:
        parts = [f"{len(self)} faces from {self.source}"]
        if self.bad_files:
            parts.append(f"{self.bad_files} unreadable skipped")
        for name, n in sorted(self.skipped_classes.items()):
            parts.append(f"class '{name}' not in model, {n} skipped")
        return "; ".join(parts)


MAX_FILE_BYTES = 256 << 20
"""Larger image files (or zip members, by their declared size) in a data set are skipped, never read."""

def canonical_class(name: str) -> str | None:
    """Map a folder/class name to one of :data:`EMOTIONS`, or ``None``."""
    return SYNONYMS.get(name.strip().lower())


def _to_size(img: np.ndarray, size: int) -> np.ndarray:
    import cv2  # imported here: a face pack (.npz) loads with NumPy alone

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def load_fer_csv(path: str | Path, split: str = "train", size: int = 48) -> LabelledFaces:
    """Read Kaggle's ``fer2013.csv``; ``split`` is train/val/test or a Usage value."""
    path = Path(path)
    usage = CSV_USAGE.get(split, split)
    images, labels, bad = [], [], 0
    try:
        fh = path.open(newline="")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"emotion", "pixels"} <= set(reader.fieldnames):
            raise DataError(f"{path}: not a FER2013 CSV (needs columns emotion,pixels[,Usage])")
        for row in reader:
            if "Usage" in row and row["Usage"] is not None and usage and row["Usage"].strip() != usage:
                continue
            try:
                label = int(row["emotion"])
                pix = np.array(row["pixels"].split(), dtype=np.float32)
                side = int(round(np.sqrt(pix.size)))
                if not 0 <= label < len(EMOTIONS) or side * side != pix.size or side < 8:
                    raise ValueError
                if pix.min() < 0 or pix.max() > 255:
                    raise ValueError
            except (ValueError, TypeError, AttributeError):
                bad += 1
                continue
            images.append(_to_size(pix.reshape(side, side).astype(np.uint8), size))
            labels.append(label)
    if bad:
        log.warning("%s: %d bad rows skipped", path, bad)
    return _pack(images, labels, f"{path} [{usage}]", bad, {})


def _split_members(names: list[str], split: str) -> dict[str, list[str]]:
    """Group image paths under ``.../<split>/<class>/file`` by class folder."""
    groups: dict[str, list[str]] = {}
    for name in names:
        p = PurePosixPath(name)
        if p.suffix.lower() not in IMAGE_SUFFIXES or len(p.parts) < 3:
            continue
        if p.parts[-3].lower() != split.lower():
            continue
        groups.setdefault(p.parts[-2], []).append(name)
    return groups


def _has_split_folders(names: list[str]) -> bool:
    return any(len(PurePosixPath(n).parts) >= 3 and PurePosixPath(n).parts[-3].lower() in CSV_USAGE for n in names)


def _class_members(names: list[str]) -> dict[str, list[str]]:
    """Group image paths ``<class>/file`` (directly under the root, or under one top folder in a zip)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        p = PurePosixPath(name)
        if p.suffix.lower() in IMAGE_SUFFIXES and (len(p.parts) == 2 or len(p.parts) == 3 and canonical_class(p.parts[1])):
            groups.setdefault(p.parts[-2], []).append(name)
    return groups


def load_image_folder(path: str | Path, split: str = "train", size: int = 48) -> LabelledFaces:
    """Read ``<root>/<split>/<class>/*`` from a folder or a ``.zip`` file; a root of plain ``<class>/``
    folders (no split folders at all) is read whole, for any ``split``."""
    from ..media.images import MAX_IMAGE_PIXELS, image_size, image_size_of, too_many_pixels

    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    zf = None
    if path.is_file():
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError):
            raise DataError(f"{path}: not a zip file or folder of images") from None
        names = zf.namelist()

        def read(name: str) -> bytes | None:
            if zf.getinfo(name).file_size > MAX_FILE_BYTES:  # refused by its declared size, before it is inflated
                return None
            return zf.read(name)
    else:
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]

        def read(name: str) -> bytes | None:
            f = path / name
            if f.stat().st_size > MAX_FILE_BYTES or too_many_pixels(image_size(str(f))):
                return None
            return f.read_bytes()

    groups = _split_members(names, split)
    plain = not groups and not _has_split_folders(names)
    if plain:  # a plain <class>/ folder (no splits): all of it, whatever the split
        groups = _class_members(names)
    if not groups:
        raise DataError(f"{path}: no images under <{split}>/<class>/ folders, nor under <class>/ folders "
                        f"named {', '.join(EMOTIONS)}")  # fmt: skip
    images, labels, bad = [], [], 0
    large: list[str] = []  # refused by their declared size
    skipped: Counter[str] = Counter()
    import cv2

    try:
        for folder in sorted(groups):
            cls = canonical_class(folder)
            if cls is None:
                skipped[folder] += len(groups[folder])
                continue
            label = EMOTIONS.index(cls)
            for name in sorted(groups[folder]):
                try:
                    data = read(name)
                    if data is None or too_many_pixels(image_size_of(data)):  # never decoded
                        large.append(name)
                        continue
                    buf = np.frombuffer(data, np.uint8)
                    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
                except (OSError, zipfile.BadZipFile, ValueError, MemoryError, cv2.error):
                    img = None
                if img is None:
                    bad += 1
                    continue
                images.append(_to_size(img, size))
                labels.append(label)
    finally:
        if zf is not None:
            zf.close()
    for folder, n in skipped.items():
        log.warning("%s: class folder '%s' is not one of %s; %d images skipped", path, folder, ", ".join(EMOTIONS), n)
    if bad:
        log.warning("%s: %d unreadable images skipped", path, bad)
    if large:
        log.warning("%s: %d images too large to read skipped (over %d MB or %d megapixels), e.g. %s", path, len(large),
                    MAX_FILE_BYTES >> 20, MAX_IMAGE_PIXELS // 1_000_000, large[0])  # fmt: skip
    return _pack(images, labels, f"{path} [all: no split folders]" if plain else f"{path} [{split}]", bad, dict(skipped))


def _pack(images, labels, source, bad, skipped) -> LabelledFaces:
    if not images:
        raise DataError(f"{source}: no usable labelled faces")
    return LabelledFaces(
        images=np.stack(images).astype(np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        source=source,
        bad_files=bad,
        skipped_classes=skipped,
    )


def concat(sets: list[LabelledFaces]) -> LabelledFaces:
    """One training set of several (same classes and face size), its source naming each part."""
    sizes = {d.images.shape[1:] for d in sets}
    if len(sizes) > 1:
        raise DataError(f"face sets of different sizes cannot be mixed: {sorted(sizes)}")
    return LabelledFaces(
        images=np.concatenate([d.images for d in sets]),
        labels=np.concatenate([d.labels for d in sets]),
        source=" + ".join(f"{d.source} ({len(d)})" for d in sets),
        bad_files=sum(d.bad_files for d in sets),
    )


def save_pack(path: str | Path, splits: dict[str, LabelledFaces]) -> Path:
    """Write splits to one compressed ``.npz`` (uint8 faces + labels): a compact copy to carry to another machine."""
    path = Path(path)
    arrays = {}
    for name, d in splits.items():
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = d.images, d.labels
        arrays[f"{name}_source"] = np.array(d.source)
    arrays["classes"] = np.array(EMOTIONS)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_pack(path: str | Path, split: str = "train") -> LabelledFaces:
    """A split from a :func:`save_pack` file."""
    try:
        with np.load(path) as z:
            if f"{split}_images" not in z:
                have = sorted(k[: -len("_images")] for k in z.files if k.endswith("_images"))
                raise DataError(f"{path}: no split {split!r} (it has {', '.join(have)})")
            if tuple(z["classes"]) != EMOTIONS:
                raise DataError(f"{path}: classes {tuple(z['classes'])} are not emoreel's {EMOTIONS}")
            return LabelledFaces(z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64),
                                 source=f"{path} [{split}] (packed from {z[f'{split}_source']})")  # fmt: skip
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable face pack ({type(e).__name__})") from None


def load_dataset(path: str | Path, split: str = "train", size: int = 48) -> LabelledFaces:
    """Load a split from a FER2013 CSV, an image folder tree, a zip of one, or a :func:`save_pack` ``.npz``."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        return load_pack(p, split)
    if p.suffix.lower() == ".csv":
        return load_fer_csv(p, split, size)
    return load_image_folder(p, split, size)

