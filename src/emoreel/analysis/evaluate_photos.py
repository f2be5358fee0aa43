"""Evaluate the whole analysis on labelled full-size photos: each photo of ``<class>/`` folders goes
through the :class:`~emoreel.analysis.analyzer.Analyzer` (detection at photo resolution, the face
gate, alignment, classification) and its largest accepted face is scored against the folder's class.

Evaluation of the model alone on face crops is :mod:`emoreel.model.evaluate`, whose
:class:`~emoreel.model.evaluate.EvalResult` this reuses.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import AnalyzeOptions
from ..errors import DataError, InputError
from ..faces.align import estimate_yaw
from ..media.images import ImageTooLarge, image_size, imread
from ..media.video import open_source
from ..model.datasets import IMAGE_SUFFIXES, canonical_class
from ..model.emotion import EmotionModel
from ..model.evaluate import EvalResult, load_model
from ..model.photoset import PhotoSet
from ..types import EMOTIONS
from .analyzer import Analyzer
from .frames import detect_parallel

PHOTO_MIN_SIDE = 96
"""A labelled folder whose images are larger than this (long side, pixels) holds photos, not face crops."""
MACRO_MIN_PHOTOS = 30
"""Macro recall averages the classes with at least this many photos (fewer give a recall too noisy to weigh)."""
YAW_BUCKETS: tuple[tuple[str, float, float], ...] = (("0-15", 0, 15), ("15-30", 15, 30), ("30-45", 30, 45), ("45+", 45, 181))
"""Head-turn buckets (absolute degrees) of :attr:`PhotoEvalResult.by_yaw`."""


@dataclass
class PhotoOutcome:
    """One photo of a photo evaluation: its true class and what analyze made of its largest accepted face."""

    name: str  # relative to the data folder, e.g. happy/img_003.jpg
    true: str
    predicted: str = ""  # "" when no face was accepted
    prob: float = float("nan")
    yaw: float = float("nan")  # head turn in degrees (NaN when unknown)
    face_px: float = float("nan")  # box side (sqrt of the area), pixels
    faces: int = 0  # faces detected (accepted or not)

    @property
    def found(self) -> bool:
        return bool(self.predicted)

    @property
    def correct(self) -> bool:
        return self.predicted == self.true


@dataclass
class PhotoEvalResult:
    """A photo evaluation: accuracy over photos with an accepted face (``faces``) and over all photos."""

    faces: EvalResult  # confusion over the photos with an accepted face
    photos: list[PhotoOutcome]
    skipped: list[str] = field(default_factory=list)  # unreadable images
    skipped_classes: dict[str, int] = field(default_factory=dict)  # folders that name no class
    options: dict = field(default_factory=dict)  # the analyze options used

    @property
    def n_photos(self) -> int:
        return len(self.photos)

    @property
    def found(self) -> int:
        return sum(p.found for p in self.photos)

    @property
    def accuracy_found(self) -> float:
        return self.faces.accuracy

    @property
    def accuracy_all(self) -> float:
        return sum(p.correct for p in self.photos) / self.n_photos if self.photos else 0.0

    @property
    def per_class(self) -> dict[str, dict[str, float]]:
        """Per class: photos, found, recall over found photos (and over all), precision."""
        out = {}
        per = self.faces.per_class
        for name in self.faces.classes:
            mine = [p for p in self.photos if p.true == name]
            if not mine and not per[name]["support"]:
                continue
            out[name] = {
                "photos": len(mine),
                "found": sum(p.found for p in mine),
                "recall": per[name]["recall"],
                "recall_all": round(sum(p.correct for p in mine) / len(mine), 4) if mine else 0.0,
                "precision": per[name]["precision"],
            }
        return out

    def macro_recall(self, min_photos: int = MACRO_MIN_PHOTOS) -> float:
        """Mean recall over all photos (a photo without a face is wrong) of the classes with ``min_photos`` or more."""
        rs = [m["recall_all"] for m in self.per_class.values() if m["photos"] >= min_photos]
        return float(np.mean(rs)) if rs else 0.0

    def macro_classes(self, min_photos: int = MACRO_MIN_PHOTOS) -> list[str]:
        return [c for c, m in self.per_class.items() if m["photos"] >= min_photos]

    def share(self, cls: str = "neutral") -> tuple[float, float]:
        """``(predicted, true)`` share of ``cls`` among the photos with an accepted face."""
        found = [p for p in self.photos if p.found]
        if not found:
            return 0.0, 0.0
        return sum(p.predicted == cls for p in found) / len(found), sum(p.true == cls for p in found) / len(found)

    @property
    def by_yaw(self) -> dict[str, dict]:
        """Accuracy of the found photos by head turn (:data:`YAW_BUCKETS`, plus ``unknown``)."""
        out: dict[str, dict] = {}
        for label, lo, hi in (*YAW_BUCKETS, ("unknown", math.nan, math.nan)):
            mine = [p for p in self.photos if p.found and (lo <= abs(p.yaw) < hi if label != "unknown" else math.isnan(p.yaw))]
            if mine:
                right = sum(p.correct for p in mine)
                out[label] = {"n": len(mine), "correct": right, "accuracy": round(right / len(mine), 4)}
        return out

    def to_dict(self, per_photo: bool = True) -> dict:
        d = {
            "mode": "photos",
            "data": self.faces.data,
            "model": self.faces.model,
            "tta": self.faces.tta,
            "views": self.faces.views_used,
            "photos": self.n_photos,
            "faces_found": self.found,
            "accuracy_found": round(self.accuracy_found, 4),
            "accuracy_all": round(self.accuracy_all, 4),
            "macro_recall": round(self.macro_recall(), 4),
            "macro_classes": self.macro_classes(),
            "neutral_share": {"predicted": round(self.share()[0], 4), "true": round(self.share()[1], 4)},
            "classes": list(self.faces.classes),
            "per_class": self.per_class,
            "confusion": self.faces.confusion,
            "by_yaw": self.by_yaw,
            "skipped_unreadable": self.skipped,
            "skipped_classes": self.skipped_classes,
            "options": self.options,
        }
        if per_photo:
            d["per_photo"] = [
                {"name": p.name, "true": p.true, "predicted": p.predicted, "faces": p.faces,
                 "prob": None if math.isnan(p.prob) else round(p.prob, 4),
                 "yaw": None if math.isnan(p.yaw) else round(p.yaw, 1),
                 "face_px": None if math.isnan(p.face_px) else round(p.face_px, 1)}
                for p in self.photos
            ]  # fmt: skip
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def text(self) -> str:
        n, found = self.n_photos, self.found
        lines = [
            f"{n} photos, {found} with an accepted face ({100 * found / n if n else 0:.0f}%)",
            f"accuracy {self.accuracy_found:.4f} over photos with a face, {self.accuracy_all:.4f} over all photos",
            f"macro recall {self.macro_recall():.4f} over all photos of the classes with {MACRO_MIN_PHOTOS}+ photos "
            f"({', '.join(self.macro_classes())})",
            "neutral: predicted for {:.1%} of the photos with a face, true for {:.1%}".format(*self.share()),
        ]
        if self.skipped:
            lines.append(f"{len(self.skipped)} unreadable images skipped")
        for folder, k in sorted(self.skipped_classes.items()):
            lines.append(f"folder '{folder}' names no class; {k} images skipped")
        lines += ["", f"{'class':<9} photos  found  recall  recall(all)  precision"]
        for name, m in self.per_class.items():
            lines.append(f"{name:<9} {m['photos']:6d} {m['found']:6d} {m['recall']:7.3f} {m['recall_all']:12.3f} {m['precision']:10.3f}")
        if self.by_yaw:
            lines += ["", "by head turn (found photos): " + ", ".join(f"{k}° {v['accuracy']:.3f} (n={v['n']})" for k, v in self.by_yaw.items())]
        lines += ["", "confusion over photos with a face (rows = true, columns = predicted)", self.faces.confusion_text()]
        return "\n".join(lines)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """``{folder name: image files}`` of the immediate subfolders of ``root`` (naturally sorted)."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
        if files:
            out[d.name] = sorted(files, key=lambda f: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", f.name)])
    return out


def photo_root(path: str | Path, split: str | None = None) -> Path | None:
    """The folder of ``<class>/`` photo folders under ``path`` (``path`` itself or ``path/split``), or None."""
    p = Path(path)
    for root in ([p / split] if split else []) + [p]:
        if root.is_dir() and any(canonical_class(name) for name in _class_folders(root)):
            return root
    return None


def _readable(f: Path) -> bool:
    try:
        return imread(str(f)) is not None
    except ImageTooLarge:
        return False


def is_photo_folder(path: str | Path, split: str | None = None, sample: int = 5) -> bool:
    """Whether ``path`` holds full-size photos in ``<class>/`` folders (an image over :data:`PHOTO_MIN_SIDE` px)
    rather than a face-crop data set (FER2013's 48x48 crops, a CSV or a zip)."""
    root = photo_root(path, split)
    if root is None:
        return False
    for files in _class_folders(root).values():
        for f in files[:sample]:
            size = image_size(str(f))  # from the header: nothing decoded
            if size is not None:
                if max(size) > PHOTO_MIN_SIDE:
                    return True
                continue
            img = cv2.imread(str(f), cv2.IMREAD_REDUCED_GRAYSCALE_2)  # half size is enough to measure
            if img is not None and 2 * max(img.shape[:2]) > PHOTO_MIN_SIDE:
                return True
    return False


def evaluate_photos(
    data: str | Path,
    model: EmotionModel | str | Path | None = None,
    options=None,
    split: str | None = None,
    progress=None,
) -> PhotoEvalResult:
    """Run each photo of ``data/<class>/`` (or ``data/<split>/<class>/``) through analyze's own path and score it.

    Detection at photo resolution (``options.image_max_side``), the face gate, alignment and
    classification are :class:`~emoreel.analysis.analyzer.Analyzer`'s, with ``options`` (an
    :class:`~emoreel.config.AnalyzeOptions`, analyze's defaults when None). The largest accepted
    face of each photo is its prediction; a photo without one counts as wrong in ``accuracy_all``.
    ``progress(done, total)`` is called after each photo.

    A labelled photo set with people (``labels.csv`` with a ``person`` column, e.g. ``webfaces.zip``;
    :mod:`emoreel.model.photoset`) is evaluated on its split ``split`` (``dev`` by default: the people
    held out of training by :func:`~emoreel.model.photoset.person_split`; ``train`` or ``all``).
    """
    if PhotoSet.is_photo_set(data):
        split = split or "dev"
        with PhotoSet(data) as ps, tempfile.TemporaryDirectory(prefix="emoreel-photos-") as tmp:
            ps.extract(ps.split(split), tmp)
            result = evaluate_photos(tmp, model, options, progress=progress)
        result.faces.data = (f"{data} [{split}: people held out by emoreel.model.photoset.person_split]"
                             if split == "dev" else f"{data} [{split}]")  # fmt: skip
        return result
    root = photo_root(data, split)
    if root is None:
        raise DataError(f"{data}: no <class>/ folders of images (class names: {', '.join(EMOTIONS)})")
    files: list[Path] = []
    truth: list[str] = []
    skipped_classes: dict[str, int] = {}
    for folder, fs in _class_folders(root).items():
        cls = canonical_class(folder)
        if cls is None:
            skipped_classes[folder] = len(fs)
            continue
        files += fs
        truth += [cls] * len(fs)
    if not files:
        raise DataError(f"{root}: no images in class folders ({', '.join(EMOTIONS)})")
    o = options or AnalyzeOptions()
    em = load_model(model if model is not None else o.model, threads=1)
    outcomes = [PhotoOutcome(f.relative_to(root).as_posix(), t) for f, t in zip(files, truth)]
    classes, skipped = em.classes, []
    done = 0
    for k, _, faces, best in largest_faces(files, root, o, em, skipped):
        out = outcomes[k]
        out.faces = len(faces)
        if best is not None:
            p = faces.probs[best]
            c = int(np.argmax(p))
            out.predicted, out.prob = classes[c], float(p[c])
            out.face_px = float(np.sqrt(faces.widths[best] * faces.heights[best]))
            out.yaw = float(estimate_yaw(faces.landmarks[best]))
        done += 1
        if progress:
            progress(done, len(outcomes))
    views = em.views_name(o.views if o.tta else "single")
    skipped_set = set(skipped)
    photos = [p for p in outcomes if p.name not in skipped_set]
    found = [p for p in photos if p.found and p.predicted in EMOTIONS]
    faces_result = EvalResult.from_predictions(
        EMOTIONS, [EMOTIONS.index(p.true) for p in found], [EMOTIONS.index(p.predicted) for p in found],
        tta=views != "single", views=views, data=str(root), model=em.name,
    )  # fmt: skip
    return PhotoEvalResult(faces_result, photos, skipped, skipped_classes, o.to_dict())


def largest_faces(files: list[Path], root: Path, options: AnalyzeOptions, model: EmotionModel, skipped: list[str]):
    """Each photo through analyze's photo path; yields ``(k, image, faces, best)`` for ``files[k]``.

    ``faces`` are the photo's faces after detection (with the second look), the gate,
    alignment and classification; ``best`` is the index of its largest accepted face with
    probabilities, or None. Unreadable photos are appended to ``skipped`` (names relative to
    ``root``) and not yielded.
    """
    index = list(range(len(files)))
    try:
        src = open_source([str(f) for f in files], root=root)
    except InputError:  # the first image is unreadable: skip the unreadable ones up front
        index = [k for k, f in enumerate(files) if _readable(f)]
        if not index:
            raise DataError(f"{root}: no readable images") from None
        readable = set(index)
        skipped += [files[k].relative_to(root).as_posix() for k in range(len(files)) if k not in readable]
        src = open_source([str(files[k]) for k in index], root=root)
    analyzer = Analyzer(options, model=model)
    try:
        with src:
            analyzer.use_source(src)
            for frame, faces, _, _ in detect_parallel(analyzer, src, max(1, options.threads)):
                ok = np.flatnonzero(faces.accepted & np.isfinite(faces.probs).all(1)) if len(faces) else np.zeros(0, int)
                best = int(ok[np.argmax(faces.widths[ok] * faces.heights[ok])]) if len(ok) else None
                yield index[frame.index], frame.image, faces, best
            skipped += list(src.skipped_images)
    finally:
        analyzer.close()
