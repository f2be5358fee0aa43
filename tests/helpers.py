"""Test inputs built in the tests: videos whose frames say their own index."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from emoreel.media.video import VideoWriter

BITS = 7


def numbered_video(path, n=40, fps=Fraction(30000, 1001), size=(224, 96)):
    """Each frame shows its index in binary (white/black stripes), so reads can be checked exactly."""
    stripe = size[0] // BITS
    with VideoWriter(path, fps, size) as w:
        for i in range(n):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            for b in range(BITS):
                if i >> b & 1:
                    img[:, b * stripe : (b + 1) * stripe] = 255
            w.write(img)
    return path


def level(img) -> int:
    """The frame index drawn by :func:`numbered_video`."""
    stripe = img.shape[1] // BITS
    return sum(1 << b for b in range(BITS) if img[:, b * stripe + 4 : (b + 1) * stripe - 4].mean() > 128)


def cli_err(capsys, *args) -> tuple[int, str]:
    """Run the CLI in-process: its exit code and what it wrote to stderr (earlier output dropped)."""
    from emoreel.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def one_line(err: str) -> str:
    """The one non-empty line of an error message (asserts there is exactly one, and no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
