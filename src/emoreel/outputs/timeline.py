"""Who is on screen when, from the results table: the report's rows (:class:`Entity`: a known
person, a track, or the pooled "other faces"), the video's clock, and each row's binned timeline,
share bar and time axis as SVG/HTML fragments (:mod:`.report` assembles the page).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..results import Results
from ..types import EMOTIONS
from .draw import emotion_hex

TIMELINE_BINS = 600
"""Most bins per timeline row."""
MIN_TRACK_S = 1.0
"""Unnamed tracks shorter than this (seconds on screen) are pooled into "other faces"."""
OTHER = "other faces"
NO_LABEL_HEX = "#bdbdbd"
"""Timeline colour for a face that is on screen but has no smoothed label."""

EMO_CODE = {e: i for i, e in enumerate(EMOTIONS)}
NO_LABEL = len(EMOTIONS)  # code of "face present, no label"
STATE_CHARS = "0123456-"  # per-bin state for the page's tooltip: emotion index, "-" no label ("." absent)
ROW_H = 100  # timeline viewBox height


@dataclass
class Entity:
    """A row of the report: a known person, one track, or the pooled "other faces"."""

    key: str  # DOM-safe id ("e0", "e1", ...)
    label: str
    kind: str  # "person", "track" or "other"
    rows: np.ndarray  # row indices, ascending
    tracks: list[int] = field(default_factory=list)
    screen_s: float = 0.0
    frames: int = 0  # processed frames with this face
    labelled: int = 0  # rows with a smoothed emotion label
    thumb_row: int = -1
    best: dict[str, int] = field(default_factory=dict)  # emotion -> row


@dataclass
class Clock:
    """The video's timing as the report needs it."""

    fps: float
    step: int  # processed every Nth frame
    total_frames: int
    duration: float

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.total_frames / self.step))


def clock_of(res: Results) -> Clock:
    inp = res.meta.get("input", {}) or {}
    fps = res.fps or 1.0
    step = max(1, int((res.meta.get("params", {}) or {}).get("every", 1) or 1))
    last = int(res.cols["frame"].max()) + 1 if len(res) else 0
    total = max(int(inp.get("frame_count") or 0), last)
    duration = float(inp.get("duration_s") or 0) or total / fps
    return Clock(fps, step, total, max(duration, total / fps))


def tc(seconds: float, decimals: int = 1) -> str:
    """``M:SS.s`` or ``H:MM:SS.s`` (``decimals`` digits after the second)."""
    scale = 10**decimals
    units = int(round(max(seconds, 0.0) * scale))
    whole, frac = divmod(units, scale)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return f"{out}.{frac:0{decimals}d}" if decimals else out


def find_entities(res: Results, clock: Clock, min_track_s: float, codes: np.ndarray) -> list[Entity]:
    """Group rows by person (when known) or by track; pool short and never-labelled tracks."""
    c = res.cols
    if not len(res):
        return []
    tid = c["track_id"]
    order = np.argsort(tid, kind="stable")  # stable: rows stay in frame order within a track
    uniq, starts = np.unique(tid[order], return_index=True)
    groups: dict[str, tuple[str, str, list[np.ndarray]]] = {}
    other: list[np.ndarray] = []
    for t, rows in zip(uniq.tolist(), np.split(order, starts[1:])):
        votes = Counter(p for p in c["person"][rows] if p and p not in ("unknown", "unidentified"))
        if votes:
            name = votes.most_common(1)[0][0]
            groups.setdefault(f"p:{name}", (name, "person", []))[2].append(rows)
            continue
        seen_s = len(np.unique(c["frame"][rows])) * clock.step / clock.fps
        if t < 0 or seen_s < min_track_s or not (codes[rows] < NO_LABEL).any():
            other.append(rows)
        else:
            groups[f"t:{t}"] = (f"track {t}", "track", [rows])
    ents = []
    for label, kind, parts in groups.values():
        ents.append(_entity(res, clock, codes, label, kind, parts))
    first = {id(e): int(res.cols["frame"][e.rows[0]]) for e in ents}
    ents.sort(key=lambda e: (e.kind != "person", -e.labelled, -e.frames, first[id(e)]))
    if other:
        ents.append(_entity(res, clock, codes, OTHER, "other", other))
    for i, e in enumerate(ents):
        e.key = f"e{i}"
    return ents


def _entity(res: Results, clock: Clock, codes: np.ndarray, label: str, kind: str, parts: list[np.ndarray]) -> Entity:
    rows = np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]
    frames = len(np.unique(res.cols["frame"][rows]))
    tracks = sorted({int(t) for t in np.unique(res.cols["track_id"][rows])})
    return Entity("", label, kind, rows, tracks, frames * clock.step / clock.fps, frames, int((codes[rows] < NO_LABEL).sum()))


def pick_rows(res: Results, e: Entity, codes: np.ndarray) -> None:
    """The thumbnail (a large, sharp, frontal face) and the best row per smoothed emotion."""
    c = res.cols
    rows = e.rows
    acc = rows[c["accepted"][rows] == 1]
    if not len(acc):
        e.thumb_row = int(rows[np.argmax(np.nan_to_num(c["w"][rows] * c["h"][rows]))])
        return
    sharp = np.nan_to_num(c["sharpness"][acc])
    e.thumb_row = int(acc[np.argmax(np.log1p(sharp) + np.nan_to_num(np.sqrt(c["w"][acc] * c["h"][acc])) / 100)])
    med = float(np.median(sharp)) or 1.0
    for k, emo in enumerate(EMOTIONS):
        cand = acc[codes[acc] == k]
        if len(cand):
            score = np.nan_to_num(c["smooth_prob"][cand]) * np.minimum(1.0, np.nan_to_num(c["sharpness"][cand]) / med)
            e.best[emo] = int(cand[np.argmax(score)])


def bins_of(res: Results, e: Entity, clock: Clock, bins: int) -> np.ndarray:
    """The bin of each of ``e``'s rows (integer arithmetic on frame indices: no empty bins between frames)."""
    s = res.cols["frame"][e.rows] // clock.step
    return np.minimum(s * bins // clock.steps, bins - 1)


def timeline_svg(res: Results, e: Entity, clock: Clock, bins: int, codes: np.ndarray, probs: bool = True) -> str:
    """One row's SVG: label runs, a grey "present" bar, the probability line and a hidden marker."""
    b = bins_of(res, e, clock, bins)
    code = codes[e.rows]
    counts = np.bincount(b * (NO_LABEL + 1) + code, minlength=bins * (NO_LABEL + 1)).reshape(bins, NO_LABEL + 1)
    psum = np.bincount(b * (NO_LABEL + 1) + code, weights=np.nan_to_num(res.cols["smooth_prob"][e.rows]), minlength=bins * (NO_LABEL + 1))
    psum = psum.reshape(bins, NO_LABEL + 1)
    lab = counts[:, :NO_LABEL]
    dom = lab.argmax(1)
    state = np.where(lab.sum(1) > 0, dom, np.where(counts[:, NO_LABEL] > 0, NO_LABEL, -1))
    cuts = np.flatnonzero(np.diff(state)) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [bins]])
    rects = []
    for a, z in zip(starts.tolist(), ends.tolist()):
        s = int(state[a])
        if s == NO_LABEL:
            rects.append(f'<rect x="{a}" y="{ROW_H - 22}" width="{z - a}" height="22" fill="{NO_LABEL_HEX}"/>')
        elif s >= 0:
            rects.append(f'<rect x="{a}" y="0" width="{z - a}" height="{ROW_H}" fill="{emotion_hex(EMOTIONS[s])}"/>')
    line = ""
    if probs:
        ok = state < NO_LABEL
        ok &= state >= 0
        p = np.zeros(bins)
        idx = np.flatnonzero(ok)
        p[idx] = psum[idx, dom[idx]] / counts[idx, dom[idx]]
        y = np.round(ROW_H * (1 - np.clip(p, 0, 1)) * 0.9 + ROW_H * 0.05).astype(int)
        segs, prev = [], -2
        for i in idx.tolist():  # step line: flat across each bin, joined between adjacent bins
            segs.append(f"{'L' if i == prev + 1 else 'M'}{i} {y[i]}H{i + 1}")
            prev = i
        if segs:
            line = f'<path class="p" d="{"".join(segs)}"/>'
    states = "".join(STATE_CHARS[s] if s >= 0 else "." for s in state.tolist())
    return (
        f'<svg class="tl" id="tl-{e.key}" viewBox="0 0 {bins} {ROW_H}" preserveAspectRatio="none" '
        f'shape-rendering="crispEdges" data-bins="{bins}" data-states="{states}">'
        f'<rect width="{bins}" height="{ROW_H}" fill="#f4f4f4"/>{"".join(rects)}{line}'
        f'<line class="marker" x1="-1" x2="-1" y1="0" y2="{ROW_H}"/></svg>'
    )


def share_bar(codes: np.ndarray) -> str:
    counts = np.bincount(codes[codes < NO_LABEL], minlength=NO_LABEL)
    total = int(counts.sum())
    if not total:
        return '<div class="bar empty">no emotion label (never accepted, or always unsure)</div>'
    spans = "".join(
        f'<span style="width:{100 * n / total:.2f}%;background:{emotion_hex(e)}" title="{e} {100 * n / total:.0f}%"></span>'
        for e, n in zip(EMOTIONS, counts.tolist())
        if n
    )
    top = ", ".join(f"{EMOTIONS[k]} {100 * counts[k] / total:.0f}%" for k in np.argsort(-counts, kind="stable")[:3] if counts[k])
    return f'<div class="bar">{spans}</div><div class="small">{top}</div>'


def _tick_step(duration: float) -> float:
    for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if duration / s <= 10:
            return s
    return 10 ** math.ceil(math.log10(duration / 10))


def axis_html(duration: float) -> str:
    if duration <= 0:
        return ""
    step = _tick_step(duration)
    dec = 1 if step < 1 else 0
    ticks = [k * step for k in range(int(duration / step + 1e-9) + 1)]
    spans = "".join(f'<span style="left:{100 * t / duration:.3f}%">{tc(t, dec)}</span>' for t in ticks if t <= duration * 0.97)
    return f'<div class="axis"><div class="ticks">{spans}<span class="end">{tc(duration, dec)}</span></div></div>'
