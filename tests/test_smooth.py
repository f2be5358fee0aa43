"""Emotion repeater, EMA and the per-track smoother."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emoreel.model.smooth import EMA, EmotionSmoother, Repeater

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_repeater_needs_n_in_a_row():
    r = Repeater(3)
    assert [r.update(x) for x in ["happy", "happy", "happy", "sad", "sad", "happy", "sad", "sad", "sad"]] == [
        "", "", "happy", "happy", "happy", "happy", "happy", "happy", "sad"
    ]  # fmt: skip


def test_repeater_suppresses_flicker_and_n1_passes_through():
    r = Repeater(2)
    out = [r.update(x) for x in ["sad", "sad", "happy", "sad", "happy", "sad"]]
    assert out == ["", "sad", "sad", "sad", "sad", "sad"]
    r1 = Repeater(1)
    assert [r1.update(x) for x in "abca"] == list("abca")


def test_ema_maths():
    e = EMA(0.25)
    assert e.update([1.0, 0.0]).tolist() == [1.0, 0.0]  # the first update is the input
    assert e.update([0.0, 1.0]).tolist() == [0.75, 0.25]
    assert np.allclose(e.update([0.0, 1.0]), [0.5625, 0.4375])
    assert EMA(1.0).update([0.2, 0.8]).tolist() == [0.2, 0.8]
    with pytest.raises(ValueError, match="shape"):
        e.update([1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "bad, match",
    [(dict(repeat=0), "repeat"), (dict(repeat=1.5), "repeat"), (dict(ema=0), "alpha"), (dict(ema=1.5), "alpha")],
)
def test_bad_parameters(bad, match):
    with pytest.raises(ValueError, match=match):
        EmotionSmoother(CLASSES, **bad)


def onehot(name, p=0.9):
    v = np.full(7, (1 - p) / 6)
    v[CLASSES.index(name)] = p
    return v


def test_smoother_tracks_are_independent_and_forget_resets():
    s = EmotionSmoother(CLASSES, repeat=2, ema=1.0)
    assert s.update(1, onehot("happy"))[0] == ""
    label, prob = s.update(1, onehot("happy"))
    assert label == "happy" and prob == pytest.approx(0.9)
    assert s.update(2, onehot("sad"))[0] == ""  # track 2 has its own repeater
    assert s.update(1, onehot("sad"))[0] == "happy"
    assert s.update(2, onehot("sad"))[0] == "sad"
    assert len(s) == 2
    s.forget(1)
    s.forget(99)  # unknown ids are fine
    assert len(s) == 1
    label, prob = s.update(1, onehot("sad"))
    assert label == "" and math.isnan(prob)


def test_smoother_prob_is_the_ema_of_the_smoothed_label():
    s = EmotionSmoother(CLASSES, repeat=1, ema=0.5)
    assert s.update(3, onehot("happy", 0.9)) == ("happy", pytest.approx(0.9))
    label, prob = s.update(3, onehot("sad", 0.7))  # EMA: happy 0.475, sad 0.358
    assert label == "happy" and prob == pytest.approx(0.5 * 0.9 + 0.5 * 0.3 / 6)
    label, prob = s.update(3, onehot("sad", 0.7))
    assert label == "sad" and prob == pytest.approx(0.25 * 0.1 / 6 + 0.25 * 0.7 + 0.5 * 0.7)


def test_smoother_ema_delays_a_single_outlier():
    s = EmotionSmoother(CLASSES, repeat=1, ema=0.3)
    for _ in range(5):
        s.update(7, onehot("neutral", 0.8))
    assert s.update(7, onehot("angry", 0.9))[0] == "neutral"  # one angry frame doesn't flip the EMA


def test_smoother_ignores_unclassified_frames():
    s = EmotionSmoother(CLASSES, repeat=2, ema=0.5)
    nan = np.full(7, np.nan)
    assert s.update(1, nan)[0] == "" and len(s) == 0
    s.update(1, onehot("happy"))
    s.update(1, onehot("happy"))
    label, prob = s.update(1, nan)  # a NaN vector would otherwise poison the EMA for good
    assert label == "happy" and prob == pytest.approx(0.9)
    assert s.update(1, onehot("happy")) == ("happy", pytest.approx(0.9))
    with pytest.raises(ValueError, match="7 probabilities"):
        s.update(1, [0.5, 0.5])


def test_a_label_never_outlives_its_evidence():
    """The shown label abstains on the first frame its smoothed probability is under --min-prob (issue: "happy
    0.05" drawn on an angry face), comes back only after `repeat` sure frames, and a face hovering at the
    threshold stays unsure instead of blinking."""
    from emoreel.model.smooth import EmotionSmoother

    classes = ("happy", "sad", "neutral")

    def run(ps, repeat=3, ema=1.0):
        s = EmotionSmoother(classes, repeat=repeat, ema=ema, min_prob=0.5)
        return [s.update(1, p) for p in ps]

    out = run([(0.9, 0.05, 0.05)] * 3 + [(0.3, 0.6, 0.1)] + [(0.1, 0.8, 0.1)] * 3)
    assert [lab for lab, _ in out] == ["", "", "happy", "", "", "sad", "sad"]  # abstains at once, then sad holds
    assert all(math.isnan(p) if not lab else p >= 0.5 for lab, p in out)
    hover = run([(0.6, 0.2, 0.2)] * 3 + [(p, (1 - p) / 2, (1 - p) / 2) for p in (0.48, 0.52, 0.47, 0.51, 0.49, 0.52)])
    assert [lab for lab, _ in hover] == ["", "", "happy", "", "", "", "", "", ""]
    # with an EMA the smoothed probability, not the raw one, decides: one low frame does not drop a sure face
    ema = run([(0.9, 0.05, 0.05)] * 3 + [(0.2, 0.4, 0.4)], ema=0.5)
    assert ema[-1][0] == "happy" and ema[-1][1] == pytest.approx(0.55)
    # labels that alternate with unsure frames never reach `repeat` votes: the old label does not linger
    alt = run([(0.1, 0.8, 0.1)] * 3 + [(0.7, 0.2, 0.1), (0.4, 0.3, 0.3)] * 3)
    assert [lab for lab, _ in alt][3:] == [""] * 6
