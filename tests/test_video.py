"""Frame sources and the writer: exact times, ranges, frame-accurate reads, atomic output."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from emoreel.errors import InputError, VideoOpenFailure
from emoreel.media.video import VideoWriter, exact_fps, open_source, read_frames

from helpers import level, numbered_video


@pytest.fixture
def vid(tmp_path):
    return numbered_video(tmp_path / "n.mp4")


def test_exact_fps():
    assert exact_fps(29.97002997) == Fraction(30000, 1001)
    assert exact_fps(25.0) == 25
    assert exact_fps(0) == 0


def test_reads_every_frame_with_exact_times(vid):
    with open_source(vid) as src:
        assert src.info.frame_count == 40 and src.info.fps == Fraction(30000, 1001)
        frames = list(src)
    assert [f.index for f in frames] == list(range(40))
    assert [level(f.image) for f in frames] == list(range(40))
    assert frames[30].time_s == pytest.approx(30 * 1001 / 30000)
    assert not src.truncated


def test_every_start_end_max(vid):
    fps = 30000 / 1001
    with open_source(vid, every=4, start=5 / fps, end=30 / fps) as src:
        got = [(f.index, level(f.image)) for f in src]
    assert got == [(i, i) for i in range(5, 30, 4)]
    with open_source(vid, max_frames=3) as src:
        assert [f.index for f in src] == [0, 1, 2]
        assert src.expected_frames() == 3


def test_stopping_early_joins_the_decoder(vid):
    with open_source(vid) as src:
        for f in src:
            if f.index == 2:
                break
        assert src._thread is not None and not src._thread.is_alive()


def test_read_frames_is_frame_accurate(vid):
    got = [(f.index, level(f.image)) for f in read_frames(vid, [33, 3, 17, 17])]
    assert got == [(3, 3), (17, 17), (33, 33)]


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "a.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25, (64, 48)) as w:
            w.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_sources(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(VideoOpenFailure):
        open_source(junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(InputError, match="--every"):
        open_source(junk, every=0)


def test_image_glob_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), i, np.uint8))
    with open_source(str(tmp_path / "*.png")) as src:
        assert src.info.kind == "images"
        assert [int(f.image[0, 0, 0]) for f in src] == [1, 2, 10]
