"""Extract what the user asked for from a results folder, without re-running any model.

* :func:`select` turns a :class:`Selection` ("happy faces of Anna, prob >= 0.6,
  at least 1 s in a row") into a row mask over ``results.csv``;
* :func:`find_runs` groups selected rows into continuous runs per track, and
  :func:`segments` turns runs into padded, merged frame ranges (clips);
* :func:`write_crops`, :func:`contact_sheet`, :func:`write_segments` (clips and
  the highlight reel) and :func:`annotate` write the files;
* :func:`live_frames` runs the real pipeline on a source and yields drawn frames
  (what ``emoreel live`` shows).

Clips are cut by source frame index, never by seeking to a time: a segment
``[a, b]`` holds exactly source frames ``a..b``, decoded in one forward pass.
Their times (clip names, segments.csv) and sound are the frames' presentation times;
a variable-frame-rate span is written at a constant rate with each frame held until the
next one plays (see :func:`frame_timeline` and :class:`emoreel.encode.Timeline`).
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .align import align_face
from .decode import DEFAULT_SWITCH_COST, decode_results
from .draw import draw_frame, text_box, timecode
from .emotion import DEFAULT_EYES, InputSpec, default_model_path, read_card
from .errors import DataError, InputError, ModelError, OutputError
from .results import Results, csv_safe
from .types import EMOTIONS, Frame, Observation
from .encode import SoundTrack, Timeline, VideoWriter
from .video import check_image_names, exact_fps, open_source, probe, read_frames

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]


# ---- selection ------------------------------------------------------------------------------


@dataclass
class Selection:
    """Which observations to extract.

    Labels come from the offline per-track decoding (:mod:`emoreel.decode`) by
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
        from .names import resolve_name

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


def confident_min_prob(res: Results) -> float:
    """The default confidence of a selection: the analysis' ``--min-prob`` (run.json), else today's default."""
    from .config import AnalyzeOptions

    try:
        v = float((res.meta.get("params") or {}).get("min_prob"))
        if 0 <= v <= 1:
            return v
    except (TypeError, ValueError):
        pass
    return AnalyzeOptions().min_prob


def recorded_cuts(res: Results) -> list[int]:
    """Shot cuts (first frame of each new shot) recorded by analyze in run.json; [] for older results."""
    try:
        return sorted({int(f) for f in res.meta.get("cuts") or []})
    except (TypeError, ValueError):
        return []


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


def select(res: Results, sel: Selection) -> np.ndarray:
    """Boolean mask of the rows matching ``sel``; unknown emotion/person names raise :class:`InputError`."""
    sel.check()
    c = res.cols
    if sel.person is not None and sel.person not in res.persons():
        known = ", ".join(res.persons()) or "none (analyze with --known-faces to name people)"
        raise InputError(f"unknown person '{sel.person}'; people in these results: {known}")
    label, prob = selection_labels(res, sel)
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


DEFAULT_MIN_SHARE = 0.6
"""Least share of a merged segment's (unpadded) frames that must show the selected emotion."""


def segments(
    runs: list[Run], fps: float, frame_count: int, pad_s: float = 0.5, merge_gap_s: float = 1.0, step: int = 1,
    cuts: list[int] | tuple[int, ...] = (), min_share: float = DEFAULT_MIN_SHARE,
) -> list[Segment]:  # fmt: skip
    """Padded runs as source frame ranges; ranges (of any tracks) closer than ``merge_gap_s`` are merged.

    A run's last processed frame stands for ``step`` source frames (``--every``), so it
    reaches ``last_frame + step - 1`` before padding. Ranges are clipped to the video
    and never cross a shot cut (``cuts``: the first frame of each new shot, see
    :func:`recorded_cuts`): padding stops at the cut and segments in different shots
    are never merged. Merging also stops where fewer than ``min_share`` of the frames
    from the first run's start to the last run's end (padding not counted) would be
    inside a run; segments left apart that way are trimmed so they don't overlap.
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
        if shot_last is not None:
            b = min(b, shot_last)
        if last_frame is not None:
            b = min(b, last_frame)
            if a > b:
                continue
        if out and shot[-1] == k and a - out[-1].last - 1 <= gap and _share(spans[-1] + [(lo, hi)]) >= min_share - 1e-9:
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


# ---- the source video -------------------------------------------------------------------


def resolve_video(res: Results, video: str | Path | None = None) -> Path:
    """The analyzed video: from run.json, or ``video`` if it moved; refused if it doesn't match.

    Width and height must be equal, the frame count within 2 (containers round), and the
    frame rate equal (times in results.csv are ``frame / fps``).
    """
    inp = res.meta.get("input", {}) or {}
    kind = inp.get("kind")
    recording = res.dir / inp["recording"] if inp.get("recording") else None
    use_recording = False
    if video:
        path = Path(video)
    elif recording is not None and (kind == "camera" or not Path(inp.get("path") or "").is_file()):
        path, use_recording = recording, True  # the frames analyze read, kept by --record
    elif kind == "camera":
        raise InputError("these results come from a camera run without --record: there is no video file "
                         "(give a recording with --video PATH)")
    elif inp.get("path"):
        path = Path(inp["path"])
    else:
        raise InputError(f"{res.dir / 'run.json'} names no input video; give it with --video PATH")
    if not path.exists():
        hint = "" if video else " (use --video PATH if it moved)"
        raise InputError(f"source video {path} not found{hint}")
    if kind == "images" and len(res):  # each image must still be the one analyzed at its position
        check_image_names(path, dict(zip(res.cols["frame"].tolist(), res.cols["source"].tolist())))
    info = probe(path)
    diffs = []
    if (info.width, info.height) != (inp.get("width"), inp.get("height")):
        diffs.append(f"size {info.width}x{info.height}, results say {inp.get('width')}x{inp.get('height')}")
    n = inp.get("frame_count") or 0
    if kind != "camera" and not use_recording and n and abs(info.frame_count - n) > 2:
        diffs.append(f"{info.frame_count} frames, results say {n}")
    want_fps = _results_fps(res)
    if kind == "video" and want_fps and info.fps and abs(float(info.fps) - float(want_fps)) > 0.01:
        diffs.append(f"{float(info.fps):.3f} fps, results say {float(want_fps):.3f}")
    if diffs:
        raise InputError(f"{path} does not match these results: {'; '.join(diffs)}")
    return path


def _results_fps(res: Results) -> Fraction:
    inp = res.meta.get("input", {}) or {}
    try:
        return Fraction(str(inp["fps_fraction"]))
    except (KeyError, ValueError, ZeroDivisionError):
        return exact_fps(res.fps)


# ---- outputs ------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


OUTPUT_MANIFEST = ".emoreel-files"  # what emoreel wrote into an extract folder: all that --force may remove


def _foreign_files(folder: Path) -> list[str]:
    """Files (and links, folders) in ``folder`` that its emoreel manifest does not list."""
    try:
        own = set((folder / OUTPUT_MANIFEST).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        own = set()
    own.add(OUTPUT_MANIFEST)
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if f.is_symlink() or (f.is_file() and rel not in own) or (not f.is_file() and not f.is_dir()):
            out.append(rel)
        elif f.is_dir() and not any(o.startswith(rel + "/") for o in own):
            out.append(rel + "/")
    return out


class OutputDir:
    """Write into a hidden temporary folder beside ``path``, moved into place only on success.

    An existing non-empty ``path`` is refused without ``force`` (and replaced as a
    whole with it). ``protect`` lists paths (the results folder, the video) that
    ``path`` must not be or contain.
    """

    def __init__(self, path: str | Path, force: bool = False, protect: tuple[Path, ...] = ()):
        self.path = Path(path)
        for p in protect:
            if _inside(Path(p), self.path):
                raise OutputError(f"output folder {self.path} would replace {p}; choose another folder")
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output {self.path} exists and is not a folder")
        if self.path.exists() and any(self.path.iterdir()) and not force:
            raise OutputError(f"output folder {self.path} is not empty; use --force to replace it")
        if self.path.exists() and force:
            foreign = _foreign_files(self.path)
            if foreign:
                raise OutputError(f"output folder {self.path} holds files emoreel did not write ({foreign[0]}"
                                  f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); "
                                  "--force only replaces emoreel's own output: choose another folder")  # fmt: skip
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path}: {e.strerror}") from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            files = sorted(f.relative_to(self.tmp).as_posix() for f in self.tmp.rglob("*") if f.is_file())
            (self.tmp / OUTPUT_MANIFEST).write_text("".join(f + "\n" for f in files), encoding="utf-8")
            if self.path.exists():
                old = self.path.with_name(f".{self.path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.path)
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(f"cannot move the output into {self.path}: {e.strerror}") from None


def best_per_track(res: Results, mask: np.ndarray, k: int, raw: bool = False, emotion: str = "",
                   gap_s: float = 0.0, runs: list[Run] | None = None) -> np.ndarray:  # fmt: skip
    """The ``k`` best selected rows of each track, spread over time.

    Score = probability of the selected emotion (smoothed, or raw with ``raw``) times
    ``min(1, sharpness / the track's median sharpness)``: blurrier-than-usual crops are
    discounted, sharper ones are not boosted past their probability. Ties go to the sharper.
    Rows are taken best first, skipping any less than ``gap_s`` seconds from one already
    taken of its track, and with ``runs`` (:func:`find_runs`) any from a run already
    represented: neighbouring frames are near-duplicates. A track may so give fewer than ``k``.
    """
    if k < 1:
        raise InputError("--best must be at least 1")
    if not gap_s >= 0:
        raise InputError(f"--best-gap must be >= 0 seconds (got {gap_s})")
    c = res.cols
    out = np.zeros_like(mask)
    prob = np.nan_to_num(c[emotion] if raw and emotion else c["smooth_prob"])
    run_of = np.full(len(mask), -1)
    for i, r in enumerate(runs or []):
        run_of[r.rows] = i
    for tid in np.unique(c["track_id"][mask]):
        rows = np.flatnonzero(mask & (c["track_id"] == tid))
        sharp = np.nan_to_num(c["sharpness"][rows])
        med = float(np.median(sharp)) or 1.0
        score = prob[rows] * np.minimum(1.0, sharp / med)
        taken_t: list[float] = []
        taken_runs: set[int] = set()
        for i in rows[np.lexsort((-sharp, -score))]:
            t, run = float(c["time_s"][i]), int(run_of[i])
            if any(abs(t - u) < gap_s for u in taken_t) or (run >= 0 and run in taken_runs):
                continue
            out[i] = True
            taken_t.append(t)
            if run >= 0:
                taken_runs.add(run)
            if len(taken_t) == k:
                break
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "unknown"


def crop_name(o: Observation, emotion: str, prob: float) -> str:
    """``t0001.233_f000037_track003_anna_happy_0.92.png``: sorts by time, says who and what.

    Without ``--known-faces`` (no person) the track alone names the face: ``..._track003_happy_0.92.png``;
    ``unknown`` (no reference matched) and ``unidentified`` (never tried: too small) are kept.
    """
    who = f"_{_safe(o.person)}" if o.person else ""
    return f"t{o.time_s:08.3f}_f{o.frame:06d}_track{o.track_id:03d}{who}_{emotion}_{prob:.2f}.png"


def _box_crop(img: np.ndarray, o: Observation, margin: float, size: int | None) -> np.ndarray:
    """A square around the face box, ``margin`` (fraction of the box side) added each side."""
    cx, cy = o.x + o.w / 2, o.y + o.h / 2
    s = max(1, int(round(max(o.w, o.h) * (1 + 2 * margin))))
    x1, y1 = int(round(cx - s / 2)), int(round(cy - s / 2))
    pad = max(0, -x1, -y1, x1 + s - img.shape[1], y1 + s - img.shape[0])
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1 = x1 + pad, y1 + pad
    crop = img[y1 : y1 + s, x1 : x1 + s]
    if size:
        interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop


def training_spec(res: Results | None = None, size: int = 48) -> InputSpec:
    """A grey ``size`` x ``size`` spec with the eye template of the model that made ``res``.

    The card beside run.json's model path is used when it is still there, else the
    shipped model's card, else the generic template.
    """
    candidates = []
    path = ((res.meta.get("model") or {}).get("path") if res is not None else None) or None
    if path:
        candidates.append(Path(path))
    candidates.append(default_model_path())
    for p in candidates:
        try:
            spec = InputSpec.from_card(read_card(p))
            return dataclasses.replace(spec, width=size, height=size, colour="grey")
        except (ModelError, OSError, KeyError, TypeError, ValueError):
            continue
    return InputSpec(size, size, "grey", "NCHW", 1 / 255, (0.0,), (1.0,), DEFAULT_EYES)


@dataclass
class Crop:
    """One written crop: its file, the source row and a thumbnail for the contact sheet."""

    path: Path
    row: int
    obs: Observation
    prob: float
    thumb: np.ndarray


MANIFEST_COLUMNS = ("file", "row", "frame", "time_s", "track_id", "person", "emotion", "prob",
                    "x", "y", "w", "h", "sharpness")  # fmt: skip


def write_crops(
    res: Results, mask: np.ndarray, video: Path, out_dir: Path, emotion: str, raw: bool = False,
    margin: float | None = None, size: int | None = 112, grey48: bool = False, thumb: int = 112,
) -> list[Crop]:  # fmt: skip
    """One PNG per selected row in ``out_dir/crops``, plus ``out_dir/manifest.csv``.

    Colour crops are squares around the face box (``margin`` default 0.25 of the box
    side each way), resized to ``size`` (None = native). ``grey48`` crops are aligned
    by the eyes to the model's eye template at 48x48 grey, like the training data
    (``margin`` default: the analysis' own ``--margin``). The manifest's ``row`` is the
    0-based data row of results.csv. Frames are read in one ascending pass.
    """
    if margin is not None and not margin >= 0:
        raise InputError(f"--margin must be >= 0 (got {margin})")
    if size is not None and size < 0:
        raise InputError(f"--size must be >= 0 (got {size})")
    spec = training_spec(res) if grey48 else None
    if margin is None:
        margin = float(res.meta.get("params", {}).get("margin", 0.0) or 0.0) if grey48 else 0.25
    by_frame: dict[int, list[tuple[int, Observation]]] = {}
    for i, o in zip(np.flatnonzero(mask), res.rows(mask)):
        by_frame.setdefault(o.frame, []).append((int(i), o))
    crops_dir = out_dir / "crops"
    crops_dir.mkdir(parents=True, exist_ok=True)
    written: list[Crop] = []
    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for frame in read_frames(video, sorted(by_frame)):
            for i, o in sorted(by_frame[frame.index], key=lambda t: t[1].track_id):
                prob = o.probs[EMOTIONS.index(emotion)] if raw else o.smooth_prob
                if grey48:
                    if not any(math.isnan(v) for v in o.eyes):
                        img = align_face(frame.image, o.eyes[:2], o.eyes[2:], spec, margin=margin)
                    else:
                        img = _box_crop(frame.image, o, margin, 48)
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                else:
                    img = _box_crop(frame.image, o, margin, size or None)
                path = crops_dir / crop_name(o, emotion, prob)
                if not cv2.imwrite(str(path), img):
                    raise OutputError(f"cannot write {path}")
                w.writerow([f"crops/{path.name}", i, o.frame, f"{o.time_s:.6f}", o.track_id, csv_safe(o.person), emotion,
                            f"{prob:.4f}", f"{o.x:.1f}", f"{o.y:.1f}", f"{o.w:.1f}", f"{o.h:.1f}",
                            "" if math.isnan(o.sharpness) else f"{o.sharpness:.1f}"])  # fmt: skip
                small = cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA)
                written.append(Crop(path, i, o, float(prob), small))
    missing = int(mask.sum()) - len(written)
    if missing:
        raise DataError(f"{video} ended before frame {max(by_frame)}; {missing} crops could not be cut")
    return written


SHEET_CAPTION_PX = 18


def contact_sheet(crops: list[Crop], path: Path, cols: int = 8, tile: int = 112) -> tuple[int, int]:
    """A grid PNG of the crops (time order), a caption under each; returns ``(rows, cols)``.

    ``cols`` is at most ``cols`` and at most the number of crops; ``rows = ceil(n / cols)``;
    the image is ``rows * (tile + 18)`` by ``cols * tile`` pixels.
    """
    n = len(crops)
    if n == 0:
        raise InputError("no crops for a contact sheet")
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    cap = SHEET_CAPTION_PX
    sheet = np.full((rows * (tile + cap), cols * tile, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for k, cr in enumerate(crops):
        r, c = divmod(k, cols)
        img = cr.thumb if cr.thumb.shape[:2] == (tile, tile) else cv2.resize(cr.thumb, (tile, tile), interpolation=cv2.INTER_AREA)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
        y0 = r * (tile + cap)
        sheet[y0 : y0 + tile, c * tile : (c + 1) * tile] = img
        text = f"{timecode(cr.obs.time_s)} #{cr.obs.track_id} {cr.prob:.2f}"
        scale = 0.38
        while scale > 0.2 and cv2.getTextSize(text, font, scale, 1)[0][0] > tile - 4:
            scale -= 0.02
        cv2.putText(sheet, text, (c * tile + 2, y0 + tile + 13), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), sheet):
        raise OutputError(f"cannot write {path}")
    return rows, cols


def clip_name(k: int, seg: Segment, fps: Fraction | float, timeline: Timeline | None = None) -> str:
    """``clip_003_12.345-15.678.mp4``: number, then start and end (end of the last frame) in seconds
    (presentation times with a variable-rate ``timeline``)."""
    if timeline is not None and timeline.times is not None:
        return f"clip_{k:03d}_{timeline.time(seg.first):.3f}-{timeline.end(seg.last):.3f}.mp4"
    fps = float(fps) or 1.0
    return f"clip_{k:03d}_{seg.first / fps:.3f}-{(seg.last + 1) / fps:.3f}.mp4"


def frame_timeline(video: Path, segs: list[Segment], fps: Fraction) -> Timeline:
    """When the frames of ``segs`` play: :class:`Timeline` ``(fps)`` for a constant-rate video,
    else their presentation times read from ``video``.

    The runs' rows carry results.csv's ``time_s`` (the decoder's presentation times): when each
    is within a quarter frame of ``frame / fps`` the video is taken as constant-rate and
    clips are cut exactly as frame numbers say. Otherwise every frame of the segments, the one
    after each and frame 0 (the origin of the sound) are read for their times, and the spans
    are written at the source's usual rate: the median step between frames, at least ``fps``
    (OpenCV's average), so no frame is dropped and holes repeat the frame before them.
    """
    fps = Fraction(fps) or Fraction(30)
    tol = 0.25 / float(fps)
    known = {f: t for s in segs for r in s.runs for f, t in r.times.items()}
    if all(abs(t - f / float(fps)) <= tol for f, t in known.items()):
        return Timeline(fps)
    wanted = {0} | {f for s in segs for f in range(s.first, s.last + 2)}
    times = {fr.index: fr.time_s for fr in read_frames(video, wanted)}
    if all(abs(t - f / float(fps)) <= tol for f, t in times.items()):
        return Timeline(fps)
    steps = [times[f + 1] - times[f] for f in times if f + 1 in times and times[f + 1] > times[f]]
    rate = max(fps, exact_fps(1 / float(np.median(steps)))) if steps else fps
    return Timeline(rate, times, times.get(0, 0.0))


SEGMENT_COLUMNS = ("segment", "first_frame", "last_frame", "frames", "start_s", "end_s", "tracks", "persons",
                   "emotions", "clip", "reel_first_frame", "on_screen")  # fmt: skip


def write_segments(
    video: Path, segs: list[Segment], clips_dir: Path | None = None, reel: Path | None = None,
    table: Path | None = None, progress: ProgressFn | None = None, sound: bool | SoundTrack = True,
) -> tuple[list[Path], int]:  # fmt: skip
    """Clips (one file per segment in ``clips_dir``) and/or the ``reel`` (all segments joined,
    captioned with time, person and emotion), in one forward pass over ``video``.

    Each segment holds exactly source frames ``first..last``. ``table`` (CSV) lists the
    segments with their clip name and where each starts in the reel. Clips and reel carry
    the video's sound, cut to the same frames, unless ``sound`` is False (see
    :mod:`emoreel.encode`). Returns ``(clip paths, reel frame count)``.

    Times (clip names, the table's ``start_s``/``end_s``) and the sound are the frames'
    presentation times. A variable-frame-rate video (see :func:`frame_timeline`) is written at
    a constant rate with each source frame repeated until the next one plays, so a hole in its
    timestamps lasts as long as in the source and the sound stays in sync throughout; the
    table's ``frames`` still counts source frames, ``reel_first_frame`` counts written ones.
    """
    info = probe(video)
    size = (info.width, info.height)
    timeline = frame_timeline(video, segs, info.fps or Fraction(30))
    fps = timeline.fps  # the rate clips are written at: the source's, or its usual rate when it varies
    track = _sound(video, info.fps or Fraction(30), sound)
    if track is not None and timeline.times is not None:
        track = dataclasses.replace(track, timeline=timeline)
    wanted = [f for s in segs for f in range(s.first, s.last + 1)]
    frames: Iterator[Frame] = read_frames(video, wanted)
    clips: list[Path] = []
    reel_w = VideoWriter(reel, fps, size, track, [(s.first, s.last) for s in segs]) if reel is not None else None
    total = len(wanted)
    done = reel_n = 0
    rows = []
    ok = False
    try:
        if clips_dir is not None:
            clips_dir.mkdir(parents=True, exist_ok=True)
        for k, s in enumerate(segs, 1):
            clip_w = None
            if clips_dir is not None:
                clip_w = VideoWriter(clips_dir / clip_name(k, s, fps, timeline), fps, size, track, [(s.first, s.last)])
            start_s, end_s = timeline.time(s.first), timeline.end(s.last)
            copies = timeline.copies(s.first, s.last)
            rows.append([k, s.first, s.last, s.frames, f"{start_s:.3f}", f"{end_s:.3f}",
                         " ".join(str(t) for t in sorted({r.track_id for r in s.runs})), csv_safe(s.who()), s.emotions(),
                         f"clips/{clip_w.path.name}" if clip_w else "", reel_n if reel_w else "",
                         ", ".join(s.on_screen)])  # fmt: skip
            try:
                for idx in range(s.first, s.last + 1):
                    fr = next(frames, None)
                    if fr is None or fr.index != idx:
                        raise DataError(f"{video} could not be read at frame {idx} (segment {k} needs {s.first}..{s.last})")
                    n = copies[idx - s.first]  # 1, except in a variable-rate span
                    if clip_w is not None:
                        for _ in range(n):
                            clip_w.write(fr.image)
                    if reel_w is not None and n:
                        img = fr.image.copy()
                        scale = max(0.5, img.shape[0] / 720)
                        text_box(img, s.caption(fr.time_s), (8, img.shape[0] - int(10 * scale)), (30, 30, 30), scale=0.6 * scale)
                        for _ in range(n):
                            reel_w.write(img)
                        reel_n += n
                    done += 1
                    if progress:
                        progress(done, total)
            except BaseException:
                if clip_w is not None:
                    clip_w.close(keep=False)
                raise
            if clip_w is not None:
                clip_w.close()
                clips.append(clip_w.path)
        if table is not None:
            with open(table, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(SEGMENT_COLUMNS)
                w.writerows(rows)
        ok = True
    finally:
        frames.close()
        if reel_w is not None:
            reel_w.close(keep=ok)
    return clips, reel_n


def write_clips(video: Path, segs: list[Segment], out_dir: Path, sound: bool = True) -> list[Path]:
    """One video file per segment in ``out_dir/clips``, exactly its source frames (and their sound)."""
    return write_segments(video, segs, clips_dir=out_dir / "clips", sound=sound)[0]


def write_reel(video: Path, segs: list[Segment], path: Path, sound: bool = True) -> int:
    """All segments joined into one captioned video (with their sound); returns its frame count."""
    return write_segments(video, segs, reel=path, sound=sound)[1]


def _sound(video: Path, fps: Fraction, sound: bool | SoundTrack) -> SoundTrack | None:
    if isinstance(sound, SoundTrack):
        return sound
    return SoundTrack.of(video, fps) if sound else None


# ---- annotate and live --------------------------------------------------------------------------


def annotate(res: Results, video: Path, out_path: Path, progress: ProgressFn | None = None, show_time: bool = False,
             sound: bool | SoundTrack = True) -> int:  # fmt: skip
    """The source video with every face of ``res`` drawn (see :mod:`emoreel.draw`); returns frames written.

    Every source frame is written. Frames of an analysis with ``--every 1`` that have no
    row are copied unchanged. With ``--every N`` the overlays of the latest processed
    frame are held over the N-1 frames that were not analyzed (boxes at their last
    analyzed place), so they don't blink; frames outside the analyzed range are copied
    unchanged. ``show_time`` burns a timecode into every frame. The video's sound is kept
    unless ``sound`` is False.
    """
    by_frame: dict[int, list[Observation]] = {}
    for o in res.rows():
        by_frame.setdefault(o.frame, []).append(o)
    hold = stride(res)
    n = 0
    with open_source(video) as src:
        total = src.info.frame_count or None
        current: list[Observation] = []
        last = -(10**9)
        track = _sound(video, src.info.fps, sound) if total else None
        size = (src.info.width, src.info.height)
        with VideoWriter(out_path, src.info.fps, size, track, [(0, total - 1)] if total else None) as w:
            for fr in src:
                if fr.index in by_frame:
                    current, last = by_frame[fr.index], fr.index
                elif fr.index - last >= hold:
                    current = []
                if current or show_time:
                    w.write(draw_frame(fr.image, current, timecode(fr.time_s) if show_time else ""))
                else:
                    w.write(fr.image)
                n += 1
                if progress:
                    progress(n, total)
            if n == 0:  # nothing to keep
                raise DataError(f"{video} could not be decoded at all; nothing written")
        if src.truncated:  # the file is kept (its sound ends with its last frame): say what is missing
            raise DataError(f"{video} could not be decoded past frame {src.last_index} of {total}: {out_path} holds "
                            f"only the {n} frames before it")  # fmt: skip
    return n


def live_frames(source, analyzer, show_time: bool = True) -> Iterator[tuple[Frame, list[Observation], np.ndarray]]:
    """Run ``analyzer`` (an :class:`emoreel.pipeline.Analyzer`) on each frame of ``source``
    (an open :class:`~emoreel.video.VideoSource`) and yield ``(frame, observations, drawn image)``."""
    for frame in source:
        obs = analyzer.process(frame)
        yield frame, obs, draw_frame(frame.image, obs, timecode(frame.time_s) if show_time else "")


def gui_available() -> tuple[bool, str]:
    """Whether a cv2 window can be opened here, and if not, why."""
    info = cv2.getBuildInformation()
    m = re.search(r"^\s*GUI:\s*(\S+)", info, re.M)
    if m and m.group(1).upper() == "NONE":
        return False, "this OpenCV build has no GUI (opencv-python-headless)"
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.uname().sysname != "Darwin":
        return False, "no display (DISPLAY is not set)"
    return True, ""
