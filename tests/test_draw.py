"""What a viewer sees on annotate's frames and the live view: a held label in its emotion's colour with
its probability, an unsure face in grey with a "?" and no emotion word, a rejected face thin and grey with
its reason, and a legend saying which is which."""

from __future__ import annotations

import numpy as np

from emoreel.outputs.draw import EMOTION_BGR, LEGEND, REJECTED_BGR, UNSURE_BGR, draw_frame, face_colour, face_label
from emoreel.types import EMOTIONS, Observation


def obs(emotion="", smooth="", smooth_prob=np.nan, accepted=True, reason="", x=40.0):
    probs = tuple(0.6 if e == emotion else 0.4 / 6 for e in EMOTIONS) if accepted else (np.nan,) * 7
    return Observation(frame=0, time_s=0.0, track_id=3, x=x, y=60, w=60, h=60, det_score=0.9, eyes=(x + 15, 80, x + 45, 80),
                       probs=probs, emotion=emotion, emotion_smooth=smooth, smooth_prob=smooth_prob, accepted=accepted,
                       reject_reason=reason, sharpness=100.0)  # fmt: skip


def test_a_held_label_shows_its_emotion_an_unsure_one_shows_none():
    held = obs("happy", "happy", 0.72)
    unsure = obs("sad", "", np.nan)  # the raw guess is sad, but the smoothed label abstains
    rejected = obs(accepted=False, reason="not_frontal")
    assert face_label(held) == "#3 happy 0.72" and face_colour(held) == EMOTION_BGR["happy"]
    assert face_label(unsure) == "#3 ?" and face_colour(unsure) == UNSURE_BGR
    assert not any(e in face_label(unsure) for e in EMOTIONS)
    assert face_label(rejected) == "#3 (not_frontal)" and face_colour(rejected) == REJECTED_BGR
    # no emotion is drawn in a grey that could pass for "unsure" or "rejected"
    for colour in EMOTION_BGR.values():
        assert min(np.abs(np.subtract(colour, g)).sum() for g in (UNSURE_BGR, REJECTED_BGR)) > 60


def test_frames_carry_a_legend_and_unsure_boxes_are_grey():
    img = np.zeros((360, 640, 3), np.uint8)
    out = draw_frame(img, [obs("sad", "", np.nan, x=40.0), obs("happy", "happy", 0.8, x=300.0)], legend=True)
    box_edge = out[60:120, 40]  # the left edge of the unsure face's box
    assert (np.abs(box_edge.astype(int) - UNSURE_BGR).sum(1) < 30).mean() > 0.5
    happy_edge = out[60:120, 300]
    assert (np.abs(happy_edge.astype(int) - EMOTION_BGR["happy"]).sum(1) < 30).mean() > 0.5
    corner = out[360 - 14 * len(LEGEND) - 10 :, 400:]  # the legend sits in the bottom right corner
    assert corner.any() and not draw_frame(img, [obs("happy", "happy", 0.8, x=300.0)])[360 - 50 :, 400:].any()
