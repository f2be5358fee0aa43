"""Runs (:mod:`emoreel.outputs.selection`) as clips: :func:`segments` pads runs into source frame
ranges, merges close ones (never across a shot cut, nor below a least share of the emotion),
and :func:`fill_on_screen` names everyone on screen for the reel's captions.

A segment ``[a, b]`` holds exactly source frames ``a..b``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..results import Results
from .draw import timecode
from .selection import Run


DEFAULT_MIN_SHARE = 0.6
"""Least share of a merged segment's (unpadded) frames that must show the selected emotion."""


@dataclass
class Segment:
    """A clip: source frames ``first..last`` (inclusive), with the runs it covers."""

    first: int
    last: int
    runs: list[Run] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.last - self.first + 1

    on_screen: list[str] = field(default_factory=list)  # everyone seen in first..last (see :func:`fill_on_screen`)

    def who(self) -> str:
        """The people (or tracks) whose runs the segment holds."""
        return ", ".join(sorted({_name(r.person, r.track_id) for r in self.runs}))

    def others(self) -> list[str]:
        """Everyone else on screen in the segment's frames."""
        mine = {_name(r.person, r.track_id) for r in self.runs}
        return [n for n in self.on_screen if n not in mine]

    def emotions(self) -> str:
        return "/".join(sorted({r.emotion for r in self.runs}))

    def caption(self, time_s: float) -> str:
        """The reel caption of a frame at ``time_s``: time, person(s), emotion, and who else is on screen."""
        others = self.others()
        return f"{timecode(time_s)}  {self.who()}  {self.emotions()}" + (f"  (with {', '.join(others)})" if others else "")


def _name(person: str, track_id: int) -> str:
    return person if person and person not in ("unknown", "unidentified") else f"track {track_id}"


def recorded_cuts(res: Results) -> list[int]:
    """Shot cuts (first frame of each new shot) recorded by analyze in run.json; [] for older results."""
    try:
        return sorted({int(f) for f in res.meta.get("cuts") or []})
    except (TypeError, ValueError):
        return []


def segments(
    runs: list[Run], fps: float, frame_count: int, pad_s: float = 0.5, merge_gap_s: float = 1.0, step: int = 1,
    cuts: list[int] | tuple[int, ...] = (), min_share: float = DEFAULT_MIN_SHARE,
    other_frames: dict[int, np.ndarray] | None = None,
) -> list[Segment]:  # fmt: skip
    """Padded runs as source frame ranges; ranges (of any tracks) closer than ``merge_gap_s`` are merged.

    A run's last processed frame stands for ``step`` source frames (``--every``), so it
    reaches ``last_frame + step - 1`` before padding. Ranges are clipped to the video
    and never cross a shot cut (``cuts``: the first frame of each new shot, see
    :func:`recorded_cuts`): padding stops at the cut and segments in different shots
    are never merged. Merging also stops where fewer than ``min_share`` of the frames
    from the first run's start to the last run's end (padding not counted) would be
    inside a run; segments left apart that way are trimmed so they don't overlap.
    ``other_frames`` (:func:`emoreel.outputs.selection.other_emotion_frames`): per track, the frames
    where it shows another emotion; a run's padding stops before them, and two runs of one face are
    never merged across them, so the happy reel never shows that face's sad moment as if it were happy.
    """
    if not pad_s >= 0 or not merge_gap_s >= 0:
        raise InputError("--pad and --merge-gap must be >= 0")
    if not 0 <= min_share <= 1:
        raise InputError(f"--min-share must be between 0 and 1 (got {min_share})")
    fps = float(fps) or 1.0
    pad, gap = int(round(pad_s * fps)), int(round(merge_gap_s * fps))
    last_frame = frame_count - 1 if frame_count else None
    cut_list = sorted(int(c) for c in cuts)
    out: list[Segment] = []
    shot: list[int] = []  # the shot of each segment in out
    spans: list[list[tuple[int, int]]] = []  # the unpadded frame spans of each segment's runs
    for r in sorted(runs, key=lambda r: (r.first_frame, r.track_id)):
        lo, hi = r.first_frame, r.last_frame + step - 1
        k = bisect.bisect_right(cut_list, lo)  # the run's shot: after k cuts
        shot_first = cut_list[k - 1] if k else 0
        after = bisect.bisect_right(cut_list, hi)  # a run never spans a cut unless the tracker didn't reset
        shot_last = cut_list[after] - 1 if after < len(cut_list) else None
        a = max(lo - pad, shot_first, 0)
        b = hi + pad
        other = (other_frames or {}).get(r.track_id)
        if other is not None and len(other):
            j = bisect.bisect_left(other, lo)
            if j:
                a = max(a, min(lo, int(other[j - 1]) + 1))
            j = bisect.bisect_right(other, r.last_frame)
            if j < len(other):
                b = min(b, max(hi, int(other[j]) - 1))
        if shot_last is not None:
            b = min(b, shot_last)
        if last_frame is not None:
            b = min(b, last_frame)
            if a > b:
                continue
        if (out and shot[-1] == k and a - out[-1].last - 1 <= gap and _share(spans[-1] + [(lo, hi)]) >= min_share - 1e-9
                and not _other_between(other_frames, out[-1].runs, r, lo)):
            out[-1].last = max(out[-1].last, b)  # frames between them <= gap (overlaps always merge)
            out[-1].runs.append(r)
            spans[-1].append((lo, hi))
            continue
        if out and a <= out[-1].last:  # kept apart for too little of the emotion: the paddings meet halfway
            pe = max(e for _, e in spans[-1])  # < lo: a run overlapping the segment's runs always keeps the share
            out[-1].last = min(out[-1].last, max(pe, (pe + lo) // 2))
            a = max(a, out[-1].last + 1)
        out.append(Segment(a, b, [r]))
        shot.append(k)
        spans.append([(lo, hi)])
    return out


def _other_between(other_frames: dict[int, np.ndarray] | None, runs: list[Run], new: Run, before: int) -> bool:
    """Whether the face of ``new`` also has a run in ``runs`` and shows another emotion between that run's end
    and frame ``before``: its two runs are then never merged across that moment (a happy clip would show it sad)."""
    other = (other_frames or {}).get(new.track_id)
    mine = [r.last_frame for r in runs if r.track_id == new.track_id]
    if other is None or not len(other) or not mine:
        return False
    return bisect.bisect_right(other, max(mine)) < bisect.bisect_left(other, before)


def _share(spans: list[tuple[int, int]]) -> float:
    """Share of the frames from the first span's start to the last one's end that some span covers."""
    first, last = min(s[0] for s in spans), max(s[1] for s in spans)
    covered = np.zeros(last - first + 1, bool)
    for lo, hi in spans:
        covered[lo - first : hi - first + 1] = True
    return float(covered.mean())


def fill_on_screen(res: Results, segs: list[Segment]) -> list[Segment]:
    """Set each segment's ``on_screen``: every person (or unnamed track) with a face row in its frames."""
    c = res.cols
    frames, tids, persons = c["frame"], c["track_id"], c["person"]
    for s in segs:
        rows = np.flatnonzero((frames >= s.first) & (frames <= s.last))
        s.on_screen = sorted({_name(str(persons[i]), int(tids[i])) for i in rows})
    return segs
