"""results.csv and run.json: written incrementally by ``analyze``, read back by everything else.

``results.csv`` has one row per face per processed frame (columns in
:data:`COLUMNS`); rows are appended and flushed as each frame finishes, so an
interrupted run leaves a valid CSV. ``run.json`` describes the run and is
replaced atomically; its ``complete`` flag is true only after a run finished.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import io
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


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _quoted(text: str) -> bool:
    # a formula start, also behind apostrophes (so a name that itself starts with "'=" round-trips)
    return text.lstrip("'").startswith(FORMULA_START)


def csv_safe(text: str) -> str:
    """A name for a CSV cell that a spreadsheet will not run as a formula: a leading ``= + - @`` gets a ``'``
    (as does a name whose leading ``'`` are followed by one, so :func:`csv_unsafe` gives it back unchanged)."""
    return "'" + text if text and _quoted(text) else text


def csv_unsafe(text: str) -> str:
    """The name :func:`csv_safe` was given."""
    return text[1:] if text.startswith("'") and _quoted(text[1:]) else text


def write_error(path: Path, e: OSError) -> OutputError:
    """One line for a failed write: disk full, file too large, permission..."""
    why = {errno.ENOSPC: "disk full", errno.EFBIG: "file too large", errno.EDQUOT: "disk quota exceeded"}.get(
        e.errno, e.strerror or str(e))
    return OutputError(f"cannot write {path}: {why}")


def _f(v: float, nd: int) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def observation_row(o: Observation) -> list[str]:
    """An observation as CSV cells in :data:`COLUMNS` order."""
    return [
        str(o.frame), f"{o.time_s:.6f}", str(o.track_id), csv_safe(o.person), csv_safe(o.match), _f(o.match_distance, 4),
        _f(o.x, 1), _f(o.y, 1), _f(o.w, 1), _f(o.h, 1), _f(o.det_score, 4),
        *(_f(v, 1) for v in o.eyes),
        *(_f(float(p), 4) for p in o.probs),
        csv_safe(o.emotion), _f(o.emotion_prob, 4), csv_safe(o.emotion_smooth), _f(o.smooth_prob, 4),
        "1" if o.accepted else "0", csv_safe(o.reject_reason), _f(o.sharpness, 1), csv_safe(o.source),
    ]  # fmt: skip


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _existing_results(out: Path, existing: list[str]) -> str:
    """The refusal for a folder that holds results: an unfinished run can be resumed, any run replaced."""
    try:
        meta = json.loads((out / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    kind = meta.get("input", {}).get("kind") if isinstance(meta, dict) and isinstance(meta.get("input"), dict) else None
    if kind == "video" and meta.get("complete") is False:  # --resume continues video runs
        return (f"{out} holds an unfinished run (interrupted, failed or still running); use --resume to continue it "
                f"after its last finished frame, or --force to start over")
    return f"{out} already holds results ({', '.join(existing)}); use --force to overwrite"


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
        raise OutputError(_existing_results(out, existing))
    for n in existing:
        if not os.access(out / n, os.W_OK):
            raise OutputError(f"cannot overwrite {out / n}: it is read-only")
    return out


def check_output_dir(out_dir: str | Path, force: bool) -> None:
    """The checks of :func:`prepare_output_dir` that need no folder made: run before slow work (models)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    existing = [n for n in (RESULTS_CSV, RUN_JSON) if (out / n).exists()]
    if existing and not force:
        raise OutputError(_existing_results(out, existing))


LOCK_FILE = ".emoreel.lock"


def hold_lock(path: Path, busy) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if needed) with this process's pid written in it: the open file
    descriptor (closing it releases the lock), or None where ``flock`` does not exist. Held by another process:
    :class:`OutputError` with ``busy(" (pid N)")`` (``busy("")`` when the holder wrote no pid)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot create {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise OutputError(busy(f" (pid {holder})" if holder else "")) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


class OutputLock:
    """An exclusive ``flock`` on ``out_dir/.emoreel.lock`` while a run writes there (released on close or exit).

    A second run into the same folder is refused with one line instead of interleaving
    its rows with the first one's. Where locking is not available it does nothing.
    """

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows: no flock
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot lock output folder {self.path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"output folder {self.path.parent} is in use by another emoreel run; "
                                  "wait for it or choose another folder") from None  # fmt: skip
            return  # a file system without locks: go on unlocked
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ResultsWriter:
    """Appends observations to results.csv frame by frame and keeps run.json current.

    Use as a context manager; :meth:`close` with ``complete=True`` marks the run finished.
    """

    def __init__(self, out_dir: str | Path, meta: dict, resume: tuple[int, int] | None = None):
        self.dir = Path(out_dir)
        self.meta = {"schema": SCHEMA, **meta, "started": now_iso(), "finished": None, "complete": False}
        self.rows = 0
        self.frames = 0
        self.path = self.dir / RESULTS_CSV
        if resume is not None:  # analyze --resume: append after the kept rows; ``resume`` = (frames, rows) kept
            self.frames, self.rows = resume
            try:
                self._fh = open(self.path, "ab", buffering=0)
                self._good = self._fh.seek(0, os.SEEK_END)
                self.write_meta()
            except OSError as e:
                raise write_error(self.path, e) from None
            return
        # the header goes to a temporary file and run.json (complete: false) is written before it replaces
        # results.csv: a write that fails here (disk full, read-only) leaves the folder as it was
        tmp = self.dir / f".{RESULTS_CSV}.tmp"
        fh = None
        try:
            fh = open(tmp, "wb", buffering=0)
            self._fh = fh
            self._good = 0
            self._append([list(COLUMNS)])
            self.write_meta()
            os.replace(tmp, self.path)
        except OSError as e:
            if fh is not None:
                fh.close()
            tmp.unlink(missing_ok=True)
            raise write_error(self.path, e) from None
        except BaseException:
            if fh is not None:
                fh.close()
            tmp.unlink(missing_ok=True)
            raise

    def _append(self, rows: list[list[str]]) -> None:
        """Write whole rows or none: a failed write is cut back to the end of the last whole frame."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        data = buf.getvalue().encode("utf-8")
        fd = self._fh.fileno()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:
                os.ftruncate(fd, self._good)
                os.lseek(fd, self._good, os.SEEK_SET)
            except OSError:
                pass
            raise write_error(self.path, e) from None
        self._good += len(data)

    def write_frame(self, observations: Iterable[Observation]) -> None:
        """Append one frame's rows (possibly none); a failed write raises :class:`OutputError` and keeps earlier frames."""
        rows = [observation_row(o) for o in observations]
        self._append(rows)
        self.rows += len(rows)
        self.frames += 1

    def write_meta(self, **extra) -> None:
        self.meta.update(extra)
        self.meta["frames_processed"] = self.frames
        self.meta["rows"] = self.rows
        try:
            atomic_write_text(self.dir / RUN_JSON, json.dumps(self.meta, indent=2, default=str) + "\n")
        except OSError as e:
            raise write_error(self.dir / RUN_JSON, e) from None

    def close(self, complete: bool, **extra) -> None:
        """Finish results.csv and mark run.json ``complete``; an incomplete close is best effort (never raises
        for a write failure: run.json already says ``complete: false``)."""
        if self._fh.closed:
            return
        try:
            try:
                os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
            self.write_meta(finished=now_iso(), complete=complete, **extra)
        except (OSError, OutputError) as e:
            if complete:
                raise e if isinstance(e, OutputError) else write_error(self.path, e) from None

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def rewrite_persons(out_dir: str | Path, persons: dict[int, str]) -> None:
    """Replace the ``person`` column by each track's final vote (atomic rewrite)."""
    path = Path(out_dir) / RESULTS_CSV
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(path, newline="", encoding="utf-8-sig") as src, open(tmp, "w", newline="", encoding="utf-8") as dst:
            r, w = csv.reader(src), csv.writer(dst, lineterminator="\n")
            header = next(r)
            ti, pi = header.index("track_id"), header.index("person")
            w.writerow(header)
            for row in r:
                if len(row) == len(header):
                    row[pi] = csv_safe(persons[int(row[ti])]) if int(row[ti]) in persons else row[pi]
                    w.writerow(row)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None


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

    def to_pandas(self):
        """The rows as a :class:`pandas.DataFrame` (results.csv's columns, in its order and types).

        pandas is optional (``pip install pandas``); it is imported only here.
        """
        try:
            import pandas as pd
        except ImportError:
            raise DataError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame({name: self.cols[name] for name in COLUMNS})


def warn_incomplete(res: Results) -> None:
    """Log a warning when ``res`` is from a run that did not finish (interrupted, failed or still running)."""
    if not res.meta.get("complete"):
        import logging

        n = len(np.unique(res.cols["frame"])) if len(res) else 0
        logging.getLogger("emoreel.results").warning(
            "%s is incomplete (the run was interrupted, failed or is still running): %d frames with faces", res.dir, n)


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
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # a byte-order mark: saved by a spreadsheet
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{csv_path} is empty (no header)")
            missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL_COLUMNS]
            if missing:
                raise DataError(f"{csv_path} is from an incompatible version (missing columns: {', '.join(missing)})")
            rows, lines = [], []
            for r in reader:
                if len(r) == len(header):  # a torn last line is dropped
                    rows.append(r)
                    lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"{csv_path} is corrupt (not text)") from None
    except (csv.Error, OSError) as e:
        raise DataError(f"{csv_path} cannot be read: {e}") from None
    _check_meta(meta, run_json)
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if name not in COLUMNS:
            continue
        vals = [r[j] for r in rows]
        try:
            if name in _STR:
                cols[name] = np.array([csv_unsafe(v) for v in vals], dtype=object) if vals else np.zeros(0, dtype=object)
            elif name in _INT:
                cols[name] = np.array(vals, dtype=str).astype(np.int64) if vals else np.zeros(0, np.int64)
            else:  # whole-column conversion in C; empty cells are NaN
                text = np.array(vals, dtype=str) if vals else np.zeros(0, str)
                cols[name] = np.where(text == "", "nan", text).astype(np.float64)
        except (ValueError, OverflowError):
            k = next((k for k, v in enumerate(vals) if not _parses(v, name in _INT)), 0)
            raise DataError(f"{csv_path}, line {lines[k]}, column '{name}': not a number ({vals[k][:40]!r})") from None
        _check_range(cols[name], name, csv_path, lines, vals)
    for name in OPTIONAL_COLUMNS:  # older results: the column is empty
        if name not in cols:
            cols[name] = np.full(len(rows), "", dtype=object)
    return Results(d, meta, cols)


MAX_COORD = 1e6  # pixels: larger boxes, eyes or sizes are damage, not a picture
_RANGES: dict[str, tuple[float, float, bool]] = {
    # column: (lowest, highest, may be empty)
    "frame": (0, 1e10, False), "time_s": (-1, 1e9, False), "track_id": (-1, 1e12, False), "accepted": (0, 1, False),
    "x": (-MAX_COORD, MAX_COORD, False), "y": (-MAX_COORD, MAX_COORD, False), "w": (0, MAX_COORD, False),
    "h": (0, MAX_COORD, False), "det_score": (0, 1e3, True), "match_distance": (0, math.inf, True),
    **{c: (-MAX_COORD, MAX_COORD, True) for c in ("eye_l_x", "eye_l_y", "eye_r_x", "eye_r_y")},
    **{e: (0, 1, True) for e in EMOTIONS}, "emotion_prob": (0, 1, True), "smooth_prob": (0, 1, True),
    "sharpness": (0, 1e12, True),
}  # fmt: skip


def _parses(v: str, integer: bool) -> bool:
    try:
        int(v) if integer else float(v or "nan")
        return True
    except (ValueError, OverflowError):
        return False


def _check_range(col: np.ndarray, name: str, path: Path, lines: list[int], vals: list[str]) -> None:
    """Refuse NaN where a value is needed, infinities and values out of range, naming the line and column."""
    if name not in _RANGES or not len(col):
        return
    lo, hi, empty_ok = _RANGES[name]
    with np.errstate(invalid="ignore"):
        bad = ~((col >= lo) & (col <= hi))
    if empty_ok and col.dtype.kind == "f":
        bad &= ~(np.isnan(col) & np.array([v == "" or v.lower() == "nan" for v in vals]))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}, line {lines[k]}, column '{name}': value {vals[k][:40]!r} is out of range "
                        f"({lo:g} to {hi:g})")  # fmt: skip


def _check_meta(meta: dict, path: Path) -> None:
    """Types of the run.json entries that readers use; one line naming the first wrong one."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise DataError(f"{path}: '{key}' must be {what}")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key in ("input", "params", "model", "detector"):
        need(isinstance(meta.get(key) or {}, dict), key, "an object")
    inp = meta.get("input") or {}
    for key in ("width", "height", "frame_count"):
        v = inp.get(key)
        need(v is None or (number(v) and v == int(v) and 0 <= v <= 1e10), f"input.{key}", "a whole number >= 0")
    for key in ("fps", "duration_s"):
        v = inp.get(key)
        need(v is None or (number(v) and 0 <= v <= 1e9), f"input.{key}", "a number >= 0")
    for key in ("path", "kind", "recording", "fps_fraction"):
        need(inp.get(key) is None or isinstance(inp.get(key), str), f"input.{key}", "text")
    for key in ("frames_processed", "rows", "expected_frames", "last_frame"):
        v = meta.get(key)
        need(v is None or (number(v) and v == int(v) and v >= -1), key, "a whole number")
    need(isinstance(meta.get("complete", False), bool), "complete", "true or false")
    for key in ("cuts", "images", "skipped_images", "known_people", "gaps"):
        need(isinstance(meta.get(key) or [], list), key, "a list")
    need(all(number(c) for c in meta.get("cuts") or []), "cuts", "a list of frame numbers")
    need(all(isinstance(i, dict) for i in meta.get("images") or []), "images", "a list of objects")
    from .config import LIMITS

    for key, v in (meta.get("params") or {}).items():
        if key in LIMITS:
            need(v is None or number(v), f"params.{key}", "a number")
    for key in ("started", "finished", "emoreel_version", "schema"):
        need(meta.get(key) is None or isinstance(meta.get(key), str), key, "text")


check_meta = _check_meta
