"""The face gate and face alignment.

:func:`frontal_gate` keeps a face only when both eyes were found and show: it is
large enough, its eye line is not tilted too far, and it is not turned so far that
the far eye hides behind the nose (:func:`estimate_yaw`, 70 degrees by default;
a stricter ``max_yaw`` keeps only faces that look at the camera).
:func:`align_faces` maps each kept face onto the emotion model's face template with
a similarity transform from all five landmarks and ``face.landmarks`` in the model
card: upright by the eye line, sized by the eye-to-mouth distance (which a head turn
does not shorten), so a turned face's crop covers the face, not an eye; with fewer
landmarks (or a card without the template) the eyes alone go to ``face.eyes``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..model.emotion import InputSpec
from ..types import EYE_L, EYE_R, MOUTH_L, MOUTH_R, NOSE, Faces

# reject reasons written to results.csv
TOO_SMALL = "too_small"
NO_EYES = "eyes_not_found"
EYES_OUTSIDE = "eyes_outside_box"
TILTED = "tilted"
NOT_FRONTAL = "not_frontal"
IMPLAUSIBLE = "landmarks_implausible"
BLURRY = "blurry"


# How far the nose tip stands in front of the eyes, in eye distances (a mean 3D face: the nose tip
# 135 units before the eye centres, which are 330 apart): a head turned by ``yaw`` shows its nose
# ``tan(yaw) * NOSE_DEPTH`` eye distances to the side of the eye midpoint.
NOSE_DEPTH = 0.41


def estimate_yaw(landmarks: np.ndarray) -> float:
    """Head turn in degrees (0 = facing the camera; sign: towards the image right) from 5 landmarks.

    From the nose tip's offset along the eye line; NaN when an eye or the nose is missing.
    """
    el, er, nose = landmarks[EYE_L], landmarks[EYE_R], landmarks[NOSE]
    if np.isnan(el).any() or np.isnan(er).any() or np.isnan(nose).any():
        return math.nan
    d = (er - el).astype(np.float64)
    dist2 = float(d @ d)
    if dist2 < 1e-9:
        return math.nan
    along = float(np.dot(nose - (el + er) / 2, d) / dist2)
    return math.degrees(math.atan2(along, NOSE_DEPTH))


def implausible(landmarks: np.ndarray) -> bool:
    """Five landmarks that cannot be an upright face's, in the frame of its eye line: the nose tip not below
    the eyes, the mouth not below the nose, or the left mouth corner right of the right one. A turned head
    keeps this order (its nose may pass the far eye sideways, never upwards), so only broken landmark sets
    fail: a detector's guess on a hand or on a face upside down. Faces without nose or mouth pass."""
    el, er, nose = landmarks[EYE_L], landmarks[EYE_R], landmarks[NOSE]
    ml, mr = landmarks[MOUTH_L], landmarks[MOUTH_R]
    if np.isnan(landmarks).any():
        return False
    u = (er - el).astype(np.float64)
    n = math.hypot(u[0], u[1])
    if n < 1e-9:
        return True
    u /= n
    down = np.array([-u[1], u[0]])  # image y points down
    mid = (el + er) / 2
    nose_h = float((nose - mid) @ down)
    mouth_h = float(((ml + mr) / 2 - mid) @ down)
    return not (0 < nose_h < mouth_h) or float((mr - ml) @ u) <= 0


def frontal_gate(
    faces: Faces,
    min_face: int = 40,
    max_yaw: float = 70.0,
    max_roll: float = 30.0,
    min_eye_ratio: float = 0.1,
) -> Faces:
    """Set ``faces.accepted`` and ``faces.reasons`` in place (and return ``faces``).

    A face is rejected when its box is smaller than ``min_face`` pixels, an eye is
    missing or outside the box, the eye line is tilted more than ``max_roll``
    degrees, the eyes are closer than ``min_eye_ratio`` of the box width (a
    profile), or the head is turned more than ``max_yaw`` degrees
    (:func:`estimate_yaw`; faces without a nose landmark skip this test), or its
    landmarks cannot be a face's (:func:`implausible`: the nose not below the eye
    line, the mouth not below the nose, the mouth corners swapped).
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
            elif not np.isnan(nose).any() and abs(estimate_yaw(faces.landmarks[i])) > max_yaw:
                reason = NOT_FRONTAL
            elif implausible(faces.landmarks[i]):
                reason = IMPLAUSIBLE
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


def landmark_transform(landmarks: np.ndarray, spec: InputSpec, margin: float = 0.0) -> np.ndarray:
    """2x3 similarity transform (rotation, uniform scale, shift) taking a face to the model's template.

    With all five landmarks and a card template (``spec.landmarks``): the rotation
    levels the eye line; the scale takes the eye-to-mouth distance (eye midpoint to
    mouth-corner midpoint, which a head turn does not shorten) to the template's; the
    midpoint between eyes and mouth goes to the template's. A frontal face lands on
    the template like the training faces; a turned face keeps its true size and is
    narrower, as turned faces in the training data are, instead of being blown up by
    its shortened eye distance. Otherwise the eyes alone are fitted
    (:func:`eye_transform`). ``margin`` > 0 shrinks the face inside the crop.
    """
    lm = np.asarray(landmarks, np.float64)
    if spec.landmarks is None or np.isnan(lm).any():
        return eye_transform(lm[EYE_L], lm[EYE_R], spec, margin)
    t = np.asarray(spec.landmarks, np.float64) * [spec.width, spec.height]
    eyes, mouth = (lm[EYE_L] + lm[EYE_R]) / 2, (lm[MOUTH_L] + lm[MOUTH_R]) / 2
    t_eyes, t_mouth = (t[EYE_L] + t[EYE_R]) / 2, (t[MOUTH_L] + t[MOUTH_R]) / 2
    d = lm[EYE_R] - lm[EYE_L]
    angle = -math.atan2(d[1], d[0])  # level the eye line
    scale = float(np.linalg.norm(t_mouth - t_eyes)) / max(float(np.linalg.norm(mouth - eyes)), 1e-6) / (1.0 + margin)
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = (t_eyes + t_mouth) / 2 - m[:, :2] @ ((eyes + mouth) / 2)
    return m


def align_face(image: np.ndarray, eye_l, eye_r, spec: InputSpec, margin: float = 0.0,
               landmarks: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """One face, rotated upright and scaled to the model's input size (BGR).

    With ``landmarks`` (5 points) the face is fitted to the card's 5-point template
    (:func:`landmark_transform`); otherwise its eyes go to the eye template. Large
    faces are warped at an integer multiple of the output size and then
    area-averaged down, so a 300 px face does not alias into a 48 px crop.
    """
    if landmarks is not None:
        m = landmark_transform(landmarks, spec, margin)
    else:
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
    crops = [align_face(image, faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R], spec, margin, faces.landmarks[i])
             for i in idx]  # fmt: skip
    return crops, idx


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a crop: higher is sharper."""
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


SHARPNESS_SIDE = 48
"""Side (px) of the crop the blur gate measures. ``--min-sharpness`` was set on 48-px crops, and a face's
Laplacian variance falls as its crop grows (a 46-px face: about half at 64 px), so a model with another
input size is gated on the same face aligned at this side: the same faces pass whatever the model."""


def gate_sharpness(image: np.ndarray, faces: Faces, idx: np.ndarray, spec: InputSpec, crops: list[np.ndarray],
                   margin: float = 0.0) -> np.ndarray:  # fmt: skip
    """:func:`sharpness` of faces ``idx`` (``crops``: theirs at ``spec``) as the blur gate sees them, at
    :data:`SHARPNESS_SIDE` px: the crops themselves for a 48-px model, else the faces aligned again at 48."""
    if (spec.width, spec.height) != (SHARPNESS_SIDE, SHARPNESS_SIDE):
        gate = spec.at(SHARPNESS_SIDE)
        crops = [align_face(image, faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R], gate, margin, faces.landmarks[i])
                 for i in idx]  # fmt: skip
    return np.array([sharpness(c) for c in crops], np.float64)
