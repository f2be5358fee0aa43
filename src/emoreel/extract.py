"""Extract what the user asked for from a results folder, without re-running any model.

* :func:`select` turns a :class:`Selection` ("happy faces of Anna, prob >= 0.6,
  at least 1 s in a row") into a row mask over ``results.csv``;
* :func:`find_runs` groups selected rows into continuous runs per track;
* :func:`write_crops`, :func:`write_clips`, :func:`write_reel`, :func:`contact_sheet`
  and :func:`annotate` write the files.

Clips are cut by source frame index, never by seeking to a time: a segment
``[a, b]`` holds exactly source frames ``a..b``.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .align import align_face
from .draw import draw_frame, text_box, timecode
from .emotion import InputSpec, default_model_path, read_card
from .errors import DataError, InputError, OutputError
from .results import Results
from .types import EMOTIONS, Observation
from .video import VideoWriter, open_source, probe, read_frames


@dataclass
class Selection:
    """Which observations to extract."""

    emotion: str
    raw: bool = False  # per-frame label instead of the smoothed one
    min_prob: float = 0.0
    person: str | None = None
    tracks: tuple[int, ...] = ()
    start: float | None = None
    end: float | None = None
    min_duration: float = 0.0  # seconds the track must hold the emotion in a row


@dataclass
class Run:
    """Consecutive selected rows of one track."""

    track_id: int
    person: str
    emotion: str
    rows: np.ndarray  # row indices into the results, in frame order
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float


@dataclass
class Segment:
    """A clip: source frames ``first..last`` (inclusive), with the runs it covers."""

    first: int
    last: int
    runs: list[Run] = field(default_factory=list)

    def caption(self, fps: float) -> str:
        who = sorted({r.person or f"track {r.track_id}" for r in self.runs})
        emotions = sorted({r.emotion for r in self.runs})
        return f"{timecode(self.first / fps)}  {', '.join(who)}  {'/'.join(emotions)}"


def stride(res: Results) -> int:
    return int(res.meta.get("params", {}).get("every", 1) or 1)


def select(res: Results, sel: Selection) -> np.ndarray:
    """Boolean mask of the rows matching ``sel``; unknown emotion/person names raise :class:`InputError`."""
    if sel.emotion not in EMOTIONS:
        raise InputError(f"unknown emotion '{sel.emotion}'; valid: {', '.join(EMOTIONS)}")
    c = res.cols
    if sel.person is not None and sel.person not in res.persons():
        known = ", ".join(res.persons()) or "none (analyze with --known-faces to name people)"
        raise InputError(f"unknown person '{sel.person}'; people in these results: {known}")
    if not 0 <= sel.min_prob <= 1:
        raise InputError("--min-prob must be between 0 and 1")
    label = c["emotion"] if sel.raw else c["emotion_smooth"]
    prob = c[sel.emotion] if sel.raw else c["smooth_prob"]
    mask = (c["accepted"] == 1) & (label == sel.emotion) & (np.nan_to_num(prob, nan=0.0) >= sel.min_prob)
    if sel.person is not None:
        mask &= c["person"] == sel.person
    if sel.tracks:
        mask &= np.isin(c["track_id"], list(sel.tracks))
    if sel.start is not None:
        mask &= c["time_s"] >= sel.start
    if sel.end is not None:
        mask &= c["time_s"] <= sel.end
    if sel.min_duration > 0:
        keep = np.zeros_like(mask)
        for run in find_runs(res, mask):
            if run.end_s - run.start_s >= sel.min_duration:
                keep[run.rows] = True
        mask = keep
    return mask


def find_runs(res: Results, mask: np.ndarray, max_gap: int | None = None) -> list[Run]:
    """Continuous runs of selected rows per track (a gap of more than ``max_gap`` frames splits a run).

    ``max_gap`` defaults to twice the analysis stride, so one missed processed frame doesn't split a run.
    The end time of a run includes its last frame's duration.
    """
    c = res.cols
    fps = res.fps or 1.0
    step = stride(res)
    max_gap = max_gap or 2 * step
    label = c["emotion_smooth"]
    runs: list[Run] = []
    idx = np.flatnonzero(mask)
    for tid in np.unique(c["track_id"][idx]):
        rows = idx[c["track_id"][idx] == tid]
        rows = rows[np.argsort(c["frame"][rows], kind="stable")]
        frames = c["frame"][rows]
        breaks = np.flatnonzero(np.diff(frames) > max_gap) + 1
        for part in np.split(rows, breaks):
            f0, f1 = int(c["frame"][part[0]]), int(c["frame"][part[-1]])
            runs.append(Run(int(tid), str(c["person"][part[0]]), str(label[part[0]] or c["emotion"][part[0]]),
                            part, f0, f1, f0 / fps, (f1 + step) / fps))  # fmt: skip
    runs.sort(key=lambda r: (r.first_frame, r.track_id))
    return runs


def segments(runs: list[Run], fps: float, frame_count: int, pad_s: float = 0.5, merge_gap_s: float = 1.0) -> list[Segment]:
    """Padded runs as frame ranges; ranges closer than ``merge_gap_s`` (any tracks) are merged."""
    pad, gap = int(round(pad_s * fps)), int(round(merge_gap_s * fps))
    last_frame = frame_count - 1 if frame_count else None
    out: list[Segment] = []
    for r in sorted(runs, key=lambda r: r.first_frame):
        a = max(r.first_frame - pad, 0)
        b = r.last_frame + pad
        if last_frame is not None:
            b = min(b, last_frame)
        if out and a - out[-1].last <= gap:
            out[-1].last = max(out[-1].last, b)
            out[-1].runs.append(r)
        else:
            out.append(Segment(a, b, [r]))
    return out


# ---- the source video -------------------------------------------------------------------


def resolve_video(res: Results, video: str | Path | None = None) -> Path:
    """The analyzed video: from run.json, or ``video`` if it moved; refused if it doesn't match."""
    inp = res.meta.get("input", {})
    if inp.get("kind") == "camera":
        raise InputError("these results come from a camera: there is no video to cut from")
    path = Path(video) if video else Path(inp.get("path", ""))
    if not path.exists():
        hint = "" if video else " (use --video PATH if it moved)"
        raise InputError(f"source video {path} not found{hint}")
    if inp.get("kind") == "images":
        return path
    info = probe(path)
    diffs = []
    if (info.width, info.height) != (inp.get("width"), inp.get("height")):
        diffs.append(f"size {info.width}x{info.height}, results say {inp.get('width')}x{inp.get('height')}")
    n = inp.get("frame_count") or 0
    if n and abs(info.frame_count - n) > 2:
        diffs.append(f"{info.frame_count} frames, results say {n}")
    if diffs:
        raise InputError(f"{path} does not match these results: {'; '.join(diffs)}")
    return path


# ---- outputs ------------------------------------------------------------------------------


class OutputDir:
    """Write into a hidden temporary folder, then move it to ``path`` on success (never half-written)."""

    def __init__(self, path: str | Path, force: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output {self.path} exists and is not a folder")
        if self.path.exists() and any(self.path.iterdir()) and not force:
            raise OutputError(f"output folder {self.path} is not empty; use --force to replace it")
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
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)


def best_per_track(res: Results, mask: np.ndarray, k: int, raw: bool = False, emotion: str = "") -> np.ndarray:
    """The ``k`` best selected rows of each track.

    Ranked by probability, discounted when blurrier than the track's median sharpness; ties go to the sharper.
    """
    c = res.cols
    out = np.zeros_like(mask)
    prob = np.nan_to_num(c[emotion] if raw and emotion else c["smooth_prob"])
    for tid in np.unique(c["track_id"][mask]):
        rows = np.flatnonzero(mask & (c["track_id"] == tid))
        sharp = np.nan_to_num(c["sharpness"][rows])
        med = float(np.median(sharp)) or 1.0
        score = prob[rows] * np.minimum(1.0, sharp / med)
        out[rows[np.lexsort((-sharp, -score))[:k]]] = True  # ties go to the sharper crop
    return out


def crop_name(o: Observation, emotion: str, prob: float) -> str:
    person = (o.person or "unknown").replace(os.sep, "_").replace(" ", "_")
    return f"t{o.time_s:08.3f}_f{o.frame:06d}_track{o.track_id:03d}_{person}_{emotion}_{prob:.2f}.png"


def _box_crop(img: np.ndarray, o: Observation, margin: float, size: int | None) -> np.ndarray:
    cx, cy = o.x + o.w / 2, o.y + o.h / 2
    side = max(o.w, o.h) * (1 + 2 * margin)
    x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    pad = max(0, -x1, -y1, x1 + s - img.shape[1], y1 + s - img.shape[0])
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1 = x1 + pad, y1 + pad
    crop = img[y1 : y1 + s, x1 : x1 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if size else crop


def write_crops(
    res: Results, mask: np.ndarray, video: Path, out_dir: Path, emotion: str, raw: bool = False,
    margin: float = 0.25, size: int | None = 112, grey48: bool = False,
) -> list[tuple[Path, Observation, np.ndarray]]:  # fmt: skip
    """One PNG per selected row, plus ``manifest.csv``; returns ``(path, observation, image)`` per crop."""
    spec = InputSpec.from_card(read_card(default_model_path())) if grey48 else None
    by_frame: dict[int, list[tuple[int, Observation]]] = {}
    for i, o in zip(np.flatnonzero(mask), res.rows(mask)):
        by_frame.setdefault(o.frame, []).append((int(i), o))
    crops_dir = out_dir / "crops"
    crops_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out_dir / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "row", "frame", "time_s", "track_id", "person", "emotion", "prob", "x", "y", "w", "h"])
        for frame in read_frames(video, sorted(by_frame)):
            for i, o in by_frame[frame.index]:
                prob = o.probs[EMOTIONS.index(emotion)] if raw else o.smooth_prob
                if grey48 and not any(math.isnan(v) for v in o.eyes):
                    img = align_face(frame.image, o.eyes[:2], o.eyes[2:], spec, margin=0.0)
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                elif grey48:
                    img = cv2.cvtColor(_box_crop(frame.image, o, 0.0, 48), cv2.COLOR_BGR2GRAY)
                else:
                    img = _box_crop(frame.image, o, margin, size)
                path = crops_dir / crop_name(o, emotion, prob)
                if not cv2.imwrite(str(path), img):
                    raise OutputError(f"cannot write {path}")
                w.writerow([f"crops/{path.name}", i, o.frame, f"{o.time_s:.6f}", o.track_id, o.person, emotion,
                            f"{prob:.4f}", f"{o.x:.1f}", f"{o.y:.1f}", f"{o.w:.1f}", f"{o.h:.1f}"])  # fmt: skip
                written.append((path, o, img))
    missing = int(mask.sum()) - len(written)
    if missing:
        raise DataError(f"{video} ended before frame {max(by_frame)}; {missing} crops could not be cut")
    return written


def contact_sheet(crops: list[tuple[Path, Observation, np.ndarray]], path: Path, cols: int = 8, tile: int = 112) -> tuple[int, int]:
    """A grid PNG of the crops with a caption under each; returns ``(rows, cols)``."""
    n = len(crops)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    cap = 18
    sheet = np.full((rows * (tile + cap), cols * tile, 3), 255, np.uint8)
    for k, (p, o, img) in enumerate(crops):
        r, c = divmod(k, cols)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
        sheet[r * (tile + cap) : r * (tile + cap) + tile, c * tile : (c + 1) * tile] = cv2.resize(img, (tile, tile))
        text = f"{timecode(o.time_s)} #{o.track_id}"
        cv2.putText(sheet, text, (c * tile + 3, r * (tile + cap) + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), sheet):
        raise OutputError(f"cannot write {path}")
    return rows, cols


def _frames_of(video: Path, segs: list[Segment]):
    wanted = [f for s in segs for f in range(s.first, s.last + 1)]
    return read_frames(video, wanted)


def write_clips(video: Path, segs: list[Segment], out_dir: Path, fps) -> list[Path]:
    """One video file per segment, exactly its source frames."""
    info = probe(video)
    paths = []
    clips = out_dir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    frames = _frames_of(video, segs)
    for k, s in enumerate(segs, 1):
        p = clips / f"clip_{k:03d}_{s.first / float(fps):09.3f}-{(s.last + 1) / float(fps):09.3f}.mp4"
        with VideoWriter(p, info.fps, (info.width, info.height)) as w:
            for _ in range(s.first, s.last + 1):
                fr = next(frames, None)
                if fr is None:
                    raise DataError(f"{video} ended before frame {s.last}")
                w.write(fr.image)
        paths.append(p)
    return paths


def write_reel(video: Path, segs: list[Segment], path: Path) -> int:
    """All segments joined into one video with a caption per segment; returns the frame count."""
    info = probe(video)
    fps = float(info.fps)
    n = 0
    with VideoWriter(path, info.fps, (info.width, info.height)) as w:
        frames = _frames_of(video, segs)
        for s in segs:
            caption = s.caption(fps)
            for _ in range(s.first, s.last + 1):
                fr = next(frames, None)
                if fr is None:
                    raise DataError(f"{video} ended before frame {s.last}")
                img = fr.image.copy()
                text_box(img, caption, (8, img.shape[0] - 10), (30, 30, 30), scale=0.6)
                w.write(img)
                n += 1
    return n


def annotate(res: Results, video: Path, out_path: Path, progress=None) -> int:
    """The source video with every face drawn; returns frames written.

    With ``--every N`` analyses, a track's last box is held for up to N frames, so
    overlays don't blink on frames that were not analyzed.
    """
    by_frame: dict[int, list[Observation]] = {}
    for o in res.rows():
        by_frame.setdefault(o.frame, []).append(o)
    hold = stride(res)
    n = 0
    with open_source(video) as src:
        total = src.info.frame_count
        current: list[Observation] = []
        last_frame = -(10**9)
        with VideoWriter(out_path, src.info.fps, (src.info.width, src.info.height)) as w:
            for fr in src:
                if fr.index in by_frame:
                    current, last_frame = by_frame[fr.index], fr.index
                elif fr.index - last_frame >= hold:
                    current = []
                w.write(draw_frame(fr.image, current, timecode(fr.time_s)))
                n += 1
                if progress:
                    progress(n, total)
    return n
