"""The built-in example: a short video made from a real, redistributable face photo.

``assets/astronaut.jpg`` is NASA's portrait of astronaut Eileen Collins (public
domain), the same picture scikit-image ships as ``skimage.data.astronaut()``.
The example video moves two copies of it (one mirrored) across a plain
background so that detection, tracking and classification all have real work.
"""

from __future__ import annotations

from fractions import Fraction
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .video import VideoWriter


def astronaut() -> np.ndarray:
    """The example photo as a BGR array (512x512)."""
    data = (resources.files("emoreel") / "assets" / "astronaut.jpg").read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def make_example_video(
    path: str | Path,
    frames: int = 90,
    size: tuple[int, int] = (640, 360),
    fps: Fraction = Fraction(30),
    face_px: int = 230,
) -> Path:
    """Write a video of two real faces drifting past each other; returns ``path``.

    ``face_px`` is the side of the pasted head-and-shoulders crop (the face itself
    is about half of it).
    """
    w, h = size
    head = astronaut()[10:330, 60:380]  # head and shoulders, 320x320
    head = cv2.resize(head, (face_px, face_px), interpolation=cv2.INTER_AREA)
    mirrored = head[:, ::-1]
    path = Path(path)
    with VideoWriter(path, fps, size) as out:
        for i in range(frames):
            t = i / max(frames - 1, 1)
            canvas = np.full((h, w, 3), (120, 110, 100), np.uint8)
            ax = int(10 + t * (w - face_px - 20) * 0.3)
            bx = int(w - face_px - 10 - t * (w - face_px - 20) * 0.3)
            ay = max(0, (h - face_px) // 2 - 40)
            by = min(h - face_px, (h - face_px) // 2 + 40)
            canvas[by : by + face_px, bx : bx + face_px] = mirrored
            canvas[ay : ay + face_px, ax : ax + face_px] = head
            out.write(canvas)
    return path
