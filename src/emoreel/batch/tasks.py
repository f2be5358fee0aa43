"""What runs on an engine: a :class:`Task` (analyze one input into one folder), :func:`execute`
(runs it in this process and reports an outcome dict, never raising), and :func:`pack_dir` /
:func:`unpack_dir` (a results folder sent back from another machine).

Imported by both :mod:`.runner` (which plans tasks) and :mod:`.engines` (which runs them).
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..analysis.resume import read_meta
from ..config import AnalyzeOptions
from ..errors import EmoreelError, OutputError
from ..results import RESULTS_CSV, RUN_JSON, write_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One unit of work: analyze ``input`` into ``out`` with ``options`` (a dict of AnalyzeOptions fields)."""

    key: str  # unique in the batch: the folder name, or folder/.parts/part-K
    input: str
    out: str
    options: dict
    resume: bool = False
    force: bool = False

    def with_out(self, out: str) -> "Task":
        return replace(self, out=out)


def execute(task: Task, progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Run ``task`` here; never raises: the outcome dict says ``status`` (complete, failed, incomplete) and why."""
    from ..analysis.run import analyze_to_dir  # the models load in the worker, not where tasks are planned

    t0 = time.perf_counter()
    threads = int(task.options.get("threads") or 1)
    try:
        import cv2

        cv2.setNumThreads(threads)  # OpenCV's own pool stays within this worker's share of the cores
    except Exception:
        pass
    base = {"key": task.key, "pid": os.getpid()}
    try:
        s = analyze_to_dir(task.input, task.out, AnalyzeOptions(**task.options), force=task.force,
                           progress=progress, resume=task.resume)  # fmt: skip
        meta = read_meta(task.out) or {}
        return {**base, "status": "complete", "frames": s.frames, "faces": s.faces, "tracks": s.tracks,
                "duration_s": (meta.get("input") or {}).get("duration_s"), "wall_s": time.perf_counter() - t0,
                "resumed": bool(task.resume)}  # fmt: skip
    except KeyboardInterrupt:
        return {**base, "status": "incomplete", "reason": "interrupted", "wall_s": time.perf_counter() - t0}
    except EmoreelError as e:  # bad input: the same on every try
        return {**base, "status": "failed", "reason": one_line(str(e)), "retry": False, "wall_s": time.perf_counter() - t0}
    except Exception as e:  # a bug or a resource problem: worth another try
        log.debug("task %s failed", task.key, exc_info=True)
        return {**base, "status": "failed", "reason": one_line(f"{type(e).__name__}: {e}"), "retry": True,
                "wall_s": time.perf_counter() - t0}  # fmt: skip


def one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def pack_dir(out: str | Path) -> dict[str, bytes]:
    """results.csv and run.json of a results folder, compressed (what a Ray task sends back)."""
    out = Path(out)
    return {n: zlib.compress((out / n).read_bytes(), 6) for n in (RESULTS_CSV, RUN_JSON) if (out / n).exists()}


def unpack_dir(files: dict[str, bytes], out: str | Path) -> None:
    """Write what :func:`pack_dir` packed into ``out`` (run.json last, each file replaced atomically).

    :class:`OutputError` if it cannot be written (no temporary file is left).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}") from None
    for n in sorted(files, key=lambda n: n == RUN_JSON):
        tmp = out / f".{n}.part"
        try:
            tmp.write_bytes(zlib.decompress(files[n]))
            os.replace(tmp, out / n)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise write_error(out / n, e) from None
