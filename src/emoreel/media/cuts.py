"""Shot cuts: where one shot ends and the next begins, so that tracks never continue across them."""

from __future__ import annotations

import cv2
import numpy as np


class CutDetector:
    """Detects shot cuts: the mean absolute change of a small grey thumbnail between frames.

    Tracks must not continue across a cut (a face at the same place in the next
    shot is another face). ``threshold`` is in grey levels (0-255); 0 disables it.
    On real footage cuts measured 27-31 while motion within a shot stayed under 14.
    """

    def __init__(self, threshold: float = 20.0, size: tuple[int, int] = (64, 36)):
        self.threshold, self.size = float(threshold), size
        self._prev: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        if self.threshold <= 0:
            return False
        # every k-th pixel first (a strided view, no copy): area-averaging a 1080p frame to 64x36 costs
        # milliseconds on the thread that keeps frame order; the subsampled frame has the same means
        k = max(1, min(image.shape[0] // (4 * self.size[1]), image.shape[1] // (4 * self.size[0])))
        small = image[::k, ::k]
        grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        thumb = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._prev = self._prev, thumb
        return prev is not None and float(np.abs(thumb - prev).mean()) > self.threshold
