"""Evaluate an emotion model (ONNX + card, onnxruntime only) on a labelled face set.

:func:`evaluate` runs the same runtime as ``emoreel analyze`` (:class:`~emoreel.model.emotion.EmotionModel`,
all preprocessing from the model card) over every face of a
:class:`~emoreel.model.datasets.LabelledFaces` set, and returns an :class:`EvalResult`:
accuracy, per-class precision/recall/F1 and the confusion matrix (rows = true
class, columns = predicted), as JSON, as text and as a PNG heat-map.
:func:`write_card_metrics` records a result in the model card beside the ONNX file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .datasets import LabelledFaces
from .emotion import EmotionModel, default_model_path, read_card, resolve_model, sha256_file, write_card
from ..errors import InputError, ModelError, OutputError
from ..types import EMOTIONS


@dataclass
class EvalResult:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows = true class)."""

    classes: tuple[str, ...]
    confusion: list[list[int]]  # confusion[true][predicted]
    tta: bool = False
    data: str = ""  # where the faces came from
    views: str = ""  # the test-time views averaged (emoreel.model.emotion.VIEWS; "ten-crop" for crop models); "" = one
    model: str = ""  # the model's name
    _m: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = np.asarray(self.confusion, dtype=np.int64)
        k = len(self.classes)
        if m.shape != (k, k):
            raise ValueError(f"confusion must be {k}x{k}, got {m.shape}")
        self.classes = tuple(self.classes)
        self.confusion = m.tolist()
        self._m = m

    @classmethod
    def from_predictions(cls, classes, labels, predicted, **kw) -> "EvalResult":
        """Build from integer true labels and predicted class indices (both into ``classes``)."""
        k = len(classes)
        labels, predicted = np.asarray(labels, np.int64), np.asarray(predicted, np.int64)
        m = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
        return cls(tuple(classes), m.tolist(), **kw)

    @property
    def n(self) -> int:
        return int(self._m.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self._m) / self.n) if self.n else 0.0

    @property
    def per_class(self) -> dict[str, dict[str, float]]:
        """``{class: {precision, recall, f1, support}}``; 0.0 where a ratio is undefined."""
        out = {}
        for i, name in enumerate(self.classes):
            tp = float(self._m[i, i])
            support = int(self._m[i].sum())
            predicted = float(self._m[:, i].sum())
            p = tp / predicted if predicted else 0.0
            r = tp / support if support else 0.0
            out[name] = {
                "precision": round(p, 4),
                "recall": round(r, 4),
                "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                "support": support,
            }
        return out

    def to_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "n": self.n,
            "tta": self.tta,
            "views": self.views_used,
            "model": self.model,
            "data": self.data,
            "classes": list(self.classes),
            "per_class": self.per_class,
            "confusion": self.confusion,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def views_used(self) -> str:
        """The views averaged per face (a result built without ``views``: the mirror when ``tta``, else one)."""
        return self.views or ("mirror" if self.tta else "single")

    def _views_text(self) -> str:
        return "" if self.views_used == "single" else f" (with {self.views_used} TTA)"

    def confusion_text(self) -> str:
        """The confusion matrix as an aligned table (rows = true, columns = predicted)."""
        corner = "true \\ predicted"
        w = max(len(corner), *(len(c) for c in self.classes)) + 1
        cw = max(max(len(c) for c in self.classes), len(str(self._m.max(initial=0)))) + 2
        lines = [corner.ljust(w) + "".join(f"{c:>{cw}}" for c in self.classes)]
        for i, name in enumerate(self.classes):
            lines.append(f"{name:<{w}}" + "".join(f"{int(v):{cw}d}" for v in self._m[i]))
        return "\n".join(lines)

    def text(self) -> str:
        """A readable report: accuracy, per-class table and the confusion matrix."""
        w = max(len(c) for c in self.classes) + 1
        head = f"accuracy {self.accuracy:.4f} on {self.n} faces" + self._views_text()
        lines = [head, "", f"{'class':<{w}} precision  recall      f1  support"]
        for name, m in self.per_class.items():
            lines.append(f"{name:<{w}} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:7.3f} {m['support']:8d}")
        lines += ["", "confusion (rows = true, columns = predicted)", self.confusion_text()]
        return "\n".join(lines)

    def plot_confusion(self, path: str | Path, cell: int = 76) -> Path:
        """Write the confusion matrix as a PNG heat-map (OpenCV drawing only).

        Each cell shows its count and, smaller, its share of the true class's row;
        its shade is that share (white 0 -> dark blue 1). Rows are true classes,
        columns predicted; the right-hand column gives each class's support and recall.
        """
        k = len(self.classes)
        font, thin = cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA
        label_scale = 0.55

        def size(text: str, scale: float, thick: int = 1) -> tuple[int, int]:
            (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
            return tw, th

        def put(img, text, x, y, scale, colour, thick=1, align="left"):
            tw, th = size(text, scale, thick)
            if align == "center":
                x -= tw // 2
            elif align == "right":
                x -= tw
            cv2.putText(img, text, (int(x), int(y + th // 2)), font, scale, colour, thick, thin)

        name_w = max(size(c, label_scale)[0] for c in self.classes)
        left = max(name_w, size("true", label_scale)[0]) + 24
        top = 96
        right = max(size("n=00000", 0.45)[0], size("recall", 0.45)[0]) + 28
        bottom = 30
        width, height = left + k * cell + right, top + k * cell + bottom
        img = np.full((height, width, 3), 255, np.uint8)

        rows = self._m.sum(1, keepdims=True)
        share = self._m / np.maximum(rows, 1)
        dark = np.array([110, 45, 8], np.float64)  # BGR of share 1.0
        for i in range(k):
            for j in range(k):
                v = float(share[i, j])
                colour = tuple(int(round(255 * (1 - v) + dark[c] * v)) for c in range(3))
                x, y = left + j * cell, top + i * cell
                cv2.rectangle(img, (x, y), (x + cell, y + cell), colour, -1)
                ink = (255, 255, 255) if v > 0.55 else (20, 20, 20)
                put(img, str(int(self._m[i, j])), x + cell / 2, y + cell * 0.40, 0.6, ink, 2 if i == j else 1, "center")
                put(img, f"{100 * v:.0f}%", x + cell / 2, y + cell * 0.72, 0.42, ink, 1, "center")
        for t in range(k + 1):  # grid
            cv2.line(img, (left + t * cell, top), (left + t * cell, top + k * cell), (190, 190, 190), 1)
            cv2.line(img, (left, top + t * cell), (left + k * cell, top + t * cell), (190, 190, 190), 1)
        for i, name in enumerate(self.classes):
            put(img, name, left - 12, top + i * cell + cell / 2, label_scale, (0, 0, 0), 1, "right")
            # column heads: shrink a long name to fit its cell
            s = label_scale
            while s > 0.3 and size(name, s)[0] > cell - 6:
                s -= 0.05
            put(img, name, left + i * cell + cell / 2, top - 14, s, (0, 0, 0), 1, "center")
            r = self.per_class[name]
            put(img, f"n={r['support']}", left + k * cell + 10, top + i * cell + cell * 0.40, 0.45, (60, 60, 60))
            put(img, f"{r['recall']:.2f}", left + k * cell + 10, top + i * cell + cell * 0.72, 0.45, (60, 60, 60))
        put(img, "predicted", left + k * cell / 2, top - 44, label_scale, (0, 0, 0), 1, "center")
        put(img, "true", left - 12, top - 14, label_scale, (0, 0, 0), 1, "right")
        put(img, "recall", left + k * cell + 10, top - 14, 0.45, (60, 60, 60))
        title = f"accuracy {self.accuracy:.4f}, n={self.n}" + self._views_text()
        if self.model:
            title = f"{self.model}: {title}"
        put(img, title, 10, 20, 0.55, (0, 0, 0), 1)
        path = Path(path)
        try:
            ok = cv2.imwrite(str(path), img)
        except cv2.error:
            ok = False
        if not ok:
            raise OutputError(f"cannot write the confusion plot to {path} (needs an existing folder and an image suffix such as .png)")
        return path


def predict_dataset(model: EmotionModel, data: LabelledFaces, tta: bool | str = False, batch: int = 256) -> np.ndarray:
    """Probabilities (N, len(model.classes)) for every face of ``data``.

    The faces are fed as crops; the model card's preprocessing (size, colour,
    normalisation) is applied by :meth:`EmotionModel.predict`, and ``tta`` is its:
    True for the mirror (ten crops for crop models), or a view-set name.
    """
    out = [model.predict(list(data.images[i : i + batch]), tta=tta) for i in range(0, len(data), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def load_model(model: EmotionModel | str | Path | None, threads: int = 0) -> EmotionModel:
    """An :class:`EmotionModel` from an instance, an ONNX path, or ``None`` for the shipped model."""
    if isinstance(model, EmotionModel):
        return model
    if model is None:
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"no shipped emotion model at {path} yet: pass a model (--model) or export one (emoreel export)")
        return EmotionModel(path, threads=threads)
    return EmotionModel(resolve_model(model), threads=threads)


def evaluate(model: EmotionModel | str | Path | None, data: LabelledFaces, tta: bool | str = False) -> EvalResult:
    """Evaluate ``model`` (an EmotionModel, an ONNX path, or None for the shipped one) on ``data``.

    ``tta`` True averages each face's probabilities with those of its mirror image (ten crops for a
    model trained on crops); a name from ``emoreel.model.emotion.VIEWS`` averages over those views.
    The result's classes are ``data.classes``, whatever the model's output order.
    """
    model = load_model(model)
    missing = [c for c in data.classes if c not in model.classes]
    if missing:
        raise ModelError(f"model {model.name} lacks classes {', '.join(missing)}")
    probs = predict_dataset(model, data, tta)
    if probs.ndim != 2 or probs.shape[1] != len(model.classes):
        raise ModelError(f"model {model.name} gives {probs.shape[1:]} outputs per face, its card names {len(model.classes)} classes")
    order = [model.classes.index(c) for c in data.classes]  # the model's class order onto the data's
    pred = probs[:, order].argmax(1)
    views = model.views_name(tta)
    return EvalResult.from_predictions(data.classes, data.labels, pred, tta=views != "single", views=views,
                                       data=data.source, model=model.name)  # fmt: skip


def write_card_metrics(
    onnx_path: str | Path, result: EvalResult, data_desc: dict | str, tta_result: EvalResult | None = None
) -> dict:
    """Record ``result`` in the model card beside ``onnx_path`` (re-stamping its sha256).

    ``data_desc`` says what was evaluated, e.g. ``{"data": "fer2013-train-val.zip", "split": "val"}``
    (a string is taken as ``data``). The card's ``evaluation`` holds that plus
    ``val_accuracy``, ``n``, per-class recall and precision, the confusion matrix and the date;
    ``val_accuracy_tta`` too when ``tta_result`` is given.
    """
    card = read_card(onnx_path)
    desc = {"data": data_desc} if isinstance(data_desc, str) else dict(data_desc)
    per = result.per_class
    card["evaluation"] = {
        **desc,
        "n": result.n,
        "val_accuracy": round(result.accuracy, 4),
        "per_class_recall": {k: v["recall"] for k, v in per.items()},
        "per_class_precision": {k: v["precision"] for k, v in per.items()},
        "per_class_support": {k: v["support"] for k, v in per.items()},
        "confusion": result.confusion,
        "date": _dt.date.today().isoformat(),
    }
    if tta_result is not None:
        card["evaluation"]["val_accuracy_tta"] = round(tta_result.accuracy, 4)
    write_card(onnx_path, card)
    return read_card(onnx_path)


def data_fingerprint(path: str | Path) -> str | None:
    """sha256 of a data file (CSV or zip), ``None`` for a folder."""
    p = Path(path)
    return sha256_file(p) if p.is_file() else None


# ---- full-size photos through the analyze pipeline ---------------------------------------------

PHOTO_MIN_SIDE = 96
"""A labelled folder whose images are larger than this (long side, pixels) holds photos, not face crops."""
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
    from .datasets import IMAGE_SUFFIXES

    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
        if files:
            out[d.name] = sorted(files, key=lambda f: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", f.name)])
    return out


def photo_root(path: str | Path, split: str | None = None) -> Path | None:
    """The folder of ``<class>/`` photo folders under ``path`` (``path`` itself or ``path/split``), or None."""
    from .datasets import canonical_class

    p = Path(path)
    for root in ([p / split] if split else []) + [p]:
        if root.is_dir() and any(canonical_class(name) for name in _class_folders(root)):
            return root
    return None


def is_photo_folder(path: str | Path, split: str | None = None, sample: int = 5) -> bool:
    """Whether ``path`` holds full-size photos in ``<class>/`` folders (an image over :data:`PHOTO_MIN_SIDE` px)
    rather than a face-crop data set (FER2013's 48x48 crops, a CSV or a zip)."""
    root = photo_root(path, split)
    if root is None:
        return False
    for files in _class_folders(root).values():
        for f in files[:sample]:
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
    """
    from ..faces.align import estimate_yaw
    from ..config import AnalyzeOptions
    from .datasets import canonical_class
    from ..errors import DataError
    from ..analysis.analyzer import Analyzer, _detect_parallel
    from ..media.video import open_source

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
    try:
        src = open_source([str(f) for f in files], root=root)
    except InputError:  # the first image is unreadable: skip the unreadable ones up front
        readable = [k for k, f in enumerate(files) if cv2.imread(str(f)) is not None]
        if not readable:
            raise DataError(f"{root}: no readable images") from None
        src = open_source([str(files[k]) for k in readable], root=root)
        outcomes = [outcomes[k] for k in readable]
        files = [files[k] for k in readable]
    analyzer = Analyzer(o, model=em)
    classes = em.classes
    try:
        with src:
            analyzer.use_source(src)
            done = 0
            for frame, faces, _, _ in _detect_parallel(analyzer, src, max(1, o.threads)):
                out = outcomes[frame.index]
                out.faces = len(faces)
                ok = np.flatnonzero(faces.accepted & np.isfinite(faces.probs).all(1)) if len(faces) else np.zeros(0, int)
                if len(ok):
                    best = ok[np.argmax(faces.widths[ok] * faces.heights[ok])]
                    p = faces.probs[best]
                    k = int(np.argmax(p))
                    out.predicted, out.prob = classes[k], float(p[k])
                    out.face_px = float(np.sqrt(faces.widths[best] * faces.heights[best]))
                    out.yaw = float(estimate_yaw(faces.landmarks[best]))
                done += 1
                if progress:
                    progress(done, len(outcomes))
            skipped = list(src.skipped_images)
        views = em.views_name(analyzer.views)
    finally:
        analyzer.close()
    skipped_set = set(skipped)
    photos = [p for p in outcomes if p.name not in skipped_set]
    found = [p for p in photos if p.found and p.predicted in EMOTIONS]
    faces_result = EvalResult.from_predictions(
        EMOTIONS, [EMOTIONS.index(p.true) for p in found], [EMOTIONS.index(p.predicted) for p in found],
        tta=views != "single", views=views, data=str(root), model=em.name,
    )  # fmt: skip
    return PhotoEvalResult(faces_result, photos, skipped, skipped_classes, o.to_dict())
