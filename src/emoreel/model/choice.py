"""Which shipped copy of the emotion model analyze uses by default on this CPU: int8 or float.

:func:`choose_default_model` times both copies once on a few dummy batches, and the choice is
cached in ``~/.cache/emoreel/model-choice.json`` (``$EMOREEL_CACHE`` overrides the folder),
keyed by CPU model, onnxruntime version and both files' sha256.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..runtime import cache_dir, cpu_model
from .emotion import EmotionModel, sha256_file, shipped_models_dir

log = logging.getLogger(__name__)

FLOAT_MODEL, INT8_MODEL = "emoreel-fer.onnx", "emoreel-fer-int8.onnx"
FLOAT_MUST_WIN = 1.2  # the float copy is chosen only when it runs at least this many times faster


def _time_model(path: Path, batches: int = 12, batch: int = 4) -> float:
    """Median seconds per dummy batch (with the mirror, as analyze runs it) after a warm-up."""
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
