"""Overlays shared by ``annotate``, ``live`` and the report: boxes, eyes, labels, captions."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..types import EMOTIONS, Observation

# one fixed colour per emotion (BGR), also used by the HTML report (as RGB hex)
EMOTION_BGR: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (150, 60, 150),
    "happy": (0, 200, 255),
    "sad": (200, 110, 30),
    "surprise": (230, 200, 40),
    "neutral": (140, 190, 225),  # tan: never to be mistaken for the grey of an unsure or rejected face
}
REJECTED_BGR = (110, 110, 110)
UNSURE_BGR = (150, 150, 150)
"""A face that was classified but whose smoothed label abstains (under ``--min-prob``, or not yet held ``--repeat``
frames): grey, and its label is a "?" with no emotion word, so it never reads as a decision."""
LEGEND = ("coloured box: emotion held", "grey box, ?: unsure", "thin grey: not classified (why)")


def emotion_hex(emotion: str) -> str:
    b, g, r = EMOTION_BGR.get(emotion, REJECTED_BGR)
    return f"#{r:02x}{g:02x}{b:02x}"


def text_box(img: np.ndarray, text: str, org: tuple[int, int], colour, scale: float = 0.45, below: bool = False) -> None:
    """Text on a filled background, kept inside the image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, round(scale / 0.5))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x = int(min(max(org[0], 0), max(img.shape[1] - tw - 4, 0)))
    y = int(org[1] + th + 4 if below else org[1])
    y = int(min(max(y, th + 4), img.shape[0] - 2))
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + base - 2), colour, -1)
    lum = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    cv2.putText(img, text, (x + 2, y - 2), font, scale, (0, 0, 0) if lum > 140 else (255, 255, 255), thick, cv2.LINE_AA)


def face_label(o: Observation) -> str:
    """``#3 anna happy 0.72`` for a held label; ``#3 anna ?`` while the label abstains; ``#3 (reason)`` if rejected."""
    who = f"#{o.track_id}" + (f" {o.person}" if o.person else "")
    if not o.accepted:
        return f"{who} ({o.reject_reason})"
    if o.emotion_smooth:
        return f"{who} {o.emotion_smooth} {o.smooth_prob:.2f}"
    return f"{who} ?"


def face_colour(o: Observation) -> tuple[int, int, int]:
    """The box colour: the held emotion's, else grey (unsure or rejected)."""
    if not o.accepted:
        return REJECTED_BGR
    return EMOTION_BGR.get(o.emotion_smooth, UNSURE_BGR) if o.emotion_smooth else UNSURE_BGR


def _scale(img: np.ndarray) -> float:
    """Overlay size factor: 1 up to 480 lines, growing with taller frames so labels stay readable."""
    return max(1.0, img.shape[0] / 480)


def draw_observation(img: np.ndarray, o: Observation) -> None:
    """Box coloured by the smoothed emotion (grey with a "?" while it abstains; grey, thinner, with the
    reason when rejected), the two eye points, and a label: track id, person, smoothed emotion and its probability."""
    k = _scale(img)
    colour = face_colour(o)
    x1, y1, x2, y2 = int(o.x), int(o.y), int(o.x + o.w), int(o.y + o.h)
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, max(1, round((2 if o.accepted else 1) * k)), cv2.LINE_AA)
    for ex, ey in ((o.eyes[0], o.eyes[1]), (o.eyes[2], o.eyes[3])):
        if not (math.isnan(ex) or math.isnan(ey)):
            cv2.circle(img, (int(ex), int(ey)), max(2, round(2 * k)), (0, 255, 0), -1, cv2.LINE_AA)
    text_box(img, face_label(o), (x1, y1 - 3), colour, scale=0.45 * k, below=y1 < 18 * k)


def draw_legend(img: np.ndarray) -> None:
    """What the box styles mean, small, in the bottom right corner."""
    k = _scale(img)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35 * k
    width = max(cv2.getTextSize(t, font, scale, 1)[0][0] for t in LEGEND)
    y = img.shape[0] - int(4 * k) - int(14 * k) * (len(LEGEND) - 1)
    for text, colour in zip(LEGEND, (EMOTION_BGR["happy"], UNSURE_BGR, REJECTED_BGR)):
        text_box(img, text, (img.shape[1] - width - int(8 * k), y), colour, scale=scale)
        y += int(14 * k)


def draw_frame(img: np.ndarray, observations: list[Observation], caption: str = "", legend: bool = False) -> np.ndarray:
    """A copy of ``img`` with every observation drawn, an optional caption at the bottom left and the legend."""
    out = img.copy()
    for o in observations:
        draw_observation(out, o)
    if legend and observations:
        draw_legend(out)
    if caption:
        k = _scale(out)
        text_box(out, caption, (6, out.shape[0] - int(8 * k)), (30, 30, 30), scale=0.55 * k)
    return out


def timecode(seconds: float) -> str:
    """``H:MM:SS.s`` or ``MM:SS.s`` (rounded to a tenth first, so 59.96 s is 01:00.0)."""
    tenths = int(round(max(seconds, 0.0) * 10))
    m, t = divmod(tenths, 600)
    h, m = divmod(m, 60)
    s = f"{t // 10:02d}.{t % 10}"
    return f"{h}:{m:02d}:{s}" if h else f"{m:02d}:{s}"


__all__ = ["EMOTION_BGR", "EMOTIONS", "LEGEND", "UNSURE_BGR", "draw_frame", "draw_legend", "draw_observation", "emotion_hex",
           "face_colour", "face_label", "text_box", "timecode"]
