"""Where the videos of a batch run: worker processes on this machine, or Ray tasks on a cluster.

An engine runs :class:`~emoreel.batch.tasks.Task` objects (one video, or one part of a long
one) through :func:`emoreel.batch.tasks.execute` and hands back one outcome dict per task.
It sits above the pipeline: nothing in the pipeline knows it runs in a batch.

* :class:`LocalEngine` (default): ``workers`` processes at a time, one fresh process per
  task (memory never grows over a long batch; a process killed by the OS or by
  ``kill -9`` is noticed and its task reported ``lost``, so the batch retries it).
* :class:`RayEngine`: one Ray task per :class:`Task` with ``num_cpus`` = the task's
  threads, never more than the largest live node has; Ray re-runs tasks whose worker or
  node died (``max_retries``). Tasks report start and progress to a small actor on the
  driver's node, so the driver knows which tasks still wait for CPUs, and ends the batch
  when none could start within ``start_timeout`` seconds. Each task
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
            # imports paid once, not per video (onnx: 0.7 s, for the detector graph; no threads start on import)
            self.ctx.set_forkserver_preload(["emoreel.batch.tasks", "emoreel.analysis.run", "onnx", "onnxruntime"])
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


class _Board:
    """A Ray actor on the driver's node: tasks say when they start and how far they are (and learn whether the driver
    asked them to stop, on Ctrl-C); the driver reads it for the progress line and to see which tasks still wait."""

    def __init__(self):
        self.stopped = False
        self.frames: dict[str, int] = {}  # key -> frames done, for every task that started

    def stop(self) -> None:
        self.stopped = True

    def report(self, key: str, frames: int) -> bool:
        self.frames[key] = frames
        return self.stopped

    def forget(self, keys: list[str]) -> None:
        for k in keys:
            self.frames.pop(k, None)

    def snapshot(self) -> dict[str, int]:
        return dict(self.frames)


def _ray_run(task, carry: dict | None, board=None):
    """A Ray task: run ``task`` in a temporary folder on this node and send the results folder back. It reports its
    progress to ``board`` (a :class:`_Board`); when the driver sets the board's stop (Ctrl-C), the run stops as a
    local worker does on SIGTERM: incomplete, its frames kept."""
    import tempfile
    from pathlib import Path

    import ray

    from .tasks import execute, pack_dir, unpack_dir

    last = [0.0]

    def tell(done: int) -> bool:
        try:
            return bool(ray.get(board.report.remote(task.key, done), timeout=10))
        except Exception:  # the board is gone (the driver's node died): the task still finishes
            return False

    def progress(done, total):
        now = time.monotonic()
        if board is not None and now - last[0] >= 1.0:
            last[0] = now
            if tell(done):
                raise KeyboardInterrupt

    if board is not None:
        tell(0)  # started: the driver no longer counts it as waiting for resources
    with tempfile.TemporaryDirectory(prefix="emoreel-ray-") as tmp:
        out = Path(tmp) / "out"
        if carry:
            unpack_dir(carry, out)  # an incomplete run sent along: resumed here
        local = task.with_out(str(out))
        outcome = execute(local, progress)
        if out.exists():
            outcome["files"] = pack_dir(out)
        outcome["node"] = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
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


AUTH_HINT = ("the cluster uses token authentication: set RAY_AUTH_MODE=token and give its token "
             "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)")  # fmt: skip


def _refused_token(e: BaseException) -> bool:
    """``e`` says the cluster refused us for want of its token."""
    text = str(e)
    return type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in text or "auth_token" in text.lower()


def _connect_error(e: BaseException) -> str:
    """One line for a failed ``ray.init``: an authentication failure says what to set."""
    text = str(e).strip()
    if _refused_token(e):
        return AUTH_HINT
    return text.splitlines()[0] if text else type(e).__name__


def _auth_problem(address: str | None) -> str | None:
    """:data:`AUTH_HINT` when the cluster at ``address`` refuses us for want of its token (asked once, quietly: Ray
    would otherwise retry for 20 s, printing a line a second, and then say only that it cannot connect)."""
    if not address:
        return None
    try:
        from ray._raylet import GcsClient  # not public API: where it is missing, ray.init reports the problem
    except Exception:
        return None
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)  # the GCS client logs the refusal on stderr from C++
            GcsClient(address=address)
    except Exception as e:
        return AUTH_HINT if _refused_token(e) else None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return None


def _running_cluster() -> str | None:
    """The HOST:PORT that ``address="auto"`` means (RAY_ADDRESS, or the cluster `ray start` left on this machine)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address  # not public API: None where it is missing

        return canonicalize_bootstrap_address("auto")
    except Exception:
        return None


def _task_cpus(task) -> int:
    """CPUs a task asks Ray for: its threads."""
    return max(1, int(task.options.get("threads", 1)))


def _cpus(n: float) -> str:
    return f"{n:g} CPU" + ("" if n == 1 else "s")


class RayEngine:
    """Each task a Ray task requesting its threads as CPUs (never more than the largest node has); Ray retries tasks
    whose worker or node died. ``start_timeout``: seconds a batch may wait with tasks queued and none running before
    it ends with :class:`EngineError` (0: wait for ever, e.g. for an autoscaler)."""

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, start_timeout: float = 600.0):
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray needs Ray: pip install 'emoreel[ray]' (or pip install ray)") from None
        if not (start_timeout >= 0):
            raise InputError(f"--start-timeout must be 0 (no limit) or more seconds, not {start_timeout}")
        self.ray = ray
        self.owned = False
        self.address = address or "a new local Ray"
        if address and address != "auto":
            why = _reachable(address)
            if why:
                raise EngineError(f"cannot reach the Ray cluster at {address}: {why}")
        if address and not address.startswith("ray://") and not ray.is_initialized():
            why = _auth_problem(_running_cluster() if address == "auto" else address)
            if why:
                raise EngineError(f"cannot connect to Ray ({address}): {why}")
        if not ray.is_initialized():
            if address and address.startswith("ray://"):
                try:
                    import grpc  # noqa: F401  (Ray Client)
                except ImportError:
                    raise EngineError("ray:// addresses need Ray Client: pip install 'ray[client]'") from None
            kept = _signal_handlers()
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         include_dashboard=False if not address else None, ignore_reinit_error=True)  # fmt: skip
            except Exception as e:  # ConnectionError, AuthenticationError, ... : one line, no traceback
                raise EngineError(f"cannot connect to Ray ({address or 'a new local instance'}): {_connect_error(e)}") from None
            finally:
                _restore_signal_handlers(kept)  # SIGTERM stays ours: a batch stopped by `timeout` or docker ends cleanly
            self.owned = True
        self.max_retries = max_retries
        self.start_timeout = float(start_timeout)
        self.pending: dict = {}  # ObjectRef -> task
        self._remote = ray.remote(_ray_run)
        self.board = None  # a _Board actor, made with the first task
        self.started: dict[str, int] = {}  # key -> frames done, of tasks that started (from the board)
        self._polled = 0.0
        self._idle_since: float | None = None  # since when tasks wait and none runs

    # -- the cluster -----------------------------------------------------------------------------

    def nodes(self) -> list[float]:
        """CPUs of each live node of the cluster."""
        return [float(n.get("Resources", {}).get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")]

    def describe(self) -> str:
        """The cluster in words: nodes, CPUs, free CPUs."""
        nodes = self.nodes()
        try:
            free = float(self.ray.available_resources().get("CPU", 0))
        except Exception:
            free = float("nan")
        sizes = " + ".join(f"{c:g}" for c in sorted(nodes, reverse=True)[:8]) + (" + ..." if len(nodes) > 8 else "")
        return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({sizes or 'no'} CPUs, {free:g} free)"

    def threads_per_task(self, wanted: int) -> int:
        """``wanted`` threads, but never more than the largest node's CPUs (a task asking for more would never run);
        :class:`EngineError` when no node has a CPU."""
        nodes = self.nodes()
        biggest = int(max(nodes, default=0))
        if biggest < 1:
            raise EngineError(f"the Ray cluster at {self.address} has no node with a CPU for tasks ({self.describe()}); "
                              "start one: ray start --address HEAD:PORT --num-cpus N")  # fmt: skip
        threads = max(1, min(int(wanted), biggest))
        if threads < wanted:
            log.info("%d thread%s per video: the largest Ray node has %s", threads, "s" if threads > 1 else "", _cpus(biggest))
        return threads

    # -- tasks -------------------------------------------------------------------------------------

    def free(self) -> int:
        return 1 << 30  # Ray queues tasks itself

    def submit(self, task, carry: dict | None = None) -> None:
        if self.board is None:
            self.board = self._board()
        ref = self._remote.options(num_cpus=_task_cpus(task), max_retries=self.max_retries,
                                   name=f"emoreel:{task.key}").remote(task, carry, self.board)  # fmt: skip
        self.pending[ref] = task

    def _board(self):
        """The board actor, on this (the driver's) node where Ray allows: it needs no CPU."""
        opts: dict = {"num_cpus": 0}
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=True)
        except Exception:  # Ray Client or an older Ray: anywhere
            pass
        return self.ray.remote(**opts)(_Board).remote()

    @property
    def running(self) -> dict:
        """Submitted tasks not finished (key -> task), keyed as the local engine's."""
        return {t.key: t for t in self.pending.values()}

    def waiting(self) -> int:
        """Tasks submitted that have not started yet (queued for CPUs)."""
        return sum(t.key not in self.started for t in self.pending.values())

    def progress(self) -> dict:
        """Frames done by started tasks (key -> frames), read from the board at most once a second."""
        now = time.monotonic()
        if self.board is not None and self.pending and now - self._polled >= 1.0:
            self._polled = now
            try:
                snap = self.ray.get(self.board.snapshot.remote(), timeout=5)
            except Exception:
                snap = None
            if snap is not None:
                keys = {t.key for t in self.pending.values()}
                self.started = {k: n for k, n in snap.items() if k in keys}
        return dict(self.started)

    def wait(self, timeout: float = 0.5) -> list[tuple[object, dict]]:
        if not self.pending:
            self._idle_since = None
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        done = []
        for ref in ready:
            task = self.pending.pop(ref)
            self.started.pop(task.key, None)
            try:
                outcome = self.ray.get(ref)
            except Exception as e:  # the worker died more often than max_retries, or the task was cancelled
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                outcome = {"status": LOST, "reason": f"Ray task failed: {type(e).__name__}: {msg}"[:300]}
            done.append((task, outcome))
        if done and self.board is not None:
            self.board.forget.remote([t.key for t, _ in done])  # a retried key starts again from "waiting"
        self._check_start(bool(done))
        return done

    def _check_start(self, finished: bool) -> None:
        """End the batch (:class:`EngineError`) when tasks have waited ``start_timeout`` seconds and none ran."""
        self.progress()
        if finished or not self.pending or len(self.started) > 0:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif self.start_timeout and now - self._idle_since > self.start_timeout:
            need = max(map(_task_cpus, self.pending.values()), default=1)
            lower = ", lower --threads" if need > 1 else ""
            raise EngineError(f"no Ray task could start in {self.start_timeout:g} s: each asks for {_cpus(need)}, the "
                              f"cluster has {self.describe()}; add nodes or free CPUs{lower}, or raise --start-timeout "
                              "(0: no limit)")  # fmt: skip

    def waited_s(self) -> float:
        """Seconds the batch has waited with tasks queued and none running (0 when something runs)."""
        return time.monotonic() - self._idle_since if self._idle_since is not None else 0.0

    def interrupt(self, grace: float = 15.0) -> list[tuple[object, dict]]:
        """Stop the running tasks cleanly: they see the board's stop, end incomplete and send back their finished
        frames (in the outcome's ``files``); tasks still running after ``grace`` seconds, and queued ones, are
        cancelled."""
        out = []
        self.start_timeout = 0.0  # stopping: no second "could not start" while the tasks end
        if self.board is not None and self.pending:
            try:
                self.ray.get(self.board.stop.remote(), timeout=grace)
                for ref, t in list(self.pending.items()):  # queued tasks never start
                    if t.key not in self.started:
                        self.ray.cancel(ref, force=False)
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
            kept = _signal_handlers()
            self.ray.shutdown()
            _restore_signal_handlers(kept)


def _signal_handlers() -> dict:
    """This process's SIGTERM/SIGHUP/SIGINT handlers (Ray replaces them when it starts in the driver)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}


def _restore_signal_handlers(kept: dict) -> None:
    for s, h in kept.items():
        if h is not None and signal.getsignal(s) is not h:
            try:
                signal.signal(s, h)
            except (ValueError, OSError, TypeError):
                pass


ENGINES = ("local", "ray")


def create_engine(name: str, workers: int = 1, address: str | None = None, start_timeout: float = 600.0):
    """``local`` or ``ray`` (an unknown name lists the valid ones)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, start_timeout=start_timeout)
    raise InputError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
