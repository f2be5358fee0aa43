"""``emoreel live``: the real pipeline run on a camera or video, each frame drawn
(:func:`live_frames`), and whether a window can be opened here (:func:`gui_available`)."""

from __future__ import annotations

import os
import re
from typing import Iterator

import cv2
import numpy as np

from ..types import Frame, Observation
from .draw import draw_frame, timecode


def live_frames(source, analyzer, show_time: bool = True) -> Iterator[tuple[Frame, list[Observation], np.ndarray]]:
    """Run ``analyzer`` (an :class:`emoreel.analysis.analyzer.Analyzer`) on each frame of ``source``
    (an open :class:`~emoreel.media.video.VideoSource`) and yield ``(frame, observations, drawn image)``."""
    for frame in source:
        obs = analyzer.process(frame)
        yield frame, obs, draw_frame(frame.image, obs, timecode(frame.time_s) if show_time else "", legend=True)


def gui_available() -> tuple[bool, str]:
    """Whether a cv2 window can be opened here, and if not, why."""
    info = cv2.getBuildInformation()
    m = re.search(r"^\s*GUI:\s*(\S+)", info, re.M)
    if m and m.group(1).upper() == "NONE":
        return False, "this OpenCV build has no GUI (opencv-python-headless)"
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.uname().sysname != "Darwin":
        return False, "no display (DISPLAY is not set)"
    return True, ""
