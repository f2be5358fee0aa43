"""A small progress line for terminals: frames done, frames/s and ETA (the CLI's, and ``analyze_to_dir(..., progress=True)``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Call with ``(done, total)``; redraws at most ``hz`` times a second. ``close()`` ends the line."""

    def __init__(self, label: str = "", stream: TextIO | None = None, hz: float = 4.0, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.min_dt = label, 1.0 / hz
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int | None = None) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.min_dt and done != total):
            return
        self.last = now
        self.stream.write("\r" + self.render(done, total, now - self.t0))
        self.stream.flush()
        self.drawn = True

    @staticmethod
    def render(done: int, total: int | None, elapsed: float, width: int = 24) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            eta = (total - done) / rate if rate > 0 else 0.0
            return f"[{bar}] {done}/{total} frames  {rate:5.1f} frames/s  ETA {_hms(eta)}  "
        return f"{done} frames  {rate:5.1f} frames/s  elapsed {_hms(elapsed)}  "

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
