"""Emotion classification with onnxruntime; all preprocessing comes from the model card.

A model is an ONNX file plus a JSON *model card* beside it (same name, ``.json``).
The card says the class names in output order, the input size, colour (``grey``
or ``bgr``/``rgb``), layout, scale/mean/std normalisation and whether the output
is ``logits`` or ``probabilities``; ``face.eyes`` optionally gives where the eyes
sit in the model's input (fractions of width/height), which :mod:`emoreel.faces.align`
uses to crop faces the way the training data was cropped. Any ONNX model with
such a card works (``--model PATH``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ModelError

DEFAULT_MODEL = "emoreel-fer-int8.onnx"  # the int8 copy of emoreel-fer.onnx: about 3x faster, same accuracy
DEFAULT_EYES = ((0.3, 0.4), (0.7, 0.4))  # fraction of (width, height) when a card has none


class View(NamedTuple):
    """One test-time view of an aligned face: scaled about its centre, shifted (pixels of the aligned face), mirrored."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    mirror: bool = False


def _mirrored(views: Sequence[View]) -> tuple[View, ...]:
    return tuple(views) + tuple(v._replace(mirror=True) for v in views)


VIEWS: dict[str, tuple[View, ...]] = {
    "single": (View(),),
    "mirror": _mirrored([View()]),
    # the face and its mirror, each also zoomed 10% in and out: averages over the few pixels by which landmark
    # alignment misplaces a face (FER2013 val through detection, every face: 68.35% vs 67.67% with the mirror alone)
    "jitter": _mirrored([View(), View(0.9), View(1.1)]),
}
"""Named test-time view sets; ``predict(crops, name)`` uses them (for ``"jitter"``, selectively: see
:meth:`EmotionModel.predict`); benchmarks/fer_pipeline.py measures them."""

JITTER_MARGIN = 0.15
"""``jitter`` adds its zoomed views only to faces whose mirror-averaged top-2 margin is below this: 18% of
FER2013 val faces, and the gain of zooming every face (val crops 69.04% vs 68.93%, through detection 68.29% vs
68.35%) at under a fifth of its extra work (docs/model.md)."""


def shipped_models_dir() -> Path:
    return Path(str(resources.files("emoreel") / "models"))


def default_model_path() -> Path:
    """The model analyze uses unless told otherwise."""
    return shipped_models_dir() / DEFAULT_MODEL


def resolve_model(model: str | Path | None) -> Path:
    """A model path from a path, the name of a shipped model (``emoreel-fer``), or None for the default."""
    if model is None or str(model) == "":
        return default_model_path()
    path = Path(model)
    if not path.exists() and path.parent == Path("."):
        shipped = shipped_models_dir() / (path.name if path.suffix == ".onnx" else path.name + ".onnx")
        if shipped.is_file():
            return shipped
    return path


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_card(model_path: str | Path, card: dict) -> Path:
    """Write ``card`` beside ``model_path``, stamping the ONNX file's sha256."""
    model_path = Path(model_path)
    card = {**card, "file": model_path.name, "sha256": sha256_file(model_path)}
    out = card_path(model_path)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def read_card(model_path: str | Path) -> dict:
    p = card_path(model_path)
    try:
        card = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"model card {p} not found (every model needs its card beside it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"model card {p} is not valid JSON") from None
    for key in ("classes", "input"):
        if key not in card:
            raise ModelError(f"model card {p} lacks '{key}'")
    inp = card["input"]
    if "size" not in inp or inp.get("colour", "grey") not in ("grey", "bgr", "rgb"):
        raise ModelError(f"model card {p}: input needs 'size' and colour grey/bgr/rgb")
    return card


@dataclass(frozen=True)
class Standardize:
    """Per-face contrast normalisation, applied to the crop at the model's size before ``scale``:
    grey values are stretched linearly so that ``region`` (fractions x0, y0, x1, y1 of the crop:
    the inner face) has this ``mean`` and ``std``, then clipped to 0..255. Dim, flat faces (a dark
    audience) then look like the training faces (median 145 and 67 in FER2013's training split)."""

    region: tuple[float, float, float, float] = (1 / 6, 1 / 6, 5 / 6, 5 / 6)
    mean: float = 145.0
    std: float = 67.0

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) grey values 0..255 -> float32 standardized copy."""
        x = np.asarray(batch, np.float32)
        h, w = x.shape[1:3]
        x0, y0, x1, y1 = self.region
        inner = x[:, int(round(y0 * h)) : int(round(y1 * h)), int(round(x0 * w)) : int(round(x1 * w))]
        axes = tuple(range(1, x.ndim))
        mu = inner.mean(axis=axes, keepdims=True)
        sd = np.maximum(inner.std(axis=axes, keepdims=True), 1.0)  # a flat crop stays flat
        return np.clip((x - mu) * (self.std / sd) + self.mean, 0, 255).astype(np.float32)

    def to_card(self) -> dict:
        return {"region": [round(v, 6) for v in self.region], "mean": self.mean, "std": self.std}

    @classmethod
    def from_card(cls, d: dict | None) -> "Standardize | None":
        return None if not d else cls(tuple(float(v) for v in d["region"]), float(d["mean"]), float(d["std"]))


@dataclass(frozen=True)
class InputSpec:
    """The model's input, from its card."""

    width: int
    height: int
    colour: str  # grey | bgr | rgb
    layout: str  # NCHW | NHWC
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eyes: tuple[tuple[float, float], tuple[float, float]]
    standardize: Standardize | None = None  # per-face contrast normalisation (card: input.standardize)
    landmarks: tuple[tuple[float, float], ...] | None = None  # 5-point face template (card: face.landmarks)
    crop: int = 0  # the network sees crop x crop patches of the width x height aligned face (card: input.crop)

    @property
    def channels(self) -> int:
        return 1 if self.colour == "grey" else 3

    def at(self, side: int) -> "InputSpec":
        """The same face template aligned at ``side`` x ``side`` px, whole (no crop)."""
        return replace(self, width=int(side), height=int(side), crop=0)

    @classmethod
    def from_card(cls, card: dict) -> "InputSpec":
        inp = card["input"]
        size = inp["size"]
        crop = 0
        if "crop" in inp:  # the aligned face is the crop's source size; the network's input is the crop
            crop = int(size) if isinstance(size, int) else int(size[0])
            size = inp["crop"]["from"]
        w, h = (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))
        eyes = card.get("face", {}).get("eyes", DEFAULT_EYES)
        lms = card.get("face", {}).get("landmarks")
        if lms is not None and (len(lms) != 5 or any(len(p) != 2 for p in lms)):
            raise ModelError("model card: face.landmarks must be 5 (x, y) points")
        return cls(
            width=w,
            height=h,
            colour=inp.get("colour", "grey"),
            layout=inp.get("layout", "NCHW"),
            scale=float(inp.get("scale", 1 / 255)),
            mean=tuple(float(m) for m in inp.get("mean", [0.0])),
            std=tuple(float(s) for s in inp.get("std", [1.0])),
            eyes=(tuple(eyes[0]), tuple(eyes[1])),
            standardize=Standardize.from_card(inp.get("standardize")),
            landmarks=tuple((float(x), float(y)) for x, y in lms) if lms is not None else None,
            crop=crop,
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: |confidence - accuracy| averaged over confidence bins, weighted by size."""
    conf, right = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    err = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            err += m.mean() * abs(float(conf[m].mean()) - float(right[m].mean()))
    return float(err)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The temperature T that makes ``softmax(log(probs) / T)`` best calibrated (least NLL) on labelled faces.

    ``probs`` are a model's probabilities at T = 1. Returns T with the NLL and
    expected calibration error before and after; accuracy does not change.
    """
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1))
    labels = np.asarray(labels)

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(z)), labels] - np.log(np.exp(z).sum(1))).mean())

    lo, hi = 0.3, 5.0  # golden-section search: NLL is unimodal in T
    g = (5 ** 0.5 - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    t = round((lo + hi) / 2, 4)
    return {"temperature": t, "nll_before": round(nll(1.0), 4), "nll_after": round(nll(t), 4),
            "ece_before": round(calibration_error(_softmax(logp), labels), 4),
            "ece_after": round(calibration_error(_softmax(logp / t), labels), 4)}  # fmt: skip


class EmotionModel:
    """An ONNX emotion classifier driven by its model card.

    ``threads`` sets onnxruntime's intra-op threads for this session only (0 = its default).
    :meth:`predict` runs at most ``max_batch`` faces at a time (every view of them in one call).
    """

    max_batch = 256

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, providers: list[str] | None = None):
        from ..runtime import CPU, session_options, used_device

        self.path = resolve_model(model_path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} not found")
        self.card = read_card(self.path)
        self.classes: tuple[str, ...] = tuple(self.card["classes"])
        self.spec = InputSpec.from_card(self.card)
        self.sha256 = sha256_file(self.path)
        import onnxruntime as ort

        providers = providers or [CPU]  # runtime.providers_for(--device)
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads), providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load ONNX model {self.path}: {str(e).splitlines()[0]}") from None
        self.device, self.device_warning = used_device(self.session, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.logits = self.card.get("output", {}).get("kind", "logits") == "logits"
        self.temperature = float(self.card.get("output", {}).get("temperature", 1.0))  # calibration (card)
        if not self.temperature > 0:
            raise ModelError(f"model card {card_path(self.path)}: output.temperature must be positive")

    @property
    def name(self) -> str:
        return self.card.get("name", self.path.stem)

    def preprocess(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """uint8 crops (BGR or grey, any size) -> the model's input tensor."""
        import cv2  # imported here: training (on a GPU machine) needs the card logic, not OpenCV

        s = self.spec
        batch = np.empty((len(crops), s.height, s.width, s.channels), np.float32)
        for i, c in enumerate(crops):
            if c.shape[:2] != (s.height, s.width):
                c = cv2.resize(c, (s.width, s.height), interpolation=cv2.INTER_AREA)
            if s.colour == "grey":
                c = c if c.ndim == 2 else cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)
                c = c[..., None]
            else:
                c = cv2.cvtColor(c, cv2.COLOR_GRAY2BGR) if c.ndim == 2 else c
                c = c[..., ::-1] if s.colour == "rgb" else c
            batch[i] = c
        if s.standardize is not None:
            batch = s.standardize.apply(batch)
        batch *= s.scale
        batch -= np.asarray(s.mean, np.float32)
        batch /= np.asarray(s.std, np.float32)
        return batch.transpose(0, 3, 1, 2).copy() if s.layout == "NCHW" else batch

    def view_set(self, views: str | Sequence[View]) -> tuple[View, ...]:
        """The views a name stands for (:data:`VIEWS`), or the given views themselves."""
        if isinstance(views, str):
            if views not in VIEWS:
                raise ValueError(f"unknown view set {views!r}: one of {', '.join(VIEWS)}")
            return VIEWS[views]
        views = (views,) if isinstance(views, View) else tuple(views)
        if not views:
            raise ValueError("no views given")
        return views

    def views_name(self, tta: bool | str | Sequence[View]) -> str:
        """What :meth:`predict` averages for ``tta``, by name: single, mirror, jitter, ten-crop (crop models), or
        "N given" for a list of views."""
        if isinstance(tta, (list, tuple)):
            return f"{len(self.view_set(tta))} given"
        if isinstance(tta, str):
            self.view_set(tta)  # a known name
            name = tta
        else:
            name = "mirror" if tta else "single"
        return "ten-crop" if self.spec.crop and name != "single" else name

    def _patches(self, x: np.ndarray, tta: bool | str | Sequence[View]) -> list[np.ndarray]:
        """The network's inputs for a preprocessed batch, one per view: the whole face or its centre crop;
        with ``tta`` its mirror too (for crop models the four corner crops and all mirrored: ten crops);
        or the named or given views (:data:`VIEWS`; warped views are moved about the face's centre)."""
        s, nchw = self.spec, self.spec.layout == "NCHW"
        if isinstance(tta, (str, list, tuple)):  # a name, a View (a tuple too) or a list of them
            return [self._view(x, v) for v in self.view_set(tta)]
        if s.crop:
            c = s.crop
            oy, ox = (s.height - c) // 2, (s.width - c) // 2
            offsets = [(oy, ox)] + ([(0, 0), (0, s.width - c), (s.height - c, 0), (s.height - c, s.width - c)] if tta else [])
            views = [x[:, :, y : y + c, z : z + c] if nchw else x[:, y : y + c, z : z + c] for y, z in offsets]
        else:
            views = [x]
        if tta:
            views += [np.flip(v, axis=3 if nchw else 2) for v in views]
        return views

    def _view(self, x: np.ndarray, v: View) -> np.ndarray:
        """One view of a preprocessed batch: scaled about the centre, shifted, mirrored, then centre-cropped."""
        import cv2

        s, nchw = self.spec, self.spec.layout == "NCHW"
        if v.scale != 1.0 or v.dx or v.dy:
            m = cv2.getRotationMatrix2D(((s.width - 1) / 2, (s.height - 1) / 2), 0.0, v.scale)
            m[:, 2] += (v.dx, v.dy)
            planes = x.reshape(-1, s.height, s.width) if nchw else np.moveaxis(x, 3, 1).reshape(-1, s.height, s.width)
            warped = np.stack([cv2.warpAffine(p, m, (s.width, s.height), flags=cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REPLICATE) for p in planes])  # fmt: skip
            x = warped.reshape(x.shape) if nchw else np.moveaxis(warped.reshape(len(x), -1, s.height, s.width), 1, 3)
        if s.crop:
            c, oy, ox = s.crop, (s.height - s.crop) // 2, (s.width - s.crop) // 2
            x = x[:, :, oy : oy + c, ox : ox + c] if nchw else x[:, oy : oy + c, ox : ox + c]
        return np.flip(x, axis=3 if nchw else 2) if v.mirror else x

    def predict(self, crops, tta: bool | str | Sequence[View] = False) -> np.ndarray:
        """Class probabilities (N, classes) for a batch of face crops, averaged over views: ``tta`` True
        averages with the mirror (for models trained on crops: ten crops, the centre and corners and
        their mirrors); a list of :class:`View` averages over those views; a view-set name (:data:`VIEWS`)
        over its views, except that the name ``"jitter"`` adds the zoomed views only where the mirror's
        top-2 margin is under :data:`JITTER_MARGIN` (a pure function of each face: the same face always gets
        the same answer; ``VIEWS["jitter"]`` itself averages all six for every face), and that models
        trained on crops (card ``input.crop``) get their ten crops for ``"mirror"`` and ``"jitter"``."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if len(crops) > self.max_batch:  # bounded memory: a network's activations grow with the batch
            return np.concatenate([self.predict(crops[i : i + self.max_batch], tta)
                                   for i in range(0, len(crops), self.max_batch)])  # fmt: skip
        x = self.preprocess(crops)
        if isinstance(tta, str):
            self.view_set(tta)  # a known name
            if self.spec.crop:  # models trained on crops: their ten crops (zoomed views were measured for others)
                return self._average(x, tta != "single")
            if tta == "jitter":  # the mirror for every face, the zoomed views where it is unsure
                mirror = VIEWS["mirror"]
                p = self._average(x, mirror)
                top2 = np.sort(p, axis=1)[:, -2:]
                unsure = np.flatnonzero(top2[:, 1] - top2[:, 0] < JITTER_MARGIN)
                if len(unsure):  # the mean over all six views: the mirror's two and the four zoomed
                    zoomed = [v for v in VIEWS["jitter"] if v not in mirror]
                    pz = self._average(x[unsure], zoomed)
                    p[unsure] = (p[unsure] * len(mirror) + pz * len(zoomed)) / (len(mirror) + len(zoomed))
                return p
        return self._average(x, tta)

    def _average(self, x: np.ndarray, tta: bool | str | Sequence[View]) -> np.ndarray:
        """Mean probabilities over the views of a preprocessed batch (one network call for all of them)."""
        views = self._patches(x, tta)
        p = self._run(np.ascontiguousarray(np.concatenate(views)))
        return p.reshape(len(views), len(x), -1).mean(0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        if self.logits:
            return _softmax(y / self.temperature)
        return _softmax(np.log(np.clip(y, 1e-12, 1)) / self.temperature) if self.temperature != 1.0 else y
