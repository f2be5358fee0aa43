"""Where and how the ONNX networks (the face detector and the emotion model) run: the device, session options.

* :func:`providers_for` turns ``auto|cpu|cuda`` into onnxruntime execution providers;
  when a GPU was asked for (``cuda``) or could be used (``auto`` with onnxruntime-gpu
  installed) but none is usable, it says why in one warning line and runs on CPU.
* :func:`runtime_conflict` says in one line when two onnxruntime distributions are installed
  (``onnxruntime`` and ``onnxruntime-gpu`` share one module: the CUDA provider is often lost);
  :func:`providers_for` logs it once.
* :func:`session_options` are the options every emoreel session uses.
* :func:`cpu_model` and :func:`cache_dir` (``~/.cache/emoreel``, ``$EMOREEL_CACHE``) key and hold
  per-machine choices (the int8 or float emotion model: :mod:`emoreel.model.choice`).

Shared by :mod:`emoreel.faces` and :mod:`emoreel.model`, so it imports neither.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
# the distributions that install the one `onnxruntime` module: only one of them may be installed
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon")
GPU_ROUTE = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def runtime_conflict() -> str | None:
    """One line when more than one onnxruntime distribution is installed (read from the installed metadata), else None."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    if len(found) < 2:
        return None
    return (f"{' and '.join(found)} are installed together: they overwrite each other's onnxruntime module and the CUDA "
            f"provider is often lost; keep one: {GPU_ROUTE} (GPU), or the same with onnxruntime (CPU)")


@functools.cache
def _warn_conflict_once() -> None:
    message = runtime_conflict()
    if message:
        log.warning(message)


def providers_for(device: str = "auto", available: list[str] | None = None) -> tuple[list[str], str | None]:
    """(execution providers, a one-line warning or None) for ``device``.

    ``available`` defaults to ``onnxruntime.get_available_providers()``.
    """
    if device not in DEVICES:
        from .errors import InputError

        raise InputError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if available is None:
        import onnxruntime as ort

        _warn_conflict_once()
        available = list(ort.get_available_providers())
    if device == "cpu":
        return [CPU], None
    if CUDA in available:
        return [CUDA, CPU], None
    if device == "cuda":
        return [CPU], (f"--device cuda: onnxruntime offers no CUDA provider (the GPU build instead of the CPU one: "
                       f"{GPU_ROUTE}); running on CPU")  # fmt: skip
    return [CPU], None


def used_device(session, providers: list[str]) -> tuple[str, str | None]:
    """('cuda' or 'cpu', a warning when CUDA was asked for but the session fell back to CPU)."""
    got = list(session.get_providers()) if hasattr(session, "get_providers") else [CPU]
    if CUDA in providers and CUDA not in got:
        return "cpu", "no usable CUDA GPU (onnxruntime could not start its CUDA provider); running on CPU"
    return ("cuda" if CUDA in got else "cpu"), None


def session_options(threads: int = 1):
    """onnxruntime options of every emoreel session: ``threads`` intra-op threads (1: the caller's thread,
    no thread pool to spin), sequential execution, every graph optimisation, the memory arena on (input
    shapes repeat frame after frame), no per-session info lines."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = 3
    return opts


def cpu_model() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    return Path(os.environ.get("EMOREEL_CACHE") or Path.home() / ".cache" / "emoreel")
