"""The data types every pipeline stage passes along.

Coordinates are in pixels of the full-resolution frame, ``x`` to the right and
``y`` down. Images are NumPy ``uint8`` arrays in OpenCV's **BGR** order.

Landmark order (5 points, image-based, not the subject's left/right):
0 eye on the image left, 1 eye on the image right, 2 nose tip,
3 mouth corner on the image left, 4 mouth corner on the image right.
A backend that does not give a point leaves it as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The 7 FER2013 classes in FER2013's label order."""

EYE_L, EYE_R, NOSE, MOUTH_L, MOUTH_R = range(5)


@dataclass(frozen=True)
class VideoInfo:
    """What is known about an input before reading it."""

    path: str
    kind: str  # "video", "camera" or "images"
    width: int
    height: int
    fps: Fraction  # exact, e.g. 30000/1001; 0 for images without a rate
    frame_count: int  # frames in the source (0 when unknown, e.g. a camera)

    @property
    def duration_s(self) -> float:
        return float(self.frame_count / self.fps) if self.fps and self.frame_count else 0.0


@dataclass
class Frame:
    """One decoded frame: its index in the source, its time and its pixels (BGR)."""

    index: int
    time_s: float
    image: np.ndarray
    name: str = ""  # the source: an image's name relative to its folder, or the video file's name


def _nan(shape) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


@dataclass
class Faces:
    """The faces of one frame as parallel arrays (one entry per face).

    Detectors fill ``boxes``, ``scores`` and ``landmarks``; later stages fill the
    rest. Index with an int array or a boolean mask to select faces.
    """

    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32 detector confidence in [0, 1]
    landmarks: np.ndarray  # (N, 5, 2) float32, NaN where unknown (order: module doc)
    accepted: np.ndarray = None  # (N,) bool: passed the frontal gate
    reasons: list[str] = None  # (N,) reject reason, "" when accepted
    track_ids: np.ndarray = None  # (N,) int64, -1 = not tracked
    probs: np.ndarray = None  # (N, 7) float32 emotion probabilities, NaN = not classified
    sharpness: np.ndarray = None  # (N,) float32, variance of Laplacian of the aligned crop

    def __post_init__(self) -> None:
        n = len(self.boxes)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(n, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(n)
        self.landmarks = np.asarray(self.landmarks, np.float32).reshape(n, 5, 2)
        if self.accepted is None:
            self.accepted = np.ones(n, bool)
        if self.reasons is None:
            self.reasons = [""] * n
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, np.int64)
        if self.probs is None:
            self.probs = _nan((n, len(EMOTIONS)))
        if self.sharpness is None:
            self.sharpness = _nan((n,))

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))

    @classmethod
    def concat(cls, parts: "list[Faces]") -> "Faces":
        """The faces of ``parts`` one after the other (an empty list gives no faces)."""
        if not parts:
            return cls.empty()
        cat = np.concatenate
        return cls(cat([f.boxes for f in parts]), cat([f.scores for f in parts]), cat([f.landmarks for f in parts]),
                   cat([f.accepted for f in parts]), [r for f in parts for r in f.reasons],
                   cat([f.track_ids for f in parts]), cat([f.probs for f in parts]),
                   cat([f.sharpness for f in parts]))  # fmt: skip

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx) -> "Faces":
        idx = np.arange(len(self))[idx] if not isinstance(idx, np.ndarray) or idx.dtype != bool else np.flatnonzero(idx)
        idx = np.atleast_1d(idx)
        return Faces(
            self.boxes[idx],
            self.scores[idx],
            self.landmarks[idx],
            self.accepted[idx],
            [self.reasons[i] for i in idx],
            self.track_ids[idx],
            self.probs[idx],
            self.sharpness[idx],
        )

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    def scaled(self, factor: float) -> "Faces":
        """A copy with boxes and landmarks multiplied by ``factor`` (map back from a resized frame)."""
        out = self[np.ones(len(self), bool)]
        out.boxes *= factor
        out.landmarks *= factor
        return out


@dataclass
class Observation:
    """One face in one frame: a row of results.csv."""

    frame: int
    time_s: float
    track_id: int
    x: float
    y: float
    w: float
    h: float
    det_score: float
    eyes: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan)  # image-left x,y, image-right x,y
    probs: tuple[float, ...] = field(default_factory=lambda: (np.nan,) * len(EMOTIONS))
    emotion: str = ""  # raw per-frame label, "" when not classified
    emotion_smooth: str = ""  # after EMA + repeater, "" until a label has held long enough
    smooth_prob: float = np.nan  # EMA probability of ``emotion_smooth``
    accepted: bool = True
    reject_reason: str = ""
    sharpness: float = np.nan
    person: str = ""  # the track's person by vote ("unknown" when none matches)
    match: str = ""  # this frame's best gallery match under tolerance
    match_distance: float = np.nan
    source: str = ""  # the image file (relative name) or the video file's name

    @property
    def emotion_prob(self) -> float:
        """Raw probability of the raw label."""
        return self.probs[EMOTIONS.index(self.emotion)] if self.emotion else np.nan
