"""Emotion model latency with onnxruntime on one CPU core: ms per face at batch 1 and batched.

    .venv/bin/python benchmarks/model_speed.py [MODEL.onnx]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from bench_analyze import cpu_name  # same folder

from emoreel.model.emotion import EmotionModel


def main() -> None:
    model = EmotionModel(sys.argv[1] if len(sys.argv) > 1 else None, threads=1)
    rng = np.random.default_rng(0)
    print(f"model {model.path.name} ({model.path.stat().st_size / 1e6:.1f} MB), 1 onnxruntime thread, {cpu_name()}\n")
    print("| batch | ms per face (median of up to 300 runs, at most 5 s per cell) | ms per face with mirror TTA |\n|---|---|---|")
    for batch in (1, 4, 16, 64):
        crops = [rng.integers(0, 255, (48, 48), np.uint8) for _ in range(batch)]
        row = []
        for tta in (False, True):
            for _ in range(5):
                model.predict(crops, tta=tta)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 300 and (len(times) < 20 or time.perf_counter() - start < 5):  # slow CPUs: a time budget
                t = time.perf_counter()
                model.predict(crops, tta=tta)
                times.append(time.perf_counter() - t)
            row.append(statistics.median(times) * 1000 / batch)
        print(f"| {batch} | {row[0]:.3f} | {row[1]:.3f} |")


if __name__ == "__main__":
    main()
