"""Evaluate an emotion model (ONNX + card, onnxruntime only) on a labelled face set."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .datasets import LabelledFaces
from .emotion import EmotionModel, read_card, write_card
from .errors import ModelError


@dataclass
class EvalResult:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows = true class)."""

    classes: tuple[str, ...]
    confusion: np.ndarray  # (C, C) int
    tta: bool = False

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.n, 1))

    def per_class(self) -> dict[str, dict[str, float]]:
        out = {}
        for i, name in enumerate(self.classes):
            tp = float(self.confusion[i, i])
            support = float(self.confusion[i].sum())
            predicted = float(self.confusion[:, i].sum())
            p = tp / predicted if predicted else 0.0
            r = tp / support if support else 0.0
            out[name] = {
                "precision": round(p, 4),
                "recall": round(r, 4),
                "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                "support": int(support),
            }
        return out

    def to_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "n": self.n,
            "tta": self.tta,
            "classes": list(self.classes),
            "per_class": self.per_class(),
            "confusion": self.confusion.astype(int).tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def text(self) -> str:
        """A readable report: accuracy, per-class table and the confusion matrix."""
        w = max(len(c) for c in self.classes) + 1
        lines = [f"accuracy {self.accuracy:.4f} on {self.n} faces" + (" (with mirror TTA)" if self.tta else ""), ""]
        lines.append(f"{'class':<{w}} precision recall    f1 support")
        for name, m in self.per_class().items():
            lines.append(f"{name:<{w}} {m['precision']:9.3f} {m['recall']:6.3f} {m['f1']:5.3f} {m['support']:7d}")
        lines += ["", "confusion (rows = true, columns = predicted)", " " * w + "".join(f"{c[:7]:>8}" for c in self.classes)]
        for i, name in enumerate(self.classes):
            lines.append(f"{name:<{w}}" + "".join(f"{int(v):8d}" for v in self.confusion[i]))
        return "\n".join(lines)

    def plot_confusion(self, path: str | Path, cell: int = 72) -> Path:
        """Write the row-normalised confusion matrix as a PNG heat-map (OpenCV drawing only)."""
        c = len(self.classes)
        margin_l, margin_t = 110, 60
        img = np.full((margin_t + c * cell + 40, margin_l + c * cell + 20, 3), 255, np.uint8)
        rows = self.confusion.sum(1, keepdims=True)
        norm = self.confusion / np.maximum(rows, 1)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for i in range(c):
            for j in range(c):
                v = float(norm[i, j])
                colour = tuple(int(255 - v * k) for k in (60, 160, 220))  # white -> dark blue
                x, y = margin_l + j * cell, margin_t + i * cell
                cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
                ink = (255, 255, 255) if v > 0.5 else (0, 0, 0)
                cv2.putText(img, f"{v:.2f}", (x + 12, y + cell // 2), font, 0.5, ink, 1, cv2.LINE_AA)
                cv2.putText(img, str(int(self.confusion[i, j])), (x + 12, y + cell // 2 + 18), font, 0.38, ink, 1, cv2.LINE_AA)
            cv2.putText(img, self.classes[i], (8, margin_t + i * cell + cell // 2 + 5), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(img, self.classes[i][:8], (margin_l + i * cell + 4, margin_t - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"true (rows) vs predicted; accuracy {self.accuracy:.3f}, n={self.n}",
                    (8, img.shape[0] - 14), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        path = Path(path)
        if not cv2.imwrite(str(path), img):
            raise ModelError(f"cannot write {path}")
        return path


def predict_dataset(model: EmotionModel, data: LabelledFaces, tta: bool = False, batch: int = 256) -> np.ndarray:
    """Probabilities for every face of ``data`` (all preprocessing from the model card)."""
    out = [model.predict(list(data.images[i : i + batch]), tta=tta) for i in range(0, len(data), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def evaluate(model: EmotionModel | str | Path | None, data: LabelledFaces, tta: bool = False) -> EvalResult:
    """Evaluate ``model`` (an EmotionModel, an ONNX path, or None for the shipped one) on ``data``."""
    if not isinstance(model, EmotionModel):
        model = EmotionModel(model, threads=0)
    missing = [c for c in data.classes if c not in model.classes]
    if missing:
        raise ModelError(f"model {model.name} lacks classes {', '.join(missing)}")
    probs = predict_dataset(model, data, tta)
    # map the model's class order onto the data's
    order = [model.classes.index(c) for c in data.classes]
    pred = probs[:, order].argmax(1)
    k = len(data.classes)
    confusion = np.bincount(data.labels * k + pred, minlength=k * k).reshape(k, k)
    return EvalResult(tuple(data.classes), confusion, tta)


def write_card_metrics(onnx_path: str | Path, result: EvalResult, data_desc: dict, tta_result: EvalResult | None = None) -> dict:
    """Record evaluation results in the model card beside ``onnx_path`` (re-stamping its sha256)."""
    card = read_card(onnx_path)
    card["evaluation"] = {
        **data_desc,
        "n": result.n,
        "val_accuracy": round(result.accuracy, 4),
        "per_class_recall": {k: v["recall"] for k, v in result.per_class().items()},
        "per_class_precision": {k: v["precision"] for k, v in result.per_class().items()},
        "confusion": result.confusion.astype(int).tolist(),
        "date": _dt.date.today().isoformat(),
    }
    if tta_result is not None:
        card["evaluation"]["val_accuracy_tta"] = round(tta_result.accuracy, 4)
    write_card(onnx_path, card)
    return card
