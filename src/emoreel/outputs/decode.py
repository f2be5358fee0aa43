"""Offline per-track label decoding, confidence thresholds and flicker, from ``results.csv`` alone.

* :func:`viterbi` finds the label sequence of one track that best explains its
  per-frame probabilities when every label change costs ``switch_cost`` (in nats)
  and an extra "none" state (abstain, label ``""``) scores ``log(min_prob)`` a frame:
  a face is labelled where an emotion's probability stays above ``min_prob``
  (geometrically, over a stretch), and a label changes only where the new one is
  clearly better for long enough to pay for the switches.
* :func:`decode_results` runs it on every track of a :class:`~emoreel.results.Results`.
* :func:`confidence_threshold` derives the default ``min_prob`` from labelled data
  (see ``benchmarks/min_prob.py`` and docs/model.md).
* :func:`flicker` counts label changes per second per track.

No model is run: everything here reads probabilities already written by ``analyze``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..results import Results
from ..types import EMOTIONS

DEFAULT_SWITCH_COST = 3.0
"""Nats a label change costs: a change (or a start or end of abstaining) must be backed by 3 nats
of evidence, e.g. 5 frames at 2:1 odds (docs/benchmarks.md, "Flicker")."""


@dataclass
class Decoded:
    """Per-row decoded labels of a results file.

    ``labels[i]`` is the decoded emotion of row ``i`` ("" where the track abstains,
    and on rejected rows); ``probs[i]`` the row's own raw probability of that label
    (NaN where ``labels[i]`` is "").
    """

    labels: np.ndarray  # (rows,) object/str
    probs: np.ndarray  # (rows,) float64
    min_prob: float
    switch_cost: float


def _check(min_prob: float, switch_cost: float) -> None:
    if not 0 <= min_prob <= 1:
        raise InputError(f"--min-prob must be between 0 and 1 (got {min_prob})")
    if not switch_cost >= 0:
        raise InputError(f"--switch-cost must be >= 0 (got {switch_cost})")


def viterbi(probs: np.ndarray, min_prob: float, switch_cost: float = DEFAULT_SWITCH_COST) -> np.ndarray:
    """The best state per frame of one track: a class index, or -1 for "none" (abstain).

    ``probs`` is (T, C) with finite rows. Score of a path = sum of ``log p[t, s_t]``
    (``log min_prob`` for none; ``min_prob`` 0: never abstain) minus ``switch_cost`` per change of state.
    """
    _check(min_prob, switch_cost)
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or (len(p) and not np.isfinite(p).all()):
        raise InputError("viterbi needs a (frames, classes) array of finite probabilities")
    t_n, c_n = p.shape
    if t_n == 0:
        return np.zeros(0, np.int64)
    emit = np.concatenate([np.log(np.clip(p, 1e-9, 1.0)), np.full((t_n, 1), math.log(min_prob) if min_prob > 0 else -1e9)], axis=1)
    n = c_n + 1
    back = np.zeros((t_n, n), np.int64)
    score = emit[0].copy()
    for t in range(1, t_n):
        best = int(np.argmax(score))
        switch = score[best] - switch_cost
        stay = score >= switch  # staying beats switching from the best other state
        back[t] = np.where(stay, np.arange(n), best)
        score = np.where(stay, score, switch) + emit[t]
    path = np.zeros(t_n, np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(t_n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    path[path == c_n] = -1
    return path


def track_rows(res: Results, track_id: int) -> np.ndarray:
    """Rows of one track that carry probabilities (accepted faces), in frame order."""
    c = res.cols
    rows = np.flatnonzero((c["track_id"] == track_id) & (c["accepted"] == 1) & np.isfinite(res.probs).all(axis=1))
    return rows[np.argsort(c["frame"][rows], kind="stable")]


def decode_results(res: Results, min_prob: float, switch_cost: float = DEFAULT_SWITCH_COST,
                   classes: Sequence[str] = EMOTIONS) -> Decoded:  # fmt: skip
    """:func:`viterbi` over each track's accepted rows (rows without a track are decoded alone)."""
    _check(min_prob, switch_cost)
    n = len(res)
    labels = np.full(n, "", dtype=object)
    out_p = np.full(n, np.nan)
    if n == 0:
        return Decoded(labels, out_p, min_prob, switch_cost)
    probs = res.probs
    tids = res.cols["track_id"]
    names = np.array(list(classes), dtype=object)
    for tid in np.unique(tids):
        if tid < 0:
            chunks = [np.array([r]) for r in track_rows(res, int(tid))]
        else:
            chunks = [track_rows(res, int(tid))]
        for rows in chunks:
            if not len(rows):
                continue
            path = viterbi(probs[rows], min_prob, switch_cost)
            start = np.flatnonzero(np.concatenate(([True], path[1:] != path[:-1])))
            for a, b in zip(start, np.append(start[1:], len(path))):
                k = int(path[a])
                if k < 0:
                    continue
                labels[rows[a:b]] = names[k]
                out_p[rows[a:b]] = probs[rows[a:b], k]
    return Decoded(labels, out_p, min_prob, switch_cost)


def confidence_threshold(probs: np.ndarray, labels: np.ndarray, target: float = 0.8) -> tuple[float, float, float]:
    """The lowest top-probability ``t`` such that predictions with top probability >= ``t`` are right
    at least ``target`` of the time; returns ``(t, accuracy above t, share of faces kept)``.

    ``probs`` (N, C) are model outputs for faces with true class ``labels`` (N,).
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y) or not len(p):
        raise InputError("confidence_threshold needs (N, C) probabilities and N labels, N > 0")
    top = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(-top, kind="stable")
    acc = np.cumsum(right[order]) / np.arange(1, len(order) + 1)  # accuracy of the k most confident
    ok = np.flatnonzero(acc >= target)
    if not len(ok):
        return 1.0, float("nan"), 0.0
    k = int(ok.max())
    t = float(top[order[k]])
    kept = top >= t
    return t, float(right[kept].mean()), float(kept.mean())


def with_labels(res: Results, dec: Decoded) -> Results:
    """A view of ``res`` whose ``emotion_smooth``/``smooth_prob`` are the decoded labels and their probabilities."""
    return Results(res.dir, res.meta, {**res.cols, "emotion_smooth": dec.labels, "smooth_prob": dec.probs})


def flicker(res: Results, labels: np.ndarray, count_abstain: bool = False) -> tuple[int, float, float]:
    """Label changes in ``labels`` (one per row of ``res``) per track: ``(changes, track-seconds, changes per second)``.

    Per track, consecutive accepted rows are compared; rows with label "" are skipped
    (A, "", A is no change; A, "", B is one) unless ``count_abstain``, where going to
    or from "" counts too. Track-seconds: the sum over tracks of ``(last - first frame + stride) / fps``
    over tracks with any label.
    """
    c = res.cols
    fps = res.fps or 1.0
    step = max(1, int((res.meta.get("params") or {}).get("every", 1) or 1))
    labels = np.asarray(labels, dtype=object)
    changes, secs = 0, 0.0
    for tid in np.unique(c["track_id"]):
        if tid < 0:
            continue
        rows = track_rows(res, int(tid))
        seq = [str(x) for x in labels[rows]]
        if not count_abstain:
            seq = [x for x in seq if x]
        if not any(seq):
            continue
        changes += sum(a != b for a, b in zip(seq, seq[1:]))
        secs += (int(c["frame"][rows[-1]]) - int(c["frame"][rows[0]]) + step) / fps
    return changes, secs, (changes / secs if secs else float("nan"))


def replay_smoothing(res: Results, repeat: int = 3, ema: float = 0.5, min_prob: float = 0.0) -> np.ndarray:
    """The online smoothed label (:class:`~emoreel.model.smooth.EmotionSmoother`) of every row, recomputed
    from the raw probabilities with other settings ("" on rejected rows and while abstaining)."""
    from ..model.smooth import EmotionSmoother

    try:
        sm = EmotionSmoother(EMOTIONS, repeat=repeat, ema=ema, min_prob=min_prob)
    except ValueError as e:
        raise InputError(str(e)) from None
    labels = np.full(len(res), "", dtype=object)
    probs = res.probs
    for tid in np.unique(res.cols["track_id"]) if len(res) else []:
        for r in track_rows(res, int(tid)):
            labels[r] = sm.update(int(tid), probs[r])[0] if tid >= 0 else ""
    return labels
