"""One video in parts: :func:`part_ranges` cuts it into time ranges analysed in parallel (each
re-reading an overlap before its own start), and :func:`merge_parts` merges their results folders
into one that reads as if analysed in one go, carrying track ids and smoothing across each seam
(the same seam as ``--resume``: :mod:`.resume`). :func:`agreement` measures how close two results
folders of one video are (a split run against a sequential one).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..config import AnalyzeOptions
from ..errors import DataError, InputError, OutputError
from ..faces.track import iou_matrix, linear_assignment
from ..results import RESULTS_CSV, RUN_JSON, atomic_write_text, now_iso, write_error
from .resume import (MIN_IOU, OVERLAP_FRAMES, detect_interval, match_ids, read_meta, read_rows, replay, row_box,
                     smoother_for, vote_frame, write_rows)  # fmt: skip


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
                    by_frame[f].append((row_box(r, ix), int(r[ix["track_id"]])))
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
                    tail[f].append((row_box(r, ix), g))
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
        replay(merged, ix, smoother_for(o), write_from=stitched_from)
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
        iou = iou_matrix(np.array([row_box(r, ia) for r in rows_a]), np.array([row_box(r, ib) for r in rows_b]))
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
