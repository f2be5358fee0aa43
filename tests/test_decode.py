"""Offline per-track decoding, the confidence threshold and flicker (no model, no video)."""

from __future__ import annotations

import numpy as np
import pytest

from emoreel.errors import InputError
from emoreel.model.smooth import EmotionSmoother
from emoreel.outputs.decode import confidence_threshold, decode_results, flicker, viterbi
from emoreel.results import ResultsWriter, load_results
from emoreel.types import EMOTIONS, Observation

HAPPY, SAD, NEUTRAL = EMOTIONS.index("happy"), EMOTIONS.index("sad"), EMOTIONS.index("neutral")


def noisy_sequence(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """120 frames: happy for 60, then sad for 60 (a long true change), with ~25% of frames
    where a random other emotion narrowly wins (flicker)."""
    rng = np.random.default_rng(seed)
    truth = np.array([HAPPY] * 60 + [SAD] * 60)
    p = np.full((120, 7), 0.04)
    for t, k in enumerate(truth):
        p[t, k] = 0.7
        if rng.random() < 0.25:
            other = rng.choice([i for i in range(7) if i != k])
            p[t, other], p[t, k] = 0.45, 0.3
    return p / p.sum(1, keepdims=True), truth


def changes(seq) -> int:
    return int(sum(a != b for a, b in zip(seq, seq[1:])))


def test_viterbi_removes_flicker_and_keeps_the_real_change():
    p, truth = noisy_sequence()
    raw = p.argmax(1)
    assert changes(raw) >= 20  # the per-frame label flickers
    path = viterbi(p, min_prob=0.4, switch_cost=3.0)
    assert changes(path) == 1  # one change: the real one
    switch = int(np.flatnonzero(path[1:] != path[:-1])[0]) + 1
    assert abs(switch - 60) <= 1
    assert (path[:59] == HAPPY).all() and (path[61:] == SAD).all()


def test_viterbi_abstains_where_no_emotion_is_probable():
    p = np.full((40, 7), 1 / 7)  # nothing is probable
    p[:20] = 0.05
    p[:20, NEUTRAL] = 0.7
    path = viterbi(p / p.sum(1, keepdims=True), min_prob=0.5, switch_cost=2.0)
    assert (path[:20] == NEUTRAL).all() and (path[20:] == -1).all()
    assert (viterbi(p / p.sum(1, keepdims=True), min_prob=0.0)[20:] >= 0).all()  # min_prob 0: never abstains
    with pytest.raises(InputError):
        viterbi(p, min_prob=1.5)


def test_online_smoother_abstains_below_min_prob():
    unsure = np.full(7, 0.1)
    unsure[HAPPY] = 0.4  # happy wins, but at 0.4
    sure = np.full(7, 0.05)
    sure[HAPPY] = 0.7
    sm = EmotionSmoother(EMOTIONS, repeat=3, ema=1.0, min_prob=0.5)
    assert [sm.update(1, unsure)[0] for _ in range(5)] == [""] * 5  # never confident: no label
    out = [sm.update(1, sure) for _ in range(4)]
    assert [lab for lab, _ in out] == ["", "", "happy", "happy"]  # held 3 frames above 0.5: labelled
    assert out[-1][1] == pytest.approx(0.7)
    assert [sm.update(1, unsure)[0] for _ in range(3)] == ["", "", ""]  # under 0.5: abstains at once, not 3 frames late
    assert EmotionSmoother(EMOTIONS, repeat=1, min_prob=0.0).update(2, unsure)[0] == "happy"  # 0: no abstention


def test_confidence_threshold_reaches_the_target_accuracy():
    rng = np.random.default_rng(1)
    top = rng.uniform(0.2, 1.0, 2000)
    y = np.zeros(2000, int)
    right = rng.random(2000) < top  # calibrated: right with probability = top probability
    pred = np.where(right, 0, 1)
    probs = np.zeros((2000, 7))
    probs[np.arange(2000), pred] = top
    t, acc, kept = confidence_threshold(probs, y, 0.8)
    assert acc >= 0.8 and 0.5 < t < 0.75 and 0.3 < kept < 0.7
    sel = top >= t
    assert (pred[sel] == 0).mean() >= 0.8 and sel.mean() == pytest.approx(kept)


def write_track(tmp_path, p: np.ndarray, fps: float = 30.0):
    out = tmp_path / "res"
    out.mkdir()
    meta = {"input": {"path": "x.mp4", "kind": "video", "fps": fps, "frame_count": len(p)}, "params": {"every": 1}}
    with ResultsWriter(out, meta) as w:
        for f, row in enumerate(p):
            k = int(np.argmax(row))
            w.write_frame([Observation(frame=f, time_s=f / fps, track_id=1, x=0, y=0, w=40, h=40, det_score=0.9,
                                       eyes=(10, 10, 30, 10), probs=tuple(row), emotion=EMOTIONS[k],
                                       emotion_smooth=EMOTIONS[k], smooth_prob=float(row[k]), accepted=True)])  # fmt: skip
    return load_results(out)


def test_decoding_a_results_file_lowers_the_flicker_rate(tmp_path):
    p, truth = noisy_sequence(2)
    res = write_track(tmp_path, p)
    before = flicker(res, res.cols["emotion"])
    dec = decode_results(res, 0.4, 3.0)
    after = flicker(res, dec.labels)
    assert before[1] == after[1] == pytest.approx(4.0)  # 120 frames at 30 fps
    assert before[0] >= 20 and after[0] == 1 and after[2] == pytest.approx(0.25)
    assert (dec.labels[:59] == "happy").all() and (dec.labels[61:] == "sad").all()
    assert np.allclose(dec.probs, p[np.arange(120), [EMOTIONS.index(x) for x in dec.labels]], atol=1e-4)  # each row its own
