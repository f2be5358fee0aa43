"""A small multi-face tracker: constant-velocity prediction + optimal assignment.

Each track predicts its box at the new frame index from its velocity (pixels
per frame, so strides and missed frames are handled), then detections are
assigned to tracks by minimum total cost, where

    cost = (1 - IoU(predicted box, detection)) + centre_weight * d

and ``d`` is the distance between the predicted and detected eye midpoints (box
centres where eyes are unknown) divided by the track's face width. A pair is
allowed only if IoU >= ``iou_threshold`` or ``d`` <= ``max_distance``. A track
not matched for more than ``max_missed`` frames ends; an unmatched detection
starts a new track. Ids start at 1 per :class:`Tracker` and are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import EYE_L, EYE_R, Faces

_BIG = 1e6


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) against every box in ``b`` (M, 4), xyxy."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def linear_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row/column pairs minimising the total cost (Hungarian algorithm, O(n^3)); rectangular allowed."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    size = max(n, m)
    c = np.full((size, size), _BIG)
    c[:n, :m] = cost
    u, v = np.zeros(size + 1), np.zeros(size + 1)
    p, way = np.zeros(size + 1, int), np.zeros(size + 1, int)
    for i in range(1, size + 1):
        p[0], j0 = i, 0
        minv = np.full(size + 1, np.inf)
        used = np.zeros(size + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = c[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return [(int(p[j] - 1), j - 1) for j in range(1, size + 1) if 0 < p[j] <= n and j <= m]


def _anchor(box: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eye midpoint when both eyes are known, else the box centre."""
    eyes = lm[[EYE_L, EYE_R]]
    if not np.isnan(eyes).any():
        return eyes.mean(0)
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


@dataclass
class Track:
    """One tracked face: last box, velocity (per frame) and when it was last seen."""

    id: int
    box: np.ndarray
    anchor: np.ndarray
    velocity: np.ndarray
    last_frame: int
    landmarks: np.ndarray
    score: float
    hits: int = 1

    def predict(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        dt = frame_index - self.last_frame
        return self.box + self.velocity * dt, self.anchor + self.velocity[:2] * dt


class Tracker:
    """Assigns a ``track_id`` to every face, frame after frame.

    Parameters:
        iou_threshold: minimum overlap between a track's predicted box and a detection.
        max_missed: frames (in source frame indices) a track survives without detection.
        max_distance: alternatively, the largest anchor distance in face widths that still matches
            (lets fast or small faces that no longer overlap their prediction continue).
        centre_weight: weight of the anchor distance in the assignment cost.
        velocity_smoothing: weight of the newest velocity measurement (0..1).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 10,
        max_distance: float = 0.6,
        centre_weight: float = 0.5,
        velocity_smoothing: float = 0.5,
    ):
        if not 0 <= iou_threshold <= 1:
            raise ValueError("iou_threshold must be in [0, 1]")
        if max_missed < 0:
            raise ValueError("max_missed must be >= 0")
        self.iou_threshold, self.max_missed = iou_threshold, max_missed
        self.max_distance, self.centre_weight = max_distance, centre_weight
        self.velocity_smoothing = velocity_smoothing
        self.tracks: list[Track] = []
        self._next_id = 1
        self._ended: list[int] = []

    def update(self, faces: Faces, frame_index: int) -> np.ndarray:
        """Set and return ``faces.track_ids`` for the faces of frame ``frame_index``."""
        self._ended += [t.id for t in self.tracks if frame_index - t.last_frame > self.max_missed]
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.max_missed]
        n = len(faces)
        ids = np.full(n, -1, np.int64)
        anchors = [_anchor(faces.boxes[i], faces.landmarks[i]) for i in range(n)]
        pairs: list[tuple[int, int]] = []
        if self.tracks and n:
            preds = [t.predict(frame_index) for t in self.tracks]
            pboxes = np.stack([b for b, _ in preds])
            iou = iou_matrix(pboxes, faces.boxes)
            widths = np.maximum(pboxes[:, 2] - pboxes[:, 0], 1.0)
            dist = np.array([[np.linalg.norm(a - pa) for a in anchors] for _, pa in preds]) / widths[:, None]
            allowed = (iou >= self.iou_threshold) | (dist <= self.max_distance)
            cost = np.where(allowed, 1 - iou + self.centre_weight * dist, _BIG)
            pairs = [(r, c) for r, c in linear_assignment(cost) if allowed[r, c]]
        for r, c in pairs:
            t = self.tracks[r]
            dt = max(frame_index - t.last_frame, 1)
            measured = (faces.boxes[c] - t.box) / dt
            a = self.velocity_smoothing if t.hits > 1 else 1.0
            t.velocity = a * measured + (1 - a) * t.velocity
            t.box, t.anchor, t.last_frame = faces.boxes[c].astype(np.float64), anchors[c], frame_index
            t.landmarks, t.score = faces.landmarks[c].copy(), float(faces.scores[c])
            t.hits += 1
            ids[c] = t.id
        for c in np.flatnonzero(ids < 0):
            t = Track(self._next_id, faces.boxes[c].astype(np.float64), anchors[c], np.zeros(4), frame_index,
                      faces.landmarks[c].copy(), float(faces.scores[c]))  # fmt: skip
            self._next_id += 1
            self.tracks.append(t)
            ids[c] = t.id
        faces.track_ids = ids
        return ids

    def predict_faces(self, frame_index: int) -> Faces:
        """The faces of the latest detection moved to ``frame_index`` by each track's velocity.

        Used between detections (``detect_every > 1``): boxes move and scale, landmarks follow the box.
        """
        if not self.tracks:
            return Faces.empty()
        latest = max(t.last_frame for t in self.tracks)
        recent = [t for t in self.tracks if t.last_frame == latest]
        boxes, lms = [], []
        for t in recent:
            b, _ = t.predict(frame_index)
            sx = (b[2] - b[0]) / max(t.box[2] - t.box[0], 1e-6)
            sy = (b[3] - b[1]) / max(t.box[3] - t.box[1], 1e-6)
            lms.append((t.landmarks - t.box[:2]) * (sx, sy) + b[:2])
            boxes.append(b)
        faces = Faces(np.array(boxes), np.array([t.score for t in recent]), np.array(lms))
        faces.track_ids = np.array([t.id for t in recent], np.int64)
        return faces

    def reset(self) -> None:
        """End every track (at a shot cut); ids keep counting up."""
        self._ended += [t.id for t in self.tracks]
        self.tracks = []

    def ended(self) -> list[int]:
        """Ids of tracks that ended since the last call."""
        out, self._ended = self._ended, []
        return out
