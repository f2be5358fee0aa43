"""The frontal gate and face alignment.

:func:`frontal_gate` keeps a face only when both eyes were found, it is large
enough and it looks at the camera (eye line nearly level, nose between the eyes).
:func:`align_faces` rotates and scales each kept face so its eyes land where the
emotion model's training faces had them (``face.eyes`` in the model card).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .emotion import InputSpec
from .types import EYE_L, EYE_R, NOSE, Faces

# reject reasons written to results.csv
TOO_SMALL = "too_small"
NO_EYES = "eyes_not_found"
EYES_OUTSIDE = "eyes_outside_box"
TILTED = "tilted"
NOT_FRONTAL = "not_frontal"
BLURRY = "blurry"


def frontal_gate(
    faces: Faces,
    min_face: int = 40,
    max_yaw: float = 0.35,
    max_roll: float = 30.0,
    min_eye_ratio: float = 0.25,
) -> Faces:
    """Set ``faces.accepted`` and ``faces.reasons`` in place (and return ``faces``).

    A face is rejected when its box is smaller than ``min_face`` pixels, an eye is
    missing or outside the box, the eye line is tilted more than ``max_roll``
    degrees, the eyes are closer than ``min_eye_ratio`` of the box width (a
    profile), or the nose (when known) is more than ``max_yaw`` eye-distances
    to the side of the eye midpoint.
    """
    n = len(faces)
    accepted = np.ones(n, bool)
    reasons = [""] * n
    for i in range(n):
        x1, y1, x2, y2 = faces.boxes[i]
        w = x2 - x1
        el, er, nose = faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R], faces.landmarks[i, NOSE]
        reason = ""
        if min(w, y2 - y1) < min_face:
            reason = TOO_SMALL
        elif np.isnan(el).any() or np.isnan(er).any():
            reason = NO_EYES
        elif not all(x1 <= p[0] <= x2 and y1 <= p[1] <= y2 for p in (el, er)):
            reason = EYES_OUTSIDE
        else:
            d = er - el
            dist = float(math.hypot(d[0], d[1]))
            roll = abs(math.degrees(math.atan2(d[1], d[0])))
            if roll > max_roll:
                reason = TILTED
            elif dist < min_eye_ratio * w:
                reason = NOT_FRONTAL
            elif not np.isnan(nose).any():
                # nose offset along the eye line, in eye distances
                mid = (el + er) / 2
                along = float(np.dot(nose - mid, d) / max(dist, 1e-6) ** 2)
                if abs(along) > max_yaw:
                    reason = NOT_FRONTAL
        if reason:
            accepted[i] = False
            reasons[i] = reason
    faces.accepted, faces.reasons = accepted, reasons
    return faces


def eye_transform(eye_l: np.ndarray, eye_r: np.ndarray, spec: InputSpec, margin: float = 0.0) -> np.ndarray:
    """2x3 similarity transform taking the two eyes to the model's eye template.

    ``margin`` > 0 shrinks the face inside the crop (more context around it).
    """
    (tlx, tly), (trx, try_) = spec.eyes
    s = 1.0 / (1.0 + margin)
    cx, cy = 0.5, (tly + try_) / 2
    dst_l = np.array([(cx + (tlx - cx) * s) * spec.width, (cy + (tly - cy) * s) * spec.height])
    dst_r = np.array([(cx + (trx - cx) * s) * spec.width, (cy + (try_ - cy) * s) * spec.height])
    src_d, dst_d = eye_r - eye_l, dst_r - dst_l
    scale = math.hypot(*dst_d) / max(math.hypot(*src_d), 1e-6)
    angle = math.atan2(dst_d[1], dst_d[0]) - math.atan2(src_d[1], src_d[0])
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = dst_l - m[:, :2] @ eye_l
    return m


def align_face(image: np.ndarray, eye_l, eye_r, spec: InputSpec, margin: float = 0.0) -> np.ndarray:
    """One face, rotated so the eyes are level and scaled to the model's input size (BGR).

    Large faces are warped at an integer multiple of the output size and then
    area-averaged down, so a 300 px face does not alias into a 48 px crop.
    """
    m = eye_transform(np.asarray(eye_l, np.float64), np.asarray(eye_r, np.float64), spec, margin)
    scale = math.hypot(m[0, 0], m[1, 0])
    k = int(min(4, max(1, 1.0 / max(scale, 1e-6))))
    size = (spec.width * k, spec.height * k)
    crop = cv2.warpAffine(image, m * k, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if k > 1:
        crop = cv2.resize(crop, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    return crop


def align_faces(image: np.ndarray, faces: Faces, spec: InputSpec, margin: float = 0.0, only_accepted: bool = True):
    """Aligned crops of the (accepted) faces, and the indices they belong to."""
    idx = np.flatnonzero(faces.accepted) if only_accepted else np.arange(len(faces))
    crops = [align_face(image, faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R], spec, margin) for i in idx]
    return crops, idx


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a crop: higher is sharper."""
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())
