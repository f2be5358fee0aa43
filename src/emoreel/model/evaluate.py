"""Evaluate an emotion model (ONNX + card, onnxruntime only) on a labelled face set.

:func:`evaluate` runs the same runtime as ``emoreel analyze`` (:class:`~emoreel.model.emotion.EmotionModel`,
all preprocessing from the model card) over every face of a
:class:`~emoreel.model.datasets.LabelledFaces` set, and returns an :class:`EvalResult`:
accuracy, per-class precision/recall/F1 and the confusion matrix (rows = true
class, columns = predicted), as JSON, as text and as a PNG heat-map.
:func:`write_card_metrics` records a result in the model card beside the ONNX file. Photos through
the whole analysis (detection included) are scored by :mod:`emoreel.analysis.evaluate_photos`.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError, OutputError
from .datasets import LabelledFaces
from .emotion import EmotionModel, default_model_path, read_card, resolve_model, sha256_file, write_card


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
