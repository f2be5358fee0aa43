"""Temporal smoothing of emotion per track.

Two classic tools, combined by :class:`EmotionSmoother`:

* :class:`EMA`: exponential moving average of the probability vectors;
* :class:`Repeater`: the "emotion repeater" — the label changes only after
  ``n`` consecutive frames agree on a new one, so one-frame flickers never count.
"""

from __future__ import annotations

import math

import numpy as np


class Repeater:
    """A label that changes only after ``n`` consecutive updates agree (``n=1``: no smoothing)."""

    def __init__(self, n: int = 3):
        if int(n) < 1:
            raise ValueError(f"repeat must be >= 1 (got {n})")
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
    """Exponential moving average; ``alpha`` is the weight of the newest value (1 = none)."""

    def __init__(self, alpha: float = 0.5):
        if not 0 < float(alpha) <= 1:
            raise ValueError(f"ema alpha must be in (0, 1] (got {alpha})")
        self.alpha = float(alpha)
        self.value: np.ndarray | None = None

    def update(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        self.value = x.copy() if self.value is None else self.alpha * x + (1 - self.alpha) * self.value
        return self.value


class EmotionSmoother:
    """Per-track EMA of probabilities, whose argmax goes through a :class:`Repeater`."""

    def __init__(self, classes: tuple[str, ...], repeat: int = 3, ema: float = 0.5):
        Repeater(repeat), EMA(ema)  # validate now, not on the first face
        self.classes, self.repeat, self.ema = tuple(classes), int(repeat), float(ema)
        self._state: dict[int, tuple[EMA, Repeater]] = {}

    def update(self, track_id: int, probs: np.ndarray) -> tuple[str, float]:
        """Smoothed ``(label, probability)`` for this track after one more frame."""
        ema, rep = self._state.get(track_id) or self._state.setdefault(track_id, (EMA(self.ema), Repeater(self.repeat)))
        p = ema.update(probs)
        label = rep.update(self.classes[int(np.argmax(p))])
        return label, (float(p[self.classes.index(label)]) if label else math.nan)

    def forget(self, track_id: int) -> None:
        self._state.pop(track_id, None)

    def __len__(self) -> int:
        return len(self._state)
