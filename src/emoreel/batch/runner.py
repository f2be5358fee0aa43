"""``emoreel batch``: many videos (and long videos in parts) into one folder of results folders.

Each input video gets its own results folder under the batch root, named
``<name>-<8 hex digits of the hash of its absolute path>`` (two ``clip.mp4`` in
different folders never collide, and the name stays the same from run to run).
``ROOT/batch.csv`` lists every input with its status; it is rewritten (atomically)
whenever a video finishes, so it is current after Ctrl-C or a crash.

Running the same batch again skips videos whose run.json is complete with the same
options (threads aside: they never change results), model and input; resumes
incomplete ones (:mod:`emoreel.analysis.resume`); and runs failed ones again. A video may be
split into parts (``split``/``chunk_minutes``) that run in parallel and are merged
into one results folder (:func:`emoreel.analysis.stitch.merge_parts`).

The work itself runs on an engine (:mod:`emoreel.batch.engines`); this module only plans,
retries and records.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

from ..analysis.resume import differing_params, file_stamp, read_meta, same_file
from ..analysis.stitch import Part, merge_parts, part_ranges
from ..config import AnalyzeOptions
from ..errors import DataError, EmoreelError, InputError, OutputError
from ..media.images import encodable
from ..results import RUN_JSON, atomic_write_text, csv_safe, csv_unsafe, hold_lock, write_error
from .tasks import Task, one_line, pack_dir, unpack_dir

log = logging.getLogger(__name__)

BATCH_CSV = "batch.csv"
LOCK_FILE = ".batch.lock"
PARTS_DIR = ".parts"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                  ".m2ts", ".3gp", ".ogv"}  # fmt: skip
BATCH_COLUMNS = ("input", "folder", "status", "frames", "faces", "tracks", "duration_s", "wall_s", "attempts", "parts", "reason")
STATUSES = ("complete", "skipped", "failed", "incomplete", "pending")
WAIT_WARNING_S = 30.0  # Ray: tasks queued this long with none running are reported once


# -- inputs and names -------------------------------------------------------------------------


def collect_inputs(inputs: Iterable[str], recursive: bool = False, exclude: Path | None = None) -> list[str]:
    """Video files named by ``inputs``: files (kept even if missing: they are reported as failed),
    folders (their videos; with ``recursive`` also in subfolders) and quoted globs. In order, without duplicates
    (by the real file: a file reached through links, or again and again through a link loop, counts once)."""
    out: list[str] = []
    seen: set[str] = set()
    excl = exclude.resolve() if exclude is not None else None

    def add(p: str) -> None:
        key = os.path.realpath(p)  # one input per real file: links, ** through a link loop
        if excl is not None and Path(key).is_relative_to(excl):
            return  # the batch's own outputs
        if key not in seen:
            seen.add(key)
            out.append(p)

    for arg in inputs:
        p = Path(arg)
        if any(c in arg for c in "*?[") and not p.exists():
            hits = sorted(glob.glob(arg, recursive=recursive), key=_natural)
            files = [h for h in hits if Path(h).is_file()]
            if not files:
                add(arg)  # reported: no file matches
            for h in files:
                add(h)
        elif p.is_dir():
            walk = p.rglob("*") if recursive else p.iterdir()
            for f in sorted((f for f in walk if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES), key=lambda f: _natural(str(f))):
                add(str(f))
        else:
            add(arg)
    return out


def max_workers() -> int:
    """Most local workers: one per core (two on a one-core machine); more only add memory, not speed."""
    from .engines import cpu_count

    return max(2, cpu_count())


def _natural(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def folder_name(path: str | Path) -> str:
    """The results folder of a video in the batch root: its readable name + a short hash of its absolute path."""
    absolute = os.path.abspath(str(path))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(absolute).stem).strip("._") or "video"
    return f"{stem[:60]}-{hashlib.sha1(absolute.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


# -- the batch ---------------------------------------------------------------------------------


@dataclass
class Video:
    """One input of the batch and what happened to it (a row of batch.csv)."""

    input: str
    folder: str
    status: str = "pending"
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    duration_s: float = 0.0
    wall_s: float = 0.0
    attempts: int = 0
    parts: int = 0
    reason: str = ""
    expected: int = 0  # frames the analysis will process (for the progress line)
    nodes: list[str] = field(default_factory=list)  # Ray: the nodes that ran it (host/node id), in order
    part_list: list[Part] = field(default_factory=list)
    done_parts: set[int] = field(default_factory=set)

    def row(self) -> list[str]:
        """The cells of batch.csv: text a spreadsheet will not run as a formula, names that are not UTF-8 shown with \ufffd."""
        return [csv_safe(shown(self.input)), csv_safe(self.folder), self.status, str(self.frames), str(self.faces),
                str(self.tracks), f"{self.duration_s:.3f}", f"{self.wall_s:.1f}", str(self.attempts), str(self.parts or ""),
                csv_safe(shown(self.reason))]  # fmt: skip


def shown(text: str) -> str:
    """``text`` as it can be written to a UTF-8 file: bytes of a file name that are not UTF-8 become \ufffd."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class BatchSummary:
    root: Path
    videos: list[Video]
    seconds: float

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.videos)

    @property
    def ok(self) -> bool:
        return all(v.status in ("complete", "skipped") for v in self.videos)

    @property
    def nodes(self) -> list[str]:
        """The Ray nodes that ran this batch's tasks (empty for the local engine)."""
        return sorted({n for v in self.videos for n in v.nodes})

    def line(self) -> str:
        frames = sum(v.frames for v in self.videos if v.status == "complete")
        parts = [f"{self.count(s)} {s}" for s in STATUSES if self.count(s)]
        on = f" on {len(self.nodes)} Ray node{'s' if len(self.nodes) != 1 else ''}" if self.nodes else ""
        return (f"{len(self.videos)} videos: {', '.join(parts)}; {frames} frames analysed in {self.seconds:.1f} s{on}; "
                f"{self.root / BATCH_CSV}")  # fmt: skip


class BatchLock:
    """``flock`` on ROOT/.batch.lock: a second batch into the same root is refused with one line."""

    def __init__(self, root: Path):
        self.fd = hold_lock(root / LOCK_FILE, lambda who: f"{root} is in use by another emoreel batch{who}; "
                                                          "wait for it to finish or use another -o")  # fmt: skip

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_batch_csv(root: Path, videos: list[Video], earlier: list[list[str]] = ()) -> None:
    """batch.csv: this run's videos, then ``earlier`` rows (videos of earlier runs into the same root)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BATCH_COLUMNS)
    w.writerows(v.row() for v in videos)
    w.writerows(earlier)
    try:
        atomic_write_text(root / BATCH_CSV, buf.getvalue())  # removes its temporary file on failure
    except OSError as e:
        raise write_error(root / BATCH_CSV, e) from None


def _normalise(o: AnalyzeOptions) -> AnalyzeOptions:
    """Paths made absolute: workers (and Ray nodes) may run elsewhere."""
    kw = {}
    if o.known_faces:
        kw["known_faces"] = os.path.abspath(o.known_faces)
    if o.model and (os.sep in o.model or Path(o.model).suffix == ".onnx"):
        kw["model"] = os.path.abspath(o.model)
    return replace(o, **kw)


def _same_run(meta: dict | None, params: dict, model_sha: str, path: str) -> bool:
    return (meta is not None and not differing_params(meta.get("params") or {}, params)
            and (meta.get("model") or {}).get("sha256") == model_sha
            and (meta.get("input") or {}).get("path") == str(Path(path).resolve())
            and same_file(meta.get("input") or {}, file_stamp(path)))  # a file replaced at that path: analysed again  # fmt: skip


def _plan(key: str, path: str, out: Path, params: dict, model_sha: str) -> Task | None:
    """The task for one results folder: None when it already holds a complete run of these options."""
    meta = read_meta(out)
    if _same_run(meta, params, model_sha, path):
        if meta.get("complete"):
            return None
        return Task(key, path, str(out), params, resume=True)
    return Task(key, path, str(out), params, force=True)


ProgressFn = Callable[[dict], None]


def run_batch(
    inputs: Iterable[str],
    root: str | Path,
    options: AnalyzeOptions | None = None,
    engine: str | object = "local",
    workers: int = 1,
    address: str | None = None,
    retries: int = 1,
    split: int | None = None,
    chunk_minutes: float | None = None,
    recursive: bool = False,
    progress: ProgressFn | None = None,
    start_timeout: float = 600.0,
) -> BatchSummary:
    """Analyze every video of ``inputs`` into ``root/<folder>/`` and list them in ``root/batch.csv``.

    ``engine`` is ``local`` (``workers`` processes) or ``ray`` (``address``: None for a
    new local Ray, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``), or an engine object.
    On Ray each task asks for its threads as CPUs, at most the largest node's; when
    tasks have waited ``start_timeout`` seconds for CPUs and none runs, the batch ends
    (:class:`~emoreel.batch.engines.EngineError`, the videos marked incomplete).
    A failed input never stops the others; ``retries`` more tries are given to tasks
    whose worker died or that failed unexpectedly. ``progress`` gets a dict (videos
    done/total, frames done/total, frames/s, ETA, tasks running and waiting for
    resources) at most a few times a second.
    Ctrl-C stops the running videos cleanly (incomplete, resumed by the next run),
    writes batch.csv and re-raises KeyboardInterrupt.
    """
    from ..model.emotion import resolve_model, sha256_file
    from .engines import LOST, EngineError, create_engine
    from ..media.video import probe, variable_frame_rate

    if retries < 0:
        raise InputError("--retries must be 0 or more")
    if split is not None and split < 1:
        raise InputError("--split must be at least 1")
    if chunk_minutes is not None and not (isinstance(chunk_minutes, (int, float)) and math.isfinite(chunk_minutes)
                                          and chunk_minutes > 0):  # fmt: skip
        raise InputError(f"--chunk-minutes must be a number of minutes above 0, not {chunk_minutes}")
    if isinstance(engine, str) and engine == "local" and not 1 <= workers <= max_workers():
        raise InputError(f"--workers must be 1 to {max_workers()} (the cores of this machine); {workers} was given")
    o = _normalise((options or AnalyzeOptions()).validate())
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputError(f"output {root} exists and is not a folder")
    paths = collect_inputs(inputs, recursive, exclude=root)
    if not paths:
        raise InputError("no input videos given")
    model_sha = sha256_file(resolve_model(o.model))  # a bad --model fails here, once, not per video
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {root}: {e.strerror}") from None
    lock = BatchLock(root)
    eng = None
    t0 = time.perf_counter()
    try:
        try:
            eng = create_engine(engine, workers, address, start_timeout) if isinstance(engine, str) else engine
            threads = eng.threads_per_task(o.threads)
        except BaseException:
            lock.close()
            if created:  # a failed start leaves no root behind
                (root / LOCK_FILE).unlink(missing_ok=True)
                try:
                    root.rmdir()
                except OSError:
                    pass
            raise
        params = replace(o, threads=threads).to_dict()
        videos = [Video(p, folder_name(p)) for p in paths]
        earlier = _earlier_rows(root, {v.folder for v in videos})
        write_csv = lambda: write_batch_csv(root, videos, earlier)  # noqa: E731
        queue: list[Task] = []
        for v in videos:
            out = root / v.folder
            if not encodable(v.input):
                v.status, v.reason = "failed", f"the file name is not UTF-8 (rename it): {shown(v.input)}"
                continue
            if not Path(v.input).is_file():
                v.status, v.reason = "failed", (f"no such file: {v.input}" if not Path(v.input).exists() else
                                                f"not a file: {v.input}")  # fmt: skip
                continue
            try:
                info = probe(v.input)
            except EmoreelError as e:
                v.status, v.reason = "failed", one_line(str(e))
                continue
            v.duration_s = info.duration_s
            v.expected = _expected(info.frame_count, info.fps, o)
            meta = read_meta(out)
            if _same_run(meta, params, model_sha, v.input) and meta.get("complete"):
                v.status, v.frames = "skipped", int(meta.get("frames_processed") or 0)
                v.faces, v.tracks = int(meta.get("faces") or meta.get("rows") or 0), int(meta.get("tracks") or 0)
                continue
            parts = part_ranges(info.frame_count, info.fps, o, split, chunk_minutes) if (split or chunk_minutes) else []
            if len(parts) > 1 and variable_frame_rate(v.input):  # parts cannot start exactly there: one part, exact
                log.warning("%s has a variable frame rate: analysed whole, not in %d parts", shown(v.input), len(parts))
                parts = []
            if len(parts) > 1:
                if meta is not None:  # a run of other options or an unfinished merge: the parts decide
                    (out / RUN_JSON).unlink(missing_ok=True)
                v.part_list, v.parts = parts, len(parts)
                for part in parts:
                    key = f"{v.folder}/{PARTS_DIR}/part-{part.index:03d}"
                    popts = {**params, **{k: val for k, val in asdict(part.options(o, info.fps)).items()
                                          if k in ("start", "end", "max_frames")}}  # fmt: skip
                    t = _plan(key, v.input, root / key, popts, model_sha)
                    if t is None:
                        v.done_parts.add(part.index)
                    else:
                        queue.append(t)
                if len(v.done_parts) == len(parts):
                    _merge(root, v, o)
            else:
                t = _plan(v.folder, v.input, out, params, model_sha)
                if t.resume and variable_frame_rate(v.input):  # a resume cannot seek exactly there: from the start
                    t = replace(t, resume=False, force=True)
                queue.append(t)
        write_csv()
        by_folder = {v.folder: v for v in videos}
        attempts: dict[str, int] = {}
        done_frames: dict[str, int] = {}
        live: dict[str, int] = {}
        total_frames = sum(v.expected for v in videos if v.status not in ("skipped", "failed"))
        session_t0 = time.perf_counter()
        last_report = 0.0
        warned_wait = False

        def report(force: bool = False) -> None:
            nonlocal last_report
            now = time.perf_counter()
            if progress is None or (not force and now - last_report < 0.25):
                return
            last_report = now
            frames = sum(done_frames.values()) + sum(live.values())
            rate = frames / (now - session_t0) if now > session_t0 else 0.0
            waiting = eng.waiting() if hasattr(eng, "waiting") else 0
            progress({"videos_done": sum(v.status in ("complete", "skipped", "failed") for v in videos),
                      "videos": len(videos), "frames": frames, "frames_total": total_frames, "fps": rate,
                      "eta_s": (total_frames - frames) / rate if rate > 0 and total_frames else None,
                      "running": len(eng.running) - waiting, "waiting": waiting,
                      "waited_s": eng.waited_s() if hasattr(eng, "waited_s") else 0.0})  # fmt: skip

        def submit(t: Task) -> None:
            attempts[t.key] = attempts.get(t.key, 0) + 1
            v = by_folder[t.key.split("/")[0]]
            v.attempts = max(v.attempts, attempts[t.key])
            v.status = "running" if v.status == "pending" else v.status
            if getattr(eng, "name", "") == "ray":
                eng.submit(t, pack_dir(t.out) if t.resume else None)  # an unfinished run travels to the node
            else:
                eng.submit(t)

        try:
            while queue or eng.running:
                while queue and eng.free() > 0:
                    submit(queue.pop(0))
                for t, outcome in eng.wait(0.25):
                    v = by_folder[t.key.split("/")[0]]
                    live.pop(t.key, None)
                    if outcome.get("node") and outcome["node"] not in v.nodes:
                        v.nodes.append(outcome["node"])
                    if outcome.get("files"):
                        try:
                            unpack_dir(outcome["files"], t.out)
                        except OutputError as e:  # the node's results cannot be kept here: this video failed
                            outcome = {**outcome, "status": "failed", "reason": one_line(str(e)), "retry": False}
                    status = outcome.get("status")
                    v.wall_s += float(outcome.get("wall_s") or 0)
                    if status == "complete":
                        done_frames[t.key] = int(outcome.get("frames") or 0)
                        if v.part_list:
                            v.done_parts.add(int(t.key.rsplit("-", 1)[1]))
                            if len(v.done_parts) == len(v.part_list):
                                _merge(root, v, o)
                        else:
                            v.status, v.reason = "complete", ""
                            v.frames, v.faces, v.tracks = (int(outcome.get(k) or 0) for k in ("frames", "faces", "tracks"))
                        write_csv()
                        continue
                    retry = status == LOST or outcome.get("retry")
                    if retry and attempts[t.key] <= retries:
                        log.info("retrying %s: %s", t.key, outcome.get("reason"))
                        nt = _plan(t.key, t.input, Path(t.out), t.options, model_sha) or t
                        if nt.resume and variable_frame_rate(t.input):
                            nt = replace(nt, resume=False, force=True)
                        queue.append(nt)
                        continue
                    if status == "incomplete":
                        v.status, v.reason = "incomplete", outcome.get("reason", "")
                    else:
                        v.status, v.reason = "failed", outcome.get("reason", "failed")
                        if v.part_list:  # the other parts of this video are of no use now
                            queue[:] = [q for q in queue if q.key.split("/")[0] != v.folder]
                    write_csv()
                running = eng.running
                for k, n in eng.progress().items():
                    if k in running:  # a finished task's last count is in done_frames: never counted twice
                        live[k] = n
                if not warned_wait and getattr(eng, "waited_s", lambda: 0.0)() >= min(WAIT_WARNING_S, start_timeout / 2 or WAIT_WARNING_S):
                    warned_wait = True  # said once, also where there is no progress line (a log, a pipe)
                    log.warning("%d tasks wait for CPUs on the Ray cluster (%s), none runs; the batch ends if none "
                                "starts within %g s", eng.waiting(), eng.describe(), start_timeout)  # fmt: skip
                report()
        except (KeyboardInterrupt, EngineError) as stop:
            why = "interrupted" if isinstance(stop, KeyboardInterrupt) else f"not started: {one_line(str(stop))}"
            for t, outcome in eng.interrupt():
                v = by_folder[t.key.split("/")[0]]
                if outcome.get("files"):  # a Ray node's finished frames, sent back: kept, resumed by the next run
                    try:
                        unpack_dir(outcome["files"], t.out)
                    except OutputError as e:
                        log.warning("%s: %s", t.key, one_line(str(e)))
                if outcome.get("status") == "complete" and not v.part_list:
                    v.status = "complete"
                    v.frames, v.faces, v.tracks = (int(outcome.get(k) or 0) for k in ("frames", "faces", "tracks"))
                elif v.status not in ("failed",):
                    v.status, v.reason = "incomplete", why
            for v in videos:
                if v.status in ("pending", "running"):
                    v.status, v.reason = "incomplete", why
            write_csv()
            raise
        report(force=True)
        for v in videos:
            if v.status in ("pending", "running"):
                v.status = "failed"
                v.reason = v.reason or "not finished"
        write_csv()
        return BatchSummary(root, videos, time.perf_counter() - t0)
    finally:
        if eng is not None and isinstance(engine, str):
            eng.close()
        lock.close()


def _earlier_rows(root: Path, folders: set[str]) -> list[list[str]]:
    """Rows of an existing batch.csv for videos this run does not name (kept, so ROOT lists all its videos)."""
    try:
        with open(root / BATCH_CSV, newline="", encoding="utf-8-sig") as fh:
            r = csv.reader(fh)
            header = next(r, None)
            if header is None or tuple(header) != BATCH_COLUMNS:
                return []
            return [row for row in r if len(row) == len(header) and csv_unsafe(row[1]) not in folders]
    except OSError:
        return []


def _expected(frame_count: int, fps: Fraction, o: AnalyzeOptions) -> int:
    first = int(round(o.start * fps)) if o.start and fps else 0
    stop = frame_count
    if o.end is not None and fps:
        stop = min(stop, int(round(o.end * fps)))
    n = max(0, -(-(stop - first) // max(1, o.every)))
    return min(n, o.max_frames) if o.max_frames else n


def _merge(root: Path, v: Video, o: AnalyzeOptions) -> None:
    """All parts of ``v`` are complete: merge them into its results folder and drop the parts."""
    dirs = [root / v.folder / PARTS_DIR / f"part-{p.index:03d}" for p in v.part_list]
    try:
        meta = merge_parts(v.part_list, dirs, root / v.folder, o)
    except (EmoreelError, OSError) as e:
        v.status, v.reason = "failed", f"merging the parts: {one_line(str(e))}"
        return
    shutil.rmtree(root / v.folder / PARTS_DIR, ignore_errors=True)
    v.status, v.reason = "complete", ""
    v.frames, v.faces, v.tracks = int(meta["frames_processed"]), int(meta["rows"]), int(meta["tracks"])


# -- reading a batch back ------------------------------------------------------------------------


def is_batch_root(path: str | Path) -> bool:
    """A folder written by ``emoreel batch``: its batch.csv has our columns (a batch.csv of one's own does not count)."""
    p = Path(path)
    if not (p / BATCH_CSV).is_file() or (p / RUN_JSON).exists():
        return False
    try:
        return _read_batch_csv(p) is not None
    except DataError:
        return False


def _read_batch_csv(root: Path) -> list[dict] | None:
    """Rows of ``root/batch.csv`` (None: its header is not :data:`BATCH_COLUMNS`); :class:`DataError` if unreadable."""
    path = root / BATCH_CSV
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # a byte-order mark: saved by a spreadsheet
            r = csv.reader(fh)
            header = next(r, None)
            if header is None or tuple(header) != BATCH_COLUMNS:
                return None
            return [dict(zip(header, map(csv_unsafe, row))) for row in r if len(row) == len(header)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def plain_folder(root: Path, name: str) -> bool:
    """``name`` is one folder inside ``root``: no separators, no ``..``, not a link (batch.csv may have been edited)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name or "\0" in name:
        return False
    p = root / name
    try:
        return not p.is_symlink() and p.resolve().parent == root.resolve()
    except (OSError, RuntimeError):
        return False


def batch_videos(root: str | Path) -> list[dict]:
    """Rows of ``root/batch.csv`` whose results folder holds a complete run (in batch order)."""
    root = Path(root)
    rows = _read_batch_csv(root)
    if rows is None:
        raise DataError(f"{root / BATCH_CSV} is not a batch list written by emoreel batch (its columns differ)")
    out = []
    for r in rows:
        if not plain_folder(root, r["folder"]):
            log.warning("%s: folder %r is not a plain folder name inside %s; left out", root / BATCH_CSV, r["folder"], root)
            continue
        meta = read_meta(root / r["folder"])
        if r.get("status") in ("complete", "skipped") and meta is not None and meta.get("complete"):
            out.append({**r, "dir": root / r["folder"]})
    return out
