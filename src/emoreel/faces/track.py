"""A small multi-face tracker: constant-velocity prediction + optimal assignment.

Each track predicts its box at the new frame index from its velocity (pixels
per source frame, so ``--every N`` strides and missed frames are handled), and
moves its last landmarks with that box. Detections are then assigned to tracks
by minimum total cost (Hungarian algorithm), where a pair costs

    cost = (1 - IoU(predicted box, detection)) + centre_weight * d

and ``d`` is the mean distance between the predicted and detected landmarks
known in both (box centres when none is), divided by the predicted face width.

Gate: a pair may match only if IoU >= ``iou_threshold`` or ``d`` <= ``max_distance``,
and the face width changed by at most ``max_scale_change`` times. Leaving a
track and a detection both unmatched costs ``1 + centre_weight * max_distance``
(the worst gated pair), so the assignment never forces a poor pair just to
match more faces. An unmatched detection starts a new track; a track unseen
for more than ``max_missed`` source frames ends. Ids start at 1 per
:class:`Tracker` and are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Faces


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) against every box in ``b`` (M, 4), xyxy."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def linear_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row/column pairs minimising the total cost (Hungarian algorithm, O(n^3)).

    Rectangular matrices are allowed: every row (or every column, whichever are
    fewer) gets exactly one partner. Costs must be finite.
    """
    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    if not np.isfinite(cost).all():
        raise ValueError("linear_assignment needs finite costs")
    size = max(n, m)
    c = np.zeros((size, size))  # padding rows/columns: a constant number of them is always used
    c[:n, :m] = cost
    u, v = np.zeros(size + 1), np.zeros(size + 1)  # row and column potentials
    p, way = np.zeros(size + 1, int), np.zeros(size + 1, int)  # p[j]: row of column j (1-based, 0 = free)
    for i in range(1, size + 1):
        p[0], j0 = i, 0
        minv = np.full(size + 1, np.inf)
        used = np.zeros(size + 1, bool)
        while True:  # grow an alternating tree from row i until it reaches a free column
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
        while j0:  # flip the augmenting path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return [(int(p[j] - 1), j - 1) for j in range(1, size + 1) if 0 < p[j] <= n and j <= m]


@dataclass
class Track:
    """One tracked face: last box and landmarks, box velocity (per frame) and when it was last seen."""

    id: int
    box: np.ndarray  # (4,) float64 xyxy
    landmarks: np.ndarray  # (5, 2), NaN where unknown
    velocity: np.ndarray  # (4,) xyxy change per source frame
    last_frame: int
    score: float
    hits: int = 1

    def predict(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Box and landmarks expected at ``frame_index`` (the box keeps at least 1 px per side)."""
        b = self.box + self.velocity * (frame_index - self.last_frame)
        centre, half = (b[:2] + b[2:]) / 2, np.maximum((b[2:] - b[:2]) / 2, 0.5)
        box = np.concatenate([centre - half, centre + half])
        scale = (box[2:] - box[:2]) / np.maximum(self.box[2:] - self.box[:2], 1e-6)
        return box, (self.landmarks - self.box[:2]) * scale + box[:2]


def _landmark_distance(pred: np.ndarray, det: np.ndarray, pcent: np.ndarray, dcent: np.ndarray) -> np.ndarray:
    """(T, D) mean distance over landmarks known in both, or between box centres where none is."""
    d = np.linalg.norm(pred[:, None] - det[None], axis=-1)  # (T, D, 5), NaN where either is unknown
    known = ~np.isnan(d)
    count = known.sum(-1)
    mean = np.where(known, d, 0).sum(-1) / np.maximum(count, 1)
    centres = np.linalg.norm(pcent[:, None] - dcent[None], axis=-1)
    return np.where(count > 0, mean, centres)


class Tracker:
    """Assigns a ``track_id`` to every face, frame after frame.

    Parameters:
        iou_threshold: overlap with a track's predicted box that is enough to continue it.
        max_missed: source frames a track survives without a detection (frame index
            differences, so with ``--every N`` one missed processed frame counts N).
        max_distance: also continue a track when the landmark (or centre) distance is at
            most this many face widths (fast or small faces that no longer overlap their
            prediction).
        centre_weight: weight of that distance in the assignment cost.
        max_scale_change: largest ratio between detected and predicted face width of a match.
        velocity_smoothing: weight of the newest velocity measurement (0..1).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 10,
        max_distance: float = 0.6,
        centre_weight: float = 0.5,
        max_scale_change: float = 2.0,
        velocity_smoothing: float = 0.5,
    ):
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1] (got {iou_threshold})")
        if int(max_missed) != max_missed or max_missed < 0:
            raise ValueError(f"max_missed must be an integer >= 0 (got {max_missed})")
        if not max_distance >= 0:
            raise ValueError(f"max_distance must be >= 0 (got {max_distance})")
        if not centre_weight >= 0:
            raise ValueError(f"centre_weight must be >= 0 (got {centre_weight})")
        if not max_scale_change >= 1:
            raise ValueError(f"max_scale_change must be >= 1 (got {max_scale_change})")
        if not 0 <= velocity_smoothing <= 1:
            raise ValueError(f"velocity_smoothing must be in [0, 1] (got {velocity_smoothing})")
        self.iou_threshold, self.max_missed = float(iou_threshold), int(max_missed)
        self.max_distance, self.centre_weight = float(max_distance), float(centre_weight)
        self.max_scale_change, self.velocity_smoothing = float(max_scale_change), float(velocity_smoothing)
        self.tracks: list[Track] = []
        self._next_id = 1
        self._ended: list[int] = []
        self._last_frame: int | None = None

    @property
    def unmatched_cost(self) -> float:
        """Cost of leaving a track and a detection unmatched (that of the worst pair the gate allows)."""
        return 1.0 + self.centre_weight * self.max_distance

    def update(self, faces: Faces, frame_index: int) -> np.ndarray:
        """Set and return ``faces.track_ids`` for all faces of frame ``frame_index``.

        Frame indices must increase from call to call. Tracks that end here (unseen
        for more than ``max_missed`` frames) are listed by the next :meth:`ended`.
        """
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase (got {frame_index} after {self._last_frame})")
        self._last_frame = frame_index
        n = len(faces)
        boxes = faces.boxes.astype(np.float64)
        ids = np.full(n, -1, np.int64)
        for r, c in self._match(boxes, faces.landmarks.astype(np.float64), frame_index):
            t = self.tracks[r]
            measured = (boxes[c] - t.box) / (frame_index - t.last_frame)
            a = self.velocity_smoothing if t.hits > 1 else 1.0  # the first measurement is taken as is
            t.velocity = a * measured + (1 - a) * t.velocity
            t.box, t.landmarks, t.last_frame = boxes[c], faces.landmarks[c].astype(np.float64), frame_index
            t.score, t.hits = float(faces.scores[c]), t.hits + 1
            ids[c] = t.id
        for c in np.flatnonzero(ids < 0):
            t = Track(self._next_id, boxes[c], faces.landmarks[c].astype(np.float64), np.zeros(4), frame_index,
                      float(faces.scores[c]))  # fmt: skip
            self._next_id += 1
            self.tracks.append(t)
            ids[c] = t.id
        expired = [t for t in self.tracks if frame_index - t.last_frame > self.max_missed]
        self._ended += [t.id for t in expired]
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.max_missed]
        faces.track_ids = ids
        return ids

    def _match(self, boxes: np.ndarray, landmarks: np.ndarray, frame_index: int) -> list[tuple[int, int]]:
        """(track, detection) pairs of the cheapest gated assignment."""
        if not self.tracks or not len(boxes):
            return []
        preds = [t.predict(frame_index) for t in self.tracks]
        pboxes, plms = np.stack([b for b, _ in preds]), np.stack([lm for _, lm in preds])
        iou = iou_matrix(pboxes, boxes)
        pw = pboxes[:, 2] - pboxes[:, 0]
        dist = _landmark_distance(plms, landmarks, (pboxes[:, :2] + pboxes[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)
        dist = dist / pw[:, None]
        scale = np.maximum(boxes[None, :, 2] - boxes[None, :, 0], 1e-6) / pw[:, None]
        cost = 1 - iou + self.centre_weight * dist
        allowed = (iou >= self.iou_threshold) | (dist <= self.max_distance)
        allowed &= (scale <= self.max_scale_change) & (scale >= 1 / self.max_scale_change)
        allowed &= cost < self.unmatched_cost
        pairs = linear_assignment(np.where(allowed, cost, self.unmatched_cost))
        return [(r, c) for r, c in pairs if allowed[r, c]]

    def predict_faces(self, frame_index: int) -> Faces:
        """The faces of the latest detection moved to ``frame_index`` by each track's velocity.

        Used between detections (``detect_every > 1``): boxes move and scale, landmarks follow the box.
        """
        recent = [t for t in self.tracks if t.last_frame == self._last_frame]
        if not recent:
            return Faces.empty()
        preds = [t.predict(frame_index) for t in recent]
        faces = Faces(np.array([b for b, _ in preds]), np.array([t.score for t in recent]), np.array([lm for _, lm in preds]))
        faces.track_ids = np.array([t.id for t in recent], np.int64)
        return faces

    def reset(self) -> None:
        """End every track (at a shot cut); ids keep counting up."""
        self._ended += [t.id for t in self.tracks]
        self.tracks = []

    def ended(self) -> list[int]:
        """Ids of tracks that ended since the last call (so per-track state can be finalised)."""
        out, self._ended = self._ended, []
        return out
