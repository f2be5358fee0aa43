"""Continue and join runs: ``analyze --resume`` and the merge of a video analysed in parts.

Both rest on one idea: re-analyse a few frames that are already written (the
*overlap*), match the faces found there to the written rows by box overlap (IoU),
and carry the written track ids forward. The tracker then starts from real
detections (velocities, landmarks), and the smoother is replayed over the
written probabilities of each track, so labels continue across the seam.

* :func:`plan_resume` / :class:`ResumePlan`: an interrupted results folder continues after
  its last finished frame (``analyze_to_dir(..., resume=True)``).
* :func:`part_ranges` and :func:`merge_parts`: time ranges of one video analysed in
  parallel, merged into one results folder that reads as if analysed in one go.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..config import AnalyzeOptions
from ..errors import DataError, InputError, OutputError
from ..results import COLUMNS, RESULTS_CSV, RUN_JSON, SCHEMA, atomic_write_text, now_iso, write_error
from ..model.smooth import EmotionSmoother
from ..faces.track import iou_matrix, linear_assignment
from ..types import EMOTIONS

OVERLAP_FRAMES = 12
"""Processed frames re-analysed before a seam (a resume point or the start of a part)."""

MIN_IOU = 0.5
"""Least box overlap for a face in the overlap to count as the same face as a written row."""

RESULT_NEUTRAL_PARAMS = ("threads", "photo_threshold")
"""Options that never change the results of a video (threads only change speed; photo_threshold is for photos,
and only videos are resumed, split or skipped as done); ignored when comparing runs."""

LEGACY_PARAMS = {"views": "mirror"}
"""What runs recorded before these options existed did (compared as if recorded; any other missing option differs)."""

_WARM_ID = 1_000_000_000  # warm-up track ids are offset so they never meet a written id


def detect_interval(o: AnalyzeOptions) -> int:
    """The detector's keyframe interval ``analyze`` uses with ``o`` (part starts stay on its keyframes)."""
    if o.detect_every:
        return int(o.detect_every)
    if getattr(o, "exact", True):
        return 1
    from .schedule import DETECT_EVERY

    return DETECT_EVERY


def _effective(params: dict) -> dict:
    """``params`` as they act: legacy options filled in (:data:`LEGACY_PARAMS`), the views dropped when
    ``tta`` is off (one view either way) and ``tta_margin`` unless the views are the mirror alone."""
    p = {**LEGACY_PARAMS, **params}
    if not p.get("tta", True):
        p.pop("views", None)
    if p.get("views") != "mirror":
        p.pop("tta_margin", None)
    return p


def differing_params(a: dict, b: dict) -> list[str]:
    """Names of the analysis options whose values differ between two run.json ``params``.

    Options that do not act on the results are left out (:func:`_effective`, :data:`RESULT_NEUTRAL_PARAMS`);
    one that a run of an older emoreel does not record counts as what it did (:data:`LEGACY_PARAMS`),
    any other missing one as different.
    """
    a, b = _effective(a), _effective(b)
    keys = (set(a) | set(b)) - set(RESULT_NEUTRAL_PARAMS)
    diff = {k for k in keys if a.get(k) != b.get(k)}
    return sorted(diff - {"tta_margin"} if "views" in diff else diff)  # the margin acts with one of the views only


def read_meta(out_dir: str | Path) -> dict | None:
    """run.json of ``out_dir`` (None when absent or unreadable)."""
    try:
        meta = json.loads((Path(out_dir) / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("schema") == SCHEMA else None


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and complete rows of a results.csv (a torn last line is dropped)."""
    with open(path, newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        header = next(r, None)
        if header is None:
            raise DataError(f"{path} is empty (no header)")
        return header, [row for row in r if len(row) == len(header)]


def _box(row: list[str], ix: dict[str, int]) -> list[float]:
    x, y, w, h = (float(row[ix[c]]) for c in ("x", "y", "w", "h"))
    return [x, y, x + w, y + h]


def match_ids(votes: dict[int, dict[int, int]]) -> dict[int, int]:
    """One written id per new id from ``votes[new][written] = frames matched``: most votes first, each id used once."""
    pairs = sorted(((n, new, old) for new, d in votes.items() for old, n in d.items()), reverse=True)
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, new, old in pairs:
        if new not in out and old not in used:
            out[new] = old
            used.add(old)
    return out


def vote_frame(votes: dict[int, dict[int, int]], new: list[tuple[list[float], int]], old: list[tuple[list[float], int]]) -> None:
    """Add one frame's IoU matches between ``new`` and ``old`` (box, track id) lists to ``votes``."""
    new = [(b, t) for b, t in new if t >= 0]
    old = [(b, t) for b, t in old if t >= 0]
    if not new or not old:
        return
    iou = iou_matrix(np.array([b for b, _ in new], float), np.array([b for b, _ in old], float))
    for r, c in linear_assignment(1 - iou):
        if iou[r, c] >= MIN_IOU:
            d = votes.setdefault(new[r][1], {})
            d[old[c][1]] = d.get(old[c][1], 0) + 1


def replay(rows: list[list[str]], ix: dict[str, int], smoother: EmotionSmoother, write_from: dict[int, int] | None = None) -> None:
    """Run ``smoother`` over the accepted rows (in order) of each track.

    With ``write_from`` (track id -> frame), rows of those tracks from that frame on get the
    replayed ``emotion_smooth``/``smooth_prob``; other rows are left as they are.
    """
    pcols = [ix[e] for e in EMOTIONS]
    for row in rows:
        tid = int(row[ix["track_id"]])
        if tid < 0 or row[ix["accepted"]] != "1":
            continue
        try:
            p = np.array([float(row[j]) for j in pcols])
        except ValueError:
            continue
        label, prob = smoother.update(tid, p)
        if write_from is not None and tid in write_from and int(row[ix["frame"]]) >= write_from[tid]:
            row[ix["emotion_smooth"]] = label
            row[ix["smooth_prob"]] = "" if math.isnan(prob) else f"{prob:.4f}"


def _smoother(o: AnalyzeOptions, classes=EMOTIONS) -> EmotionSmoother:
    return EmotionSmoother(classes, repeat=o.repeat, ema=o.ema, min_prob=o.min_prob)


# -- resume ---------------------------------------------------------------------------------


class SeamTracker:
    """Wraps a :class:`~emoreel.faces.track.Tracker` so that a resumed run keeps the written track ids.

    Frames before ``until`` are the overlap: their faces are matched to the written rows
    (``written[frame]`` = [(box, id)]) and get throw-away ids. At the first frame from
    ``until`` on, every re-found track takes its written id, new ones count on from
    ``next_id``, and ``on_seam`` runs (it puts the replayed smoother in place).
    """

    def __init__(self, inner, written: dict[int, list[tuple[list[float], int]]], until: int, next_id: int, on_seam=None):
        self.inner, self.written, self.until, self.next_id = inner, written, until, next_id
        self.on_seam = on_seam
        self.votes: dict[int, dict[int, int]] = {}
        self.map: dict[int, int] | None = None

    def _ids(self, local: np.ndarray) -> np.ndarray:
        if self.map is None:
            return np.where(local >= 0, local + _WARM_ID, local)
        out = np.array(local, np.int64)
        for i, t in enumerate(local):
            if t >= 0:
                if t not in self.map:
                    self.map[int(t)] = self.next_id
                    self.next_id += 1
                out[i] = self.map[int(t)]
        return out

    def _seal(self) -> None:
        if self.map is None:
            self.map = match_ids(self.votes)
            for t in sorted(int(tr.id) for tr in getattr(self.inner, "tracks", [])):
                if t not in self.map:  # tracks alive at the seam that were not written: new ids, in birth order
                    self.map[t] = self.next_id
                    self.next_id += 1
            if self.on_seam is not None:
                self.on_seam({t + _WARM_ID: g for t, g in self.map.items()})

    def update(self, faces, frame_index: int) -> np.ndarray:
        local = self.inner.update(faces, frame_index)
        if frame_index < self.until:
            new = [(list(map(float, faces.boxes[i])), int(local[i])) for i in range(len(faces))]
            vote_frame(self.votes, new, self.written.get(frame_index, []))
        else:
            self._seal()
        faces.track_ids = self._ids(local)
        return faces.track_ids

    def predict_faces(self, frame_index: int):
        faces = self.inner.predict_faces(frame_index)
        if frame_index >= self.until:
            self._seal()
        faces.track_ids = self._ids(np.asarray(faces.track_ids, np.int64))
        return faces

    def reset(self) -> None:
        self.inner.reset()

    def ended(self) -> list[int]:
        ids = self.inner.ended()
        if self.map is None:
            return [t + _WARM_ID for t in ids]
        return [self.map[t] for t in ids if t in self.map]


@dataclass
class ResumePlan:
    """Where an interrupted results folder continues, and what it already holds."""

    out: Path
    meta: dict
    header: list[str]
    rows: list[list[str]]  # the rows kept (frames before ``resume_frame``)
    resume_frame: int  # first frame written by the resumed run
    warm_start: int  # first frame read (the overlap starts here)
    frames_done: int  # processed frames kept
    complete: bool = False
    cuts: list[int] = field(default_factory=list)

    @property
    def fps(self) -> Fraction:
        return Fraction(str((self.meta.get("input") or {}).get("fps_fraction") or "0"))

    def source_options(self, o: AnalyzeOptions) -> AnalyzeOptions:
        """``o`` with the source starting at the overlap and counting only the frames left."""
        left = None
        if o.max_frames:
            left = max(1, o.max_frames - self.frames_done + self.overlap(o))
        start = float(Fraction(self.warm_start) / self.fps) if self.warm_start and self.fps else o.start
        return replace(o, start=start, max_frames=left)

    def written(self) -> tuple[int, int]:
        """(frames, rows) already in results.csv."""
        return self.frames_done, len(self.rows)

    def summary(self):
        """The :class:`~emoreel.analysis.analyzer.RunSummary` of a run that was already complete."""
        from .analyzer import RunSummary

        faces, acc, tracks = self.counts()
        return RunSummary(self.out, self.frames_done, faces, acc, len(tracks), 0.0, True)

    def apply(self, analyzer, o: AnalyzeOptions, meta: dict) -> None:
        """Check that ``meta`` (the new run's) matches, rewrite results.csv with the kept rows, seed ``analyzer``."""
        self.check(meta)
        write_rows(self.out / RESULTS_CSV, self.header, self.rows)
        self.install(analyzer, o)
        meta["expected_frames"] = self.meta.get("expected_frames")
        meta["resumed"] = [*(self.meta.get("resumed") or []), {"frame": self.resume_frame, "at": now_iso(),
                                                               "overlap_from": self.warm_start}]
        meta["first_started"] = self.meta.get("first_started") or self.meta.get("started")

    def overlap(self, o: AnalyzeOptions) -> int:
        return (self.resume_frame - self.warm_start) // max(1, o.every)

    def check(self, meta: dict) -> None:
        """Refuse to continue a run made with other options, another model or another input."""
        old = self.meta
        diff = differing_params(old.get("params", {}), meta["params"])
        if diff:
            was = ", ".join(f"{k}={_effective(old.get('params', {})).get(k)!r}" for k in diff)
            raise InputError(f"cannot resume {self.out}: it was analysed with {was}; give the same options, or --force to start over")
        if (old.get("model") or {}).get("sha256") != meta["model"]["sha256"]:
            raise InputError(f"cannot resume {self.out}: it was analysed with another model ({old.get('model', {}).get('name')}); "
                             "use --force to start over")
        was = old.get("fast_schedule", None if (old.get("params") or {}).get("exact") else 1)  # absent: before 2
        if was != meta.get("fast_schedule"):
            raise InputError(f"cannot resume {self.out}: it was analysed by an earlier emoreel whose fast default "
                             "works differently; use --force to start over (or --exact for both)")
        a, b = old.get("input") or {}, meta["input"]
        if a.get("path") != b.get("path") or a.get("frame_count") != b.get("frame_count"):
            raise InputError(f"cannot resume {self.out}: it holds results of {a.get('path')}, not {b.get('path')}; "
                             "use --force to start over")

    def install(self, analyzer, o: AnalyzeOptions) -> None:
        """Put the written ids, the replayed smoother and the recorded cuts into ``analyzer``."""
        ix = {c: i for i, c in enumerate(self.header)}
        written: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
        ids = [int(r[ix["track_id"]]) for r in self.rows]
        for r, t in zip(self.rows, ids):
            f = int(r[ix["frame"]])
            if f >= self.warm_start:
                written[f].append((_box(r, ix), t))
        smoother = _smoother(o, analyzer.model.classes)
        replay(self.rows, ix, smoother)

        def seam(ids: dict[int, int]):
            analyzer.smoother = smoother
            sched = getattr(analyzer, "schedule", None)
            if sched is not None:  # the fast mode's per-track state follows its tracks onto the written ids
                sched._tracks = {ids[t]: st for t, st in sched._tracks.items() if t in ids}
                sched._last_ids = {ids[t] for t in sched._last_ids if t in ids}

        analyzer.tracker = SeamTracker(analyzer.tracker, written, self.resume_frame, max(ids, default=0) + 1, seam)
        analyzer.cut_frames[:] = [c for c in self.cuts if c <= self.warm_start]

    def counts(self) -> tuple[int, int, set[int]]:
        """(faces, accepted faces, track ids) of the kept rows."""
        ix = {c: i for i, c in enumerate(self.header)}
        acc = sum(r[ix["accepted"]] == "1" for r in self.rows)
        return len(self.rows), acc, {int(r[ix["track_id"]]) for r in self.rows}


def plan_resume(out_dir: str | Path, o: AnalyzeOptions) -> ResumePlan | None:
    """How to continue the run in ``out_dir`` (None: nothing written yet, start afresh).

    The last frame with rows may have been cut short by a kill, so unless run.json
    says the run stopped cleanly after it, that frame is analysed again. The kept
    rows are written back (atomically) before the run continues.
    """
    out = Path(out_dir)
    meta = read_meta(out)
    if meta is None or not (out / RESULTS_CSV).exists():
        return None
    if (meta.get("input") or {}).get("kind") != "video":
        raise InputError(f"--resume continues video runs; {out} holds a {meta.get('input', {}).get('kind')} run (use --force)")
    if o.record:
        raise InputError("--resume cannot continue a --record run (the recording would have a gap)")
    header, rows = read_rows(out / RESULTS_CSV)
    if tuple(header[: len(COLUMNS)]) != COLUMNS[: len(header)]:
        raise DataError(f"{out / RESULTS_CSV} is from another version; use --force to start over")
    ix = {c: i for i, c in enumerate(header)}
    fps = Fraction(str((meta.get("input") or {}).get("fps_fraction") or "0"))
    every = max(1, o.every)
    first = int(round(o.start * fps)) if o.start and fps else 0
    if meta.get("complete"):
        return ResumePlan(out, meta, header, rows, 0, 0, int(meta.get("frames_processed") or 0), complete=True)
    last_row = max((int(r[ix["frame"]]) for r in rows), default=None)
    clean = meta.get("finished") is not None and meta.get("last_frame") is not None
    if clean and (last_row is None or int(meta["last_frame"]) >= last_row):
        resume = int(meta["last_frame"]) + every
    elif last_row is not None:
        resume = last_row  # may be partial: analysed again
    else:
        return None
    rows = [r for r in rows if int(r[ix["frame"]]) < resume]
    done = max(0, -(-(resume - first) // every))
    de = detect_interval(o)
    warm_proc = max(0, (done - OVERLAP_FRAMES) // de * de)  # keeps detect_every's keyframes where they were
    plan = ResumePlan(out, meta, header, rows, resume, first + warm_proc * every, done, cuts=list(meta.get("cuts") or []))
    return plan


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a results.csv atomically (:class:`OutputError` if it cannot be written; no temporary file is left)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


# -- one video in parts -----------------------------------------------------------------------


@dataclass
class Part:
    """A time range of one video: frames ``[own_start, own_end)`` are its own, read from ``read_start``."""

    index: int
    read_start: int
    own_start: int
    own_end: int | None  # None: to the end of the video

    def options(self, o: AnalyzeOptions, fps: Fraction) -> AnalyzeOptions:
        end = float(Fraction(self.own_end) / fps) if self.own_end is not None else o.end
        return replace(o, start=float(Fraction(self.read_start) / fps) if self.read_start else o.start, end=end, max_frames=None)

    def to_dict(self) -> dict:
        return {"index": self.index, "read_start": self.read_start, "own_start": self.own_start, "own_end": self.own_end}


def part_ranges(frame_count: int, fps: Fraction, o: AnalyzeOptions, split: int | None = None,
                chunk_minutes: float | None = None) -> list[Part]:  # fmt: skip
    """Cut the frames ``analyze`` would process into ``split`` parts (or parts of ``chunk_minutes``).

    Part starts lie on the ``--every`` grid and on ``--detect-every`` keyframes; each part
    after the first re-reads :data:`OVERLAP_FRAMES` processed frames before its own start.
    A video too short for the parts is analysed in fewer parts (at least one).
    """
    if o.max_frames:
        raise InputError("--split / --chunk-minutes cannot be combined with --max-frames (use --end)")
    every, de = max(1, o.every), detect_interval(o)
    first = int(round(o.start * fps)) if o.start else 0
    stop = frame_count
    if o.end is not None:
        stop = min(stop, int(round(o.end * fps))) if stop else int(round(o.end * fps))
    total = max(0, -(-(stop - first) // every))  # processed frames
    if chunk_minutes is not None:
        if chunk_minutes <= 0:
            raise InputError("--chunk-minutes must be > 0")
        split = max(1, math.ceil(total * every / (chunk_minutes * 60 * float(fps))))
    split = max(1, int(split or 1))
    min_len = 3 * OVERLAP_FRAMES
    split = max(1, min(split, total // min_len))
    starts = sorted({(round(k * total / split) // de) * de for k in range(split)})
    warm_max = -(-OVERLAP_FRAMES // de) * de  # processed frames re-read, a multiple of detect_every
    parts = []
    for k, p in enumerate(starts):
        own_end = first + starts[k + 1] * every if k + 1 < len(starts) else None
        parts.append(Part(k, first + (p - min(p, warm_max)) * every, first + p * every, own_end))
    return parts


def merge_parts(parts: list[Part], part_dirs: list[Path], out_dir: Path, o: AnalyzeOptions) -> dict:
    """Merge the results folders of ``parts`` (in order) into ``out_dir``; returns the merged run.json.

    Rows are kept from the part that owns their frame. Track ids of part ``k`` are matched
    to part ``k-1``'s over the overlap frames by box IoU (:data:`MIN_IOU`, the
    pair seen in most frames wins); unmatched tracks get new ids in order of appearance,
    as one run numbers them. Tracks that cross a seam get their smoothed label replayed
    from the seam on, and the person most of their rows name.
    """
    metas = []
    header: list[str] | None = None
    merged: list[list[str]] = []
    next_id = 1
    prev_tail: dict[int, list[tuple[list[float], int]]] = {}
    stitched_from: dict[int, int] = {}  # global id -> first frame after a seam
    cuts: list[int] = []
    frames = 0
    for part, d in zip(parts, part_dirs):
        meta = read_meta(d)
        if meta is None or not meta.get("complete"):
            raise DataError(f"part {part.index} in {d} is not complete")
        metas.append(meta)
        try:
            h, rows = read_rows(d / RESULTS_CSV)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"part {part.index} in {d}: cannot read {RESULTS_CSV}: {getattr(e, 'strerror', None) or e}") from None
        if header is None:
            header = h
        elif h != header:
            raise DataError(f"part {part.index} in {d} has other columns")
        ix = {c: i for i, c in enumerate(header)}
        votes: dict[int, dict[int, int]] = {}
        if part.index:
            by_frame: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
            for r in rows:
                f = int(r[ix["frame"]])
                if f < part.own_start:
                    by_frame[f].append((_box(r, ix), int(r[ix["track_id"]])))
            for f, new in by_frame.items():
                vote_frame(votes, new, prev_tail.get(f, []))
        mapping = match_ids(votes)
        for t, g in mapping.items():
            stitched_from.setdefault(g, part.own_start)
        local_to_global: dict[int, int] = dict(mapping)
        tail: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
        tail_from = part.own_end - OVERLAP_FRAMES * max(1, o.every) * 2 if part.own_end is not None else None
        for r in rows:
            f = int(r[ix["frame"]])
            if f < part.own_start or (part.own_end is not None and f >= part.own_end):
                continue
            t = int(r[ix["track_id"]])
            if t >= 0:
                if t not in local_to_global:
                    local_to_global[t] = next_id
                    next_id += 1
                g = local_to_global[t]
                next_id = max(next_id, g + 1)
                r[ix["track_id"]] = str(g)
                if tail_from is not None and f >= tail_from:
                    tail[f].append((_box(r, ix), g))
            merged.append(r)
        prev_tail = tail
        cuts += [c for c in meta.get("cuts") or [] if c >= part.own_start and (part.own_end is None or c < part.own_end)]
        own = int(meta.get("frames_processed") or 0)
        if part.index:
            own -= (part.own_start - part.read_start) // max(1, o.every)
        frames += max(0, own)
    assert header is not None
    ix = {c: i for i, c in enumerate(header)}
    if stitched_from:
        replay(merged, ix, _smoother(o), write_from=stitched_from)
        votes_p: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in merged:
            t = int(r[ix["track_id"]])
            if t in stitched_from and r[ix["person"]]:
                votes_p[t][r[ix["person"]]] += 1
        persons = {}
        for t, d in votes_p.items():
            named = {p: n for p, n in d.items() if p != "unknown"} or d
            persons[t] = max(sorted(named), key=lambda p: named[p])
        if persons:
            for r in merged:
                t = int(r[ix["track_id"]])
                if t in persons:
                    r[ix["person"]] = persons[t]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out_dir}: {e.strerror or e}") from None
    write_rows(out_dir / RESULTS_CSV, header, merged)
    first = metas[0]
    tracks = {int(r[ix["track_id"]]) for r in merged}
    all_persons: dict[str, str] = {}
    for r in merged:
        if r[ix["person"]]:
            all_persons[r[ix["track_id"]]] = r[ix["person"]]
    meta = {
        **first,
        "params": o.to_dict(),
        "expected_frames": frames,
        "frames_processed": frames,
        "rows": len(merged),
        "cuts": sorted(set(cuts)),
        "tracks": len(tracks),
        "faces": len(merged),
        "started": min(m.get("started") or "" for m in metas),
        "finished": now_iso(),
        "complete": True,
        "split": {"parts": [p.to_dict() for p in parts], "overlap_frames": OVERLAP_FRAMES,
                  "stitched_tracks": len(stitched_from), "merged": now_iso()},
    }  # fmt: skip
    if all_persons:
        meta["persons"] = all_persons
    meta.pop("last_frame", None)
    try:
        atomic_write_text(out_dir / RUN_JSON, json.dumps(meta, indent=2, default=str) + "\n")
    except OSError as e:
        raise write_error(out_dir / RUN_JSON, e) from None
    return meta


def agreement(a_dir: str | Path, b_dir: str | Path) -> dict:
    """How close results folder ``b`` is to ``a`` (e.g. a split run to a sequential one).

    Rows are paired per frame by box IoU (>= :data:`MIN_IOU`). ``rows``: share of ``a``'s rows
    with a partner; ``emotion_smooth``/``emotion``: share of paired rows with the same label;
    ``track``: share of paired rows whose track id is the one ``b`` consistently uses for
    ``a``'s track (ids matched one to one, by most shared rows).
    """
    ha, ra = read_rows(Path(a_dir) / RESULTS_CSV)
    hb, rb = read_rows(Path(b_dir) / RESULTS_CSV)
    ia, ib = {c: i for i, c in enumerate(ha)}, {c: i for i, c in enumerate(hb)}
    fa, fb = defaultdict(list), defaultdict(list)
    for r in ra:
        fa[int(r[ia["frame"]])].append(r)
    for r in rb:
        fb[int(r[ib["frame"]])].append(r)
    pairs = []
    for f, rows_a in fa.items():
        rows_b = fb.get(f, [])
        if not rows_b:
            continue
        iou = iou_matrix(np.array([_box(r, ia) for r in rows_a]), np.array([_box(r, ib) for r in rows_b]))
        for i, j in linear_assignment(1 - iou):
            if iou[i, j] >= MIN_IOU:
                pairs.append((rows_a[i], rows_b[j]))
    votes: dict[int, dict[int, int]] = {}
    for x, y in pairs:
        d = votes.setdefault(int(x[ia["track_id"]]), {})
        d[int(y[ib["track_id"]])] = d.get(int(y[ib["track_id"]]), 0) + 1
    ids = match_ids(votes)
    n = max(1, len(pairs))
    return {
        "rows_a": len(ra), "rows_b": len(rb), "paired": len(pairs),
        "rows": len(pairs) / max(1, len(ra)),
        "emotion_smooth": sum(x[ia["emotion_smooth"]] == y[ib["emotion_smooth"]] for x, y in pairs) / n,
        "emotion": sum(x[ia["emotion"]] == y[ib["emotion"]] for x, y in pairs) / n,
        "track": sum(ids.get(int(x[ia["track_id"]])) == int(y[ib["track_id"]]) for x, y in pairs) / n,
        "same_track_ids": sum(int(x[ia["track_id"]]) == int(y[ib["track_id"]]) for x, y in pairs) / n,
    }  # fmt: skip
