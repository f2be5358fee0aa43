"""results.csv and run.json: written incrementally by ``analyze``, read back by everything else.

``results.csv`` has one row per face per processed frame (columns in
:data:`COLUMNS`); rows are appended and flushed as each frame finishes, so an
interrupted run leaves a valid CSV. ``run.json`` describes the run and is
replaced atomically; its ``complete`` flag is true only after a run finished.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import DataError, OutputError
from .types import EMOTIONS, Observation

SCHEMA = "emoreel-results/1"
RESULTS_CSV = "results.csv"
RUN_JSON = "run.json"

RECORDING = "recording.mp4"  # analyze --record: every frame read, beside results.csv

COLUMNS: tuple[str, ...] = (
    "frame", "time_s", "track_id", "person", "match", "match_distance",
    "x", "y", "w", "h", "det_score",
    "eye_l_x", "eye_l_y", "eye_r_x", "eye_r_y",
    *EMOTIONS,
    "emotion", "emotion_prob", "emotion_smooth", "smooth_prob",
    "accepted", "reject_reason", "sharpness", "source",
)  # fmt: skip
"""results.csv columns, in order. ``eye_l``/``eye_r`` are the eyes on the image left/right; ``source``
is the image file (relative to the analyzed folder) or the video file's name."""

OPTIONAL_COLUMNS = ("source",)
"""Columns added after the first release: results without them still load (as empty strings)."""

_INT = {"frame", "track_id", "accepted"}
_STR = {"person", "match", "emotion", "emotion_smooth", "reject_reason", "source"}


def _f(v: float, nd: int) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def observation_row(o: Observation) -> list[str]:
    """An observation as CSV cells in :data:`COLUMNS` order."""
    return [
        str(o.frame), f"{o.time_s:.6f}", str(o.track_id), o.person, o.match, _f(o.match_distance, 4),
        _f(o.x, 1), _f(o.y, 1), _f(o.w, 1), _f(o.h, 1), _f(o.det_score, 4),
        *(_f(v, 1) for v in o.eyes),
        *(_f(float(p), 4) for p in o.probs),
        o.emotion, _f(o.emotion_prob, 4), o.emotion_smooth, _f(o.smooth_prob, 4),
        "1" if o.accepted else "0", o.reject_reason, _f(o.sharpness, 1), o.source,
    ]  # fmt: skip


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def prepare_output_dir(out_dir: str | Path, force: bool) -> Path:
    """Create ``out_dir``; refuse a file, an unwritable folder, or existing results without ``force``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out} is not writable")
    existing = [n for n in (RESULTS_CSV, RUN_JSON) if (out / n).exists()]
    if existing and not force:
        raise OutputError(f"{out} already holds results ({', '.join(existing)}); use --force to overwrite")
    return out


class ResultsWriter:
    """Appends observations to results.csv frame by frame and keeps run.json current.

    Use as a context manager; :meth:`close` with ``complete=True`` marks the run finished.
    """

    def __init__(self, out_dir: str | Path, meta: dict):
        self.dir = Path(out_dir)
        self.meta = {"schema": SCHEMA, **meta, "started": now_iso(), "finished": None, "complete": False}
        self.rows = 0
        self.frames = 0
        self._fh = open(self.dir / RESULTS_CSV, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self._fh.flush()
        self.write_meta()

    def write_frame(self, observations: Iterable[Observation]) -> None:
        """Append one frame's rows (possibly none) and flush them to disk."""
        rows = [observation_row(o) for o in observations]
        self._csv.writerows(rows)
        self._fh.flush()
        self.rows += len(rows)
        self.frames += 1

    def write_meta(self, **extra) -> None:
        self.meta.update(extra)
        self.meta["frames_processed"] = self.frames
        self.meta["rows"] = self.rows
        atomic_write_text(self.dir / RUN_JSON, json.dumps(self.meta, indent=2, default=str) + "\n")

    def close(self, complete: bool, **extra) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.write_meta(finished=now_iso(), complete=complete, **extra)

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def rewrite_persons(out_dir: str | Path, persons: dict[int, str]) -> None:
    """Replace the ``person`` column by each track's final vote (atomic rewrite)."""
    path = Path(out_dir) / RESULTS_CSV
    tmp = path.with_name(f".{path.name}.tmp")
    with open(path, newline="", encoding="utf-8") as src, open(tmp, "w", newline="", encoding="utf-8") as dst:
        r, w = csv.reader(src), csv.writer(dst, lineterminator="\n")
        header = next(r)
        ti, pi = header.index("track_id"), header.index("person")
        w.writerow(header)
        for row in r:
            if len(row) == len(header):
                row[pi] = persons.get(int(row[ti]), row[pi])
                w.writerow(row)
    os.replace(tmp, path)


@dataclass
class Results:
    """A results folder read back: ``meta`` from run.json, ``cols`` as NumPy columns."""

    dir: Path
    meta: dict
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["frame"])

    @property
    def probs(self) -> np.ndarray:
        """(N, 7) raw probabilities, NaN where not classified."""
        return np.stack([self.cols[e] for e in EMOTIONS], axis=1) if len(self) else np.zeros((0, len(EMOTIONS)))

    def rows(self, mask: np.ndarray | None = None) -> Iterator[Observation]:
        """Rows (optionally those under a boolean mask) as :class:`Observation`."""
        idx = np.arange(len(self)) if mask is None else np.flatnonzero(mask)
        c, probs = self.cols, self.probs
        for i in idx:
            yield Observation(
                frame=int(c["frame"][i]), time_s=float(c["time_s"][i]), track_id=int(c["track_id"][i]),
                x=float(c["x"][i]), y=float(c["y"][i]), w=float(c["w"][i]), h=float(c["h"][i]),
                det_score=float(c["det_score"][i]),
                eyes=(float(c["eye_l_x"][i]), float(c["eye_l_y"][i]), float(c["eye_r_x"][i]), float(c["eye_r_y"][i])),
                probs=tuple(float(p) for p in probs[i]), emotion=str(c["emotion"][i]),
                emotion_smooth=str(c["emotion_smooth"][i]), smooth_prob=float(c["smooth_prob"][i]),
                accepted=bool(c["accepted"][i]), reject_reason=str(c["reject_reason"][i]),
                sharpness=float(c["sharpness"][i]), person=str(c["person"][i]), match=str(c["match"][i]),
                match_distance=float(c["match_distance"][i]), source=str(c["source"][i]),
            )  # fmt: skip

    @property
    def fps(self) -> float:
        return float(self.meta.get("input", {}).get("fps", 0) or 0)

    def persons(self) -> list[str]:
        return sorted({p for p in self.cols["person"] if p})

    def track_ids(self) -> list[int]:
        return sorted({int(t) for t in self.cols["track_id"] if t >= 0})


def load_results(results_dir: str | Path) -> Results:
    """Read a results folder written by ``analyze``; a clear :class:`DataError` if it can't be used."""
    d = Path(results_dir)
    if not d.is_dir():
        raise DataError(f"no results folder at {d}")
    run_json, csv_path = d / RUN_JSON, d / RESULTS_CSV
    if not run_json.exists() or not csv_path.exists():
        raise DataError(f"{d} is not an emoreel results folder (needs {RUN_JSON} and {RESULTS_CSV})")
    try:
        meta = json.loads(run_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise DataError(f"{run_json} is corrupt (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise DataError(f"{run_json}: results schema {found!r} is not supported (this emoreel reads {SCHEMA})")
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{csv_path} is empty (no header)")
            missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL_COLUMNS]
            if missing:
                raise DataError(f"{csv_path} is from an incompatible version (missing columns: {', '.join(missing)})")
            rows = [r for r in reader if len(r) == len(header)]  # a torn last line is dropped
    except UnicodeDecodeError:
        raise DataError(f"{csv_path} is corrupt (not text)") from None
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if name not in COLUMNS:
            continue
        vals = [r[j] for r in rows]
        try:
            if name in _STR:
                cols[name] = np.array(vals, dtype=object) if vals else np.zeros(0, dtype=object)
            elif name in _INT:
                cols[name] = np.array(vals, dtype=str).astype(np.int64) if vals else np.zeros(0, np.int64)
            else:  # whole-column conversion in C; empty cells are NaN
                text = np.array(vals, dtype=str) if vals else np.zeros(0, str)
                cols[name] = np.where(text == "", "nan", text).astype(np.float64)
        except ValueError:
            raise DataError(f"{csv_path} is corrupt: bad value in column '{name}'") from None
    for name in OPTIONAL_COLUMNS:  # older results: the column is empty
        if name not in cols:
            cols[name] = np.full(len(rows), "", dtype=object)
    return Results(d, meta, cols)
