"""Temporal smoothing of emotion per track.

Two classic tools, combined by :class:`EmotionSmoother`:

* :class:`EMA`: exponential moving average of the probability vectors;
* :class:`Repeater`: the "emotion repeater" — the label changes only after
  ``n`` consecutive frames agree on a new one, so one-frame flickers never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class Repeater:
    """A label that changes only after ``n`` consecutive updates agree (``n=1``: no smoothing)."""

    def __init__(self, n: int = 3):
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"repeat must be an integer >= 1 (got {n})")
        self.n = int(n)
        self.stable = ""
        self._candidate = ""
        self._count = 0

    def update(self, label: str) -> str:
        """Feed one frame's label; returns the stable label ("" until one has held ``n`` times)."""
        if label == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = label, 1
        if self._count >= self.n:
            self.stable = label
        return self.stable


class EMA:
    """Exponential moving average of vectors; ``alpha`` is the weight of the newest (1 = none).

    The first update returns its input; later ones ``alpha * x + (1 - alpha) * previous``.
    """

    def __init__(self, alpha: float = 0.5):
        if not 0 < float(alpha) <= 1:
            raise ValueError(f"ema alpha must be in (0, 1] (got {alpha})")
        self.alpha = float(alpha)
        self.value: np.ndarray | None = None

    def update(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Fold in ``x`` (same shape every time, finite) and return the average."""
        x = np.asarray(x, np.float64)
        if not np.isfinite(x).all():
            raise ValueError("EMA input must be finite")
        if self.value is not None and x.shape != self.value.shape:
            raise ValueError(f"EMA input shape {x.shape} differs from {self.value.shape}")
        self.value = x.copy() if self.value is None else self.alpha * x + (1 - self.alpha) * self.value
        return self.value


class EmotionSmoother:
    """Per-track EMA of probabilities, whose argmax goes through a :class:`Repeater`.

    ``classes`` name the probability columns; ``repeat`` and ``ema`` are the
    :class:`Repeater` ``n`` and the :class:`EMA` ``alpha`` of every track.
    ``min_prob``: a label is never shown with less evidence than this. The label
    abstains ("") on the first frame where its own EMA probability falls under it,
    and a label (the same or another) comes back only once ``repeat`` frames in a row
    agree on it above ``min_prob`` (a frame whose top EMA probability is under it
    votes "none"). So a face hovering at the threshold stays unsure rather than
    blinking, and a label never outlives its evidence (docs/benchmarks.md, "Flicker").
    """

    def __init__(self, classes: Sequence[str], repeat: int = 3, ema: float = 0.5, min_prob: float = 0.0):
        Repeater(repeat), EMA(ema)  # validate now, not on the first face
        if not len(classes):
            raise ValueError("classes must not be empty")
        if not 0 <= float(min_prob) < 1:
            raise ValueError(f"min-prob must be in [0, 1) (got {min_prob})")
        self.classes, self.repeat, self.ema = tuple(classes), int(repeat), float(ema)
        self.min_prob = float(min_prob)
        self._state: dict[int, tuple[EMA, Repeater]] = {}

    def update(self, track_id: int, probs: Sequence[float] | np.ndarray) -> tuple[str, float]:
        """Smoothed ``(label, probability)`` of this track after one more frame.

        ``probability`` is the EMA probability of ``label`` (NaN while the label is "",
        including while it abstains under ``min_prob``). A vector with NaN (a face not
        classified) leaves the track's state as it was.
        """
        p = np.asarray(probs, np.float64)
        if p.shape != (len(self.classes),):
            raise ValueError(f"expected {len(self.classes)} probabilities, got shape {p.shape}")
        if track_id not in self._state:
            if not np.isfinite(p).all():
                return "", math.nan
            self._state[track_id] = (EMA(self.ema), Repeater(self.repeat))
        ema, rep = self._state[track_id]
        if np.isfinite(p).all():
            v = ema.update(p)
            k = int(np.argmax(v))
            rep.update(self.classes[k] if v[k] >= self.min_prob else "")
            if rep.stable and v[self.classes.index(rep.stable)] < self.min_prob:
                rep.stable = ""  # its evidence is gone: unsure now, not after `repeat` more frames
        label = rep.stable
        return label, (float(ema.value[self.classes.index(label)]) if label else math.nan)

    def forget(self, track_id: int) -> None:
        """Drop a track's state (when it ended); unknown ids are ignored."""
        self._state.pop(track_id, None)

    def __len__(self) -> int:
        """Number of tracks with state."""
        return len(self._state)
