"""Which rows of a results folder to extract: :class:`Selection` ("happy faces of Anna,
prob >= 0.6, at least 1 s in a row") turned into a row mask by :func:`select`, and
:func:`find_runs`, which groups selected rows into continuous runs per track.

Labels are the offline decoding's (:mod:`emoreel.outputs.decode`) unless asked otherwise; no model is run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..results import Results
from ..types import EMOTIONS
from .decode import DEFAULT_SWITCH_COST, decode_results


@dataclass
class Selection:
    """Which observations to extract.

    Labels come from the offline per-track decoding (:mod:`emoreel.outputs.decode`) by
    default, from the online smoothed label (``emotion_smooth``) with ``online=True``,
    or from the per-frame label with ``raw=True``. ``min_prob`` is the confidence
    needed (None: :func:`confident_min_prob`, the analysis' own ``--min-prob``): the
    decoding's abstain level, the smoothed probability (``smooth_prob``) for an
    online selection, the raw probability of that emotion for ``raw=True``.
    ``min_duration`` keeps only runs in which one track holds the emotion at least
    that many seconds in a row (see :func:`find_runs`).
    """

    emotion: str
    raw: bool = False  # per-frame label instead of the decoded one
    min_prob: float | None = None  # None: the confident default
    person: str | None = None
    tracks: tuple[int, ...] = ()
    start: float | None = None
    end: float | None = None
    min_duration: float = 0.0  # seconds the track must hold the emotion in a row
    online: bool = False  # the online smoothed label (emotion_smooth) instead of the decoded one
    switch_cost: float = DEFAULT_SWITCH_COST  # decoding: nats a label change costs

    def check(self) -> None:
        """Raise :class:`InputError` for an unknown emotion or out-of-range numbers."""
        from ..names import resolve_name

        self.emotion = resolve_name(self.emotion, EMOTIONS, "emotion")  # any case; close matches suggested
        if self.min_prob is not None and not 0 <= self.min_prob <= 1:
            raise InputError(f"--min-prob must be between 0 and 1 (got {self.min_prob})")
        if not self.switch_cost >= 0:
            raise InputError(f"--switch-cost must be >= 0 (got {self.switch_cost})")
        if self.raw and self.online:
            raise InputError("--raw and --online choose different labels; give one")
        if not self.min_duration >= 0:
            raise InputError(f"--min-duration must be >= 0 (got {self.min_duration})")
        if self.start is not None and self.start < 0:
            raise InputError(f"--start must be >= 0 (got {self.start})")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise InputError(f"--end ({self.end}) must not be before --start ({self.start})")


@dataclass
class Run:
    """Consecutive selected rows of one track (processed frames in a row holding the emotion)."""

    track_id: int
    person: str
    emotion: str
    rows: np.ndarray  # row indices into the results, in frame order
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float  # end of the last frame's interval: (last_frame + stride) / fps
    times: dict[int, float] = field(default_factory=dict)  # presentation time (time_s) of each row's frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def confident_min_prob(res: Results) -> float:
    """The default confidence of a selection: the analysis' ``--min-prob`` (run.json), else today's default."""
    from ..config import AnalyzeOptions

    try:
        v = float((res.meta.get("params") or {}).get("min_prob"))
        if 0 <= v <= 1:
            return v
    except (TypeError, ValueError):
        pass
    return AnalyzeOptions().min_prob


def stride(res: Results) -> int:
    """The analysis frame stride (``--every``) recorded in run.json."""
    try:
        return max(1, int(res.meta.get("params", {}).get("every", 1) or 1))
    except (TypeError, ValueError):
        return 1


def continuity_gap(res: Results) -> int:
    """The largest frame distance between two rows of one track that still counts as continuous.

    The tracker keeps a track alive ``track_max_missed`` source frames; with a stride
    of ``every`` frames a track seen at frame ``f`` can next be seen at
    ``f + every * (max_missed // every + 1)``. Gaps up to that are continuous.
    """
    step = stride(res)
    try:
        missed = max(0, int(res.meta.get("params", {}).get("track_max_missed", 0) or 0))
    except (TypeError, ValueError):
        missed = 0
    return step * (missed // step + 1)


def selection_labels(res: Results, sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the label ``sel`` selects on and the probability ``min_prob`` is compared with
    (decoded labels pass their decoding, whose abstain level is ``min_prob``)."""
    c = res.cols
    min_prob = confident_min_prob(res) if sel.min_prob is None else sel.min_prob
    if sel.raw:
        return c["emotion"], np.nan_to_num(c[sel.emotion], nan=0.0)
    if sel.online:
        return c["emotion_smooth"], np.nan_to_num(c["smooth_prob"], nan=0.0)
    dec = decode_results(res, min_prob, sel.switch_cost)
    return dec.labels, np.where(dec.labels != "", 1.0, 0.0)


def other_emotion_frames(res: Results, sel: Selection, labels: tuple[np.ndarray, np.ndarray] | None = None
                         ) -> dict[int, np.ndarray]:  # fmt: skip
    """Per track, the sorted frames where it confidently shows an emotion other than ``sel.emotion``
    (by ``sel``'s own labels; ``labels``: :func:`selection_labels` when already at hand): where a clip's
    padding around that track's run must stop."""
    sel.check()
    c = res.cols
    label, prob = labels if labels is not None else selection_labels(res, sel)
    if sel.raw:  # the per-frame label's own probability (selection_labels gives the selected emotion's)
        prob = np.nan_to_num(c["emotion_prob"], nan=0.0)
    min_prob = confident_min_prob(res) if sel.min_prob is None else sel.min_prob
    other = (c["accepted"] == 1) & (label != "") & (label != sel.emotion) & (prob >= min_prob) & (c["track_id"] >= 0)
    out: dict[int, np.ndarray] = {}
    for tid in np.unique(c["track_id"][other]):
        out[int(tid)] = np.unique(c["frame"][other & (c["track_id"] == tid)]).astype(np.int64)
    return out


def select(res: Results, sel: Selection, labels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Boolean mask of the rows matching ``sel``; unknown emotion/person names raise :class:`InputError`.
    ``labels``: :func:`selection_labels` of ``res`` and ``sel`` when already computed (the decoding is not free)."""
    sel.check()
    c = res.cols
    if sel.person is not None and sel.person not in res.persons():
        known = ", ".join(res.persons()) or "none (analyze with --known-faces to name people)"
        raise InputError(f"unknown person '{sel.person}'; people in these results: {known}")
    label, prob = labels if labels is not None else selection_labels(res, sel)
    min_prob = confident_min_prob(res) if sel.min_prob is None else sel.min_prob
    mask = (c["accepted"] == 1) & (label == sel.emotion) & (prob >= min_prob)
    if sel.person is not None:
        mask &= c["person"] == sel.person
    if sel.tracks:
        mask &= np.isin(c["track_id"], list(sel.tracks))
    if sel.start is not None:
        mask &= c["time_s"] >= sel.start - 1e-9
    if sel.end is not None:
        mask &= c["time_s"] <= sel.end + 1e-9
    if sel.min_duration > 0:
        keep = np.zeros_like(mask)
        for run in find_runs(res, mask, emotion=sel.emotion):
            if run.duration_s >= sel.min_duration - 1e-9:
                keep[run.rows] = True
        mask = keep
    return mask


def find_runs(res: Results, mask: np.ndarray, max_gap: int | None = None, raw: bool = False,
              emotion: str | None = None) -> list[Run]:  # fmt: skip
    """Continuous runs of selected rows per track, in time order.

    Within one track, a run ends where an accepted row of that track is *not*
    selected (the face was seen with another emotion, or below ``min_prob``), or
    where the next selected row is more than ``max_gap`` frames later (default:
    :func:`continuity_gap`, the tracker's tolerance). Rejected rows (no emotion)
    are treated like missed frames. Rows without a track (id < 0) are runs of one.
    A run's ``emotion`` is ``emotion`` when given (the selected one), else its first
    row's smoothed label, or raw label with ``raw``.
    """
    c = res.cols
    fps = res.fps or 1.0
    step = stride(res)
    max_gap = continuity_gap(res) if max_gap is None else max_gap
    runs: list[Run] = []
    sel_idx = np.flatnonzero(mask)
    if not len(sel_idx):
        return runs
    considered = mask | (c["accepted"] == 1)  # rejected, unselected rows neither count nor break
    tids = c["track_id"]

    def make(part: np.ndarray, tid: int) -> Run:
        f0, f1 = int(c["frame"][part[0]]), int(c["frame"][part[-1]])
        first = part[0]
        label = emotion or str(c["emotion"][first] if raw or not c["emotion_smooth"][first] else c["emotion_smooth"][first])
        times = dict(zip(c["frame"][part].tolist(), c["time_s"][part].tolist()))
        return Run(tid, str(c["person"][first]), label, part, f0, f1, f0 / fps, (f1 + step) / fps, times)

    for tid in np.unique(tids[sel_idx]):
        if tid < 0:
            runs += [make(np.array([i]), int(tid)) for i in sel_idx[tids[sel_idx] == tid]]
            continue
        rows = np.flatnonzero(considered & (tids == tid))
        rows = rows[np.argsort(c["frame"][rows], kind="stable")]
        selected = mask[rows]
        frames = c["frame"][rows]
        # a new run starts at a selected row whose predecessor is unselected, absent or too far back
        prev_sel = np.concatenate(([False], selected[:-1]))
        gap = np.concatenate(([max_gap + 1], np.diff(frames)))
        start = selected & (~prev_sel | (gap > max_gap))
        run_id = np.cumsum(start)
        for k in np.unique(run_id[selected]):
            runs.append(make(rows[selected & (run_id == k)], int(tid)))
    runs.sort(key=lambda r: (r.first_frame, r.track_id))
    return runs
