"""Where the videos of a batch run: worker processes on this machine, or Ray tasks on a cluster.

An engine runs :class:`~emoreel.batch.tasks.Task` objects (one video, or one part of a long
one) through :func:`emoreel.batch.tasks.execute` and hands back one outcome dict per task.
It sits above the pipeline: nothing in the pipeline knows it runs in a batch.

* :class:`LocalEngine` (default): ``workers`` processes at a time, one fresh process per
  task (memory never grows over a long batch; a process killed by the OS or by
  ``kill -9`` is noticed and its task reported ``lost``, so the batch retries it).
* :class:`RayEngine`: one Ray task per :class:`Task` with ``num_cpus`` = the task's
  threads; Ray re-runs tasks whose worker or node died (``max_retries``). Each task
  works in a temporary folder on its node and sends results.csv and run.json back
  (compressed), and the driver writes them under the batch root, so the cluster
  needs no shared writable file system (the input videos must be readable at the
  same path on every node).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import wait as mp_wait

from ..errors import EmoreelError, InputError

log = logging.getLogger(__name__)

LOST = "lost"  # outcome status of a task whose worker died


class EngineError(EmoreelError):
    """An engine that cannot start (Ray missing, a cluster that cannot be reached)."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    """Process ``pid`` runs (a zombie, killed but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _die_with(driver: int) -> None:
    """End this worker cleanly (SIGTERM: its finished frames kept, its locks released) when ``driver`` ends, even by
    ``kill -9``: the kernel's parent-death signal where there is one, and a thread watching the driver's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while _alive(driver):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="emoreel-driver-watch", daemon=True).start()


def _child(task, conn, progress_q, driver: int | None = None) -> None:
    """A worker process: SIGINT (the terminal's Ctrl-C) is left to the driver, SIGTERM stops the task cleanly;
    it ends with its driver (``driver``: the batch's pid)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup must not be interrupted again
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if driver is not None:
        _die_with(driver)
    from .tasks import execute

    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            try:
                progress_q.put_nowait((task.key, done))
            except Exception:  # a full or closed queue only costs a progress update
                pass

    outcome = execute(task, progress)
    try:
        progress_q.put_nowait((task.key, outcome.get("frames", 0)))
    except Exception:
        pass
    try:
        conn.send(outcome)
        conn.close()
    except OSError:  # the driver is gone
        pass


class LocalEngine:
    """Up to ``workers`` worker processes at a time on this machine, one per task."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise InputError("--workers must be at least 1")
        self.workers = int(workers)
        self.ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        if self.ctx.get_start_method() == "forkserver":
            self.ctx.set_forkserver_preload(["emoreel.batch.tasks", "emoreel.analysis.run"])  # imports paid once, not per video
        self.progress_q = self.ctx.Queue()
        self.running: dict = {}  # key -> (task, process, connection)

    def threads_per_task(self, wanted: int) -> int:
        """Threads per worker so that all workers together do not oversubscribe the cores."""
        return max(1, min(wanted, cpu_count() // self.workers))

    def free(self) -> int:
        return self.workers - len(self.running)

    def submit(self, task) -> None:
        recv, send = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=_child, args=(task, send, self.progress_q, os.getpid()), name=f"emoreel-{task.key}", daemon=True)
        p.start()
        send.close()
        self.running[task.key] = (task, p, recv)

    def progress(self) -> dict:
        """Latest frames-done counts reported by running tasks (key -> frames)."""
        out = {}
        while True:
            try:
                k, n = self.progress_q.get_nowait()
            except Exception:
                return out
            out[k] = n

    def wait(self, timeout: float = 0.5) -> list[tuple[object, dict]]:
        """Finished tasks and their outcomes (a dead worker gives status ``lost``)."""
        if not self.running:
            return []
        objs = {}
        for key, (_, p, conn) in self.running.items():
            objs[p.sentinel] = key
            objs[conn] = key
        ready = mp_wait(list(objs), timeout)
        done = []
        for key in {objs[o] for o in ready}:
            task, p, conn = self.running[key]
            outcome = None
            try:
                if conn.poll():
                    outcome = conn.recv()
            except (EOFError, OSError):
                outcome = None
            if outcome is None and p.is_alive():
                continue  # the pipe closed first; the process is still ending
            p.join(timeout=10)
            if outcome is None:
                code = p.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                outcome = {"status": LOST, "reason": f"worker process died ({why})"}
            conn.close()
            del self.running[key]
            done.append((task, outcome))
        return done

    def interrupt(self, grace: float = 15.0) -> list[tuple[object, dict]]:
        """Stop running tasks cleanly (they mark their runs incomplete); return their outcomes."""
        for _, p, _ in self.running.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        out = []
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            out += self.wait(0.2)
        for key, (task, p, conn) in list(self.running.items()):
            p.kill()
            p.join(5)
            out.append((task, {"status": "incomplete", "reason": "interrupted"}))
            del self.running[key]
        return out

    def close(self) -> None:
        if self.running:
            self.interrupt(grace=5)
        self.progress_q.close()


class _StopFlag:
    """A Ray actor the driver sets on Ctrl-C: running tasks see it, stop cleanly and send back their finished frames."""

    def __init__(self):
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def get(self) -> bool:
        return self.stopped


def _ray_run(task, carry: dict | None, flag=None):
    """A Ray task: run ``task`` in a temporary folder on this node and send the results folder back. When the
    driver sets ``flag`` (Ctrl-C), the run stops as a local worker does on SIGTERM: incomplete, its frames kept."""
    import tempfile
    from pathlib import Path

    from .tasks import execute, pack_dir, unpack_dir

    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if flag is not None and now - last[0] >= 1.0:
            last[0] = now
            import ray

            if ray.get(flag.get.remote()):
                raise KeyboardInterrupt

    with tempfile.TemporaryDirectory(prefix="emoreel-ray-") as tmp:
        out = Path(tmp) / "out"
        if carry:
            unpack_dir(carry, out)  # an incomplete run sent along: resumed here
        local = task.with_out(str(out))
        outcome = execute(local, progress)
        if out.exists():
            outcome["files"] = pack_dir(out)
        outcome["node"] = socket.gethostname()
        return outcome


def _reachable(address: str) -> str | None:
    """Why ``host:port`` cannot be reached (None when a TCP connection opens)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return None  # let Ray judge addresses it understands otherwise
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as e:
        return e.strerror or str(e)


class RayEngine:
    """Each task a Ray task requesting its threads as CPUs; Ray retries tasks whose worker died."""

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray needs Ray: pip install 'emoreel[ray]' (or pip install ray)") from None
        self.ray = ray
        self.owned = False
        if address and address != "auto":
            why = _reachable(address)
            if why:
                raise EngineError(f"cannot reach the Ray cluster at {address}: {why}")
        if not ray.is_initialized():
            if address and address.startswith("ray://"):
                try:
                    import grpc  # noqa: F401  (Ray Client)
                except ImportError:
                    raise EngineError("ray:// addresses need Ray Client: pip install 'ray[client]'") from None
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         include_dashboard=False if not address else None, ignore_reinit_error=True)  # fmt: skip
            except Exception as e:  # ConnectionError, RuntimeError, ... : one line, no traceback
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise EngineError(f"cannot connect to Ray ({address or 'a new local instance'}): {msg}") from None
            self.owned = True
        self.max_retries = max_retries
        self.pending: dict = {}  # ObjectRef -> task
        self._remote = ray.remote(_ray_run)
        self.flag = None  # a _StopFlag actor, made with the first task

    def threads_per_task(self, wanted: int) -> int:
        return max(1, wanted)

    def free(self) -> int:
        return 1 << 30  # Ray queues tasks itself

    def submit(self, task, carry: dict | None = None) -> None:
        if self.flag is None:
            self.flag = self.ray.remote(num_cpus=0)(_StopFlag).remote()
        ref = self._remote.options(num_cpus=task.options.get("threads", 1), max_retries=self.max_retries,
                                   name=f"emoreel:{task.key}").remote(task, carry, self.flag)  # fmt: skip
        self.pending[ref] = task

    @property
    def running(self) -> dict:
        return self.pending

    def progress(self) -> dict:
        return {}

    def wait(self, timeout: float = 0.5) -> list[tuple[object, dict]]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        done = []
        for ref in ready:
            task = self.pending.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as e:  # the worker died more often than max_retries, or the task was cancelled
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                outcome = {"status": LOST, "reason": f"Ray task failed: {type(e).__name__}: {msg}"[:300]}
            done.append((task, outcome))
        return done

    def interrupt(self, grace: float = 15.0) -> list[tuple[object, dict]]:
        """Stop the running tasks cleanly: they see the stop flag, end incomplete and send back their finished
        frames (in the outcome's ``files``); tasks still running after ``grace`` seconds are cancelled."""
        out = []
        if self.flag is not None and self.pending:
            try:
                self.ray.get(self.flag.stop.remote(), timeout=grace)
                deadline = time.monotonic() + grace
                while self.pending and time.monotonic() < deadline:
                    out += self.wait(0.5)
            except Exception:  # the cluster is gone: what is left is cancelled below
                pass
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        out += [(t, {"status": "incomplete", "reason": "interrupted"}) for t in self.pending.values()]
        self.pending.clear()
        return out

    def close(self) -> None:
        if self.pending:
            self.interrupt()
        if self.owned:
            self.ray.shutdown()


ENGINES = ("local", "ray")


def create_engine(name: str, workers: int = 1, address: str | None = None):
    """``local`` or ``ray`` (an unknown name lists the valid ones)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address)
    raise InputError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
