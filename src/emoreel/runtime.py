"""Where and how the ONNX networks run: the device (``--device``), session options, int8 or float per CPU.

* :func:`providers_for` turns ``auto|cpu|cuda`` into onnxruntime execution providers;
  when a GPU was asked for (``cuda``) or could be used (``auto`` with onnxruntime-gpu
  installed) but none is usable, it says why in one warning line and runs on CPU.
* :func:`session_options` are the options every emoreel session uses.
* :func:`choose_default_model` picks the int8 or the float copy of the shipped model
  for this CPU: both are timed once on a few dummy batches, and the choice is cached in
  ``~/.cache/emoreel/model-choice.json`` (``$EMOREEL_CACHE`` overrides the folder),
  keyed by CPU model, onnxruntime version and both files' sha256.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
FLOAT_MODEL, INT8_MODEL = "emoreel-fer.onnx", "emoreel-fer-int8.onnx"
FLOAT_MUST_WIN = 1.2  # the float copy is chosen only when it runs at least this many times faster


def providers_for(device: str = "auto", available: list[str] | None = None) -> tuple[list[str], str | None]:
    """(execution providers, a one-line warning or None) for ``device``.

    ``available`` defaults to ``onnxruntime.get_available_providers()``.
    """
    if device not in DEVICES:
        from .errors import InputError

        raise InputError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    if device == "cpu":
        return [CPU], None
    if CUDA in available:
        return [CUDA, CPU], None
    if device == "cuda":
        return [CPU], ("--device cuda: onnxruntime offers no CUDA provider (install the GPU build: "
                       "pip install 'emoreel[gpu]'); running on CPU")  # fmt: skip
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


def _time_model(path: Path, batches: int = 12, batch: int = 4) -> float:
    """Median seconds per dummy batch (with the mirror, as analyze runs it) after a warm-up."""
    from .model.emotion import EmotionModel

    m = EmotionModel(path, threads=1)
    s = m.spec
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (s.height, s.width) if s.channels == 1 else (s.height, s.width, 3), np.uint8)
             for _ in range(batch)]  # fmt: skip
    m.predict(crops, tta=True)
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        m.predict(crops, tta=True)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def choose_default_model(models_dir: Path | None = None) -> Path:
    """The shipped model analyze uses by default on this CPU: int8 unless float is measurably faster.

    Measured once per CPU model, onnxruntime version and model files; cached (see the module doc).
    Any failure (no float copy, unwritable cache) falls back to the int8 copy.
    """
    import onnxruntime as ort

    from .model.emotion import sha256_file, shipped_models_dir

    d = models_dir or shipped_models_dir()
    int8, flt = d / INT8_MODEL, d / FLOAT_MODEL
    if not flt.is_file() or not int8.is_file():
        return int8
    try:
        key = "|".join([cpu_model(), ort.__version__, sha256_file(int8)[:16], sha256_file(flt)[:16]])
        cache = cache_dir() / "model-choice.json"
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
        if key not in known:
            t_int8, t_float = _time_model(int8), _time_model(flt)
            known[key] = {"model": FLOAT_MODEL if t_float * FLOAT_MUST_WIN < t_int8 else INT8_MODEL,
                          "int8_ms": round(t_int8 * 1000, 3), "float_ms": round(t_float * 1000, 3)}  # fmt: skip
            log.debug("emotion model timing on %s: %s", cpu_model(), known[key])
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(known, indent=1))
                os.replace(tmp, cache)
            except OSError as e:
                log.debug("cannot cache the model choice in %s: %s", cache, e)
        return d / known[key]["model"]
    except Exception as e:  # timing must never stop an analysis
        log.debug("model choice failed (%s); using %s", e, INT8_MODEL)
        return int8
