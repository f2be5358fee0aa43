"""Continue a run: ``analyze --resume``, and the seam it shares with the merge of a video analysed in parts.

Both rest on one idea: re-analyse a few frames that are already written (the
*overlap*), match the faces found there to the written rows by box overlap (IoU),
and carry the written track ids forward. The tracker then starts from real
detections (velocities, landmarks), and the smoother is replayed over the
written probabilities of each track, so labels continue across the seam.

* :func:`plan_resume` / :class:`ResumePlan`: an interrupted results folder continues after
  its last finished frame (``analyze_to_dir(..., resume=True)``).
* the seam itself (:class:`SeamTracker`, :func:`match_ids`, :func:`vote_frame`, :func:`replay`),
  which :mod:`.stitch` uses to merge the parts of one video.
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
from ..errors import DataError, InputError
from ..faces.track import iou_matrix, linear_assignment
from ..model.smooth import EmotionSmoother
from ..results import COLUMNS, RESULTS_CSV, RUN_JSON, SCHEMA, load_results, now_iso, write_error
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
    """run.json of ``out_dir`` (None when absent, unreadable or with entries of the wrong type)."""
    from ..results import check_meta

    path = Path(out_dir) / RUN_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        return None
    try:
        check_meta(meta, path)
    except DataError:
        return None
    return meta


def file_stamp(path: str | Path) -> dict:
    """What run.json records to notice a replaced input: its ``size`` and ``mtime_ns`` (empty if it cannot be read)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def same_file(recorded: dict, now: dict) -> bool:
    """The input that ``recorded`` (a run.json ``input``) describes is still ``now`` (a :func:`file_stamp`):
    same size and modification time (a run of an emoreel that did not record them counts as the same)."""
    return all(recorded.get(k) is None or recorded.get(k) == now.get(k) for k in ("size", "mtime_ns"))


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and complete rows of a results.csv (a torn last line is dropped)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # a byte-order mark: saved by a spreadsheet
        r = csv.reader(fh)
        header = next(r, None)
        if header is None:
            raise DataError(f"{path} is empty (no header)")
        return header, [row for row in r if len(row) == len(header)]


def row_box(row: list[str], ix: dict[str, int]) -> list[float]:
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


def smoother_for(o: AnalyzeOptions, classes=EMOTIONS) -> EmotionSmoother:
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
        if a.get("path") == b.get("path") and (a.get("frame_count") != b.get("frame_count") or not same_file(a, b)):
            raise InputError(f"cannot resume {self.out}: {b.get('path')} changed since it was analysed (its size, "
                             "modification time or frame count differ); use --force to start over")
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
                written[f].append((row_box(r, ix), t))
        smoother = smoother_for(o, analyzer.model.classes)
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
    if not (out / RUN_JSON).exists() or not (out / RESULTS_CSV).exists():
        return None
    try:
        meta = load_results(out).meta  # run.json's types and every row checked, as readers check them
    except DataError as e:
        raise DataError(f"cannot resume: {e}; use --force to start over") from None
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
