"""Videos written from results: clips and the highlight reel (:func:`write_segments`), and
the annotated copy of the source (:func:`annotate`), each with the source's sound.

Clips are cut by source frame index, never by seeking to a time: a segment
``[a, b]`` holds exactly source frames ``a..b``, decoded in one forward pass.
Their times (clip names, segments.csv) and sound are the frames' presentation times;
a variable-frame-rate span is written at a constant rate with each frame held until the
next one plays (see :func:`frame_timeline` and :class:`emoreel.media.encode.Timeline`).
"""

from __future__ import annotations

import csv
import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import DataError
from ..media.encode import SoundTrack, Timeline, VideoWriter
from ..media.video import exact_fps, open_source, probe, read_frames
from ..results import Results, csv_safe
from ..types import Frame, Observation
from .draw import draw_frame, text_box, timecode
from .segments import Segment
from .selection import stride

ProgressFn = Callable[[int, "int | None"], None]


def clip_name(k: int, seg: Segment, fps: Fraction | float, timeline: Timeline | None = None) -> str:
    """``clip_003_12.345-15.678.mp4``: number, then start and end (end of the last frame) in seconds
    (presentation times with a variable-rate ``timeline``)."""
    if timeline is not None and timeline.times is not None:
        return f"clip_{k:03d}_{timeline.time(seg.first):.3f}-{timeline.end(seg.last):.3f}.mp4"
    fps = float(fps) or 1.0
    return f"clip_{k:03d}_{seg.first / fps:.3f}-{(seg.last + 1) / fps:.3f}.mp4"


def frame_timeline(video: Path, segs: list[Segment], fps: Fraction) -> Timeline:
    """When the frames of ``segs`` play: :class:`Timeline` ``(fps)`` for a constant-rate video,
    else their presentation times read from ``video``.

    The runs' rows carry results.csv's ``time_s`` (the decoder's presentation times): when each
    is within a quarter frame of ``frame / fps`` the video is taken as constant-rate and
    clips are cut exactly as frame numbers say. Otherwise every frame of the segments, the one
    after each and frame 0 (the origin of the sound) are read for their times, and the spans
    are written at the source's usual rate: the median step between frames, at least ``fps``
    (OpenCV's average), so no frame is dropped and holes repeat the frame before them.
    """
    fps = Fraction(fps) or Fraction(30)
    tol = 0.25 / float(fps)
    known = {f: t for s in segs for r in s.runs for f, t in r.times.items()}
    if all(abs(t - f / float(fps)) <= tol for f, t in known.items()):
        return Timeline(fps)
    wanted = {0} | {f for s in segs for f in range(s.first, s.last + 2)}
    times = {fr.index: fr.time_s for fr in read_frames(video, wanted)}
    if all(abs(t - f / float(fps)) <= tol for f, t in times.items()):
        return Timeline(fps)
    steps = [times[f + 1] - times[f] for f in times if f + 1 in times and times[f + 1] > times[f]]
    rate = max(fps, exact_fps(1 / float(np.median(steps)))) if steps else fps
    return Timeline(rate, times, times.get(0, 0.0))


SEGMENT_COLUMNS = ("segment", "first_frame", "last_frame", "frames", "start_s", "end_s", "tracks", "persons",
                   "emotions", "clip", "reel_first_frame", "on_screen")  # fmt: skip


def write_segments(
    video: Path, segs: list[Segment], clips_dir: Path | None = None, reel: Path | None = None,
    table: Path | None = None, progress: ProgressFn | None = None, sound: bool | SoundTrack = True,
) -> tuple[list[Path], int]:  # fmt: skip
    """Clips (one file per segment in ``clips_dir``) and/or the ``reel`` (all segments joined,
    captioned with time, person and emotion), in one forward pass over ``video``.

    Each segment holds exactly source frames ``first..last``. ``table`` (CSV) lists the
    segments with their clip name and where each starts in the reel. Clips and reel carry
    the video's sound, cut to the same frames, unless ``sound`` is False (see
    :mod:`emoreel.media.encode`). Returns ``(clip paths, reel frame count)``.

    Times (clip names, the table's ``start_s``/``end_s``) and the sound are the frames'
    presentation times. A variable-frame-rate video (see :func:`frame_timeline`) is written at
    a constant rate with each source frame repeated until the next one plays, so a hole in its
    timestamps lasts as long as in the source and the sound stays in sync throughout; the
    table's ``frames`` still counts source frames, ``reel_first_frame`` counts written ones.
    """
    info = probe(video)
    size = (info.width, info.height)
    timeline = frame_timeline(video, segs, info.fps or Fraction(30))
    fps = timeline.fps  # the rate clips are written at: the source's, or its usual rate when it varies
    track = _sound(video, info.fps or Fraction(30), sound)
    if track is not None and timeline.times is not None:
        track = dataclasses.replace(track, timeline=timeline)
    wanted = [f for s in segs for f in range(s.first, s.last + 1)]
    frames: Iterator[Frame] = read_frames(video, wanted)
    clips: list[Path] = []
    reel_w = VideoWriter(reel, fps, size, track, [(s.first, s.last) for s in segs]) if reel is not None else None
    total = len(wanted)
    done = reel_n = 0
    rows = []
    ok = False
    try:
        if clips_dir is not None:
            clips_dir.mkdir(parents=True, exist_ok=True)
        for k, s in enumerate(segs, 1):
            clip_w = None
            if clips_dir is not None:
                clip_w = VideoWriter(clips_dir / clip_name(k, s, fps, timeline), fps, size, track, [(s.first, s.last)])
            start_s, end_s = timeline.time(s.first), timeline.end(s.last)
            copies = timeline.copies(s.first, s.last)
            rows.append([k, s.first, s.last, s.frames, f"{start_s:.3f}", f"{end_s:.3f}",
                         " ".join(str(t) for t in sorted({r.track_id for r in s.runs})), csv_safe(s.who()), s.emotions(),
                         f"clips/{clip_w.path.name}" if clip_w else "", reel_n if reel_w else "",
                         ", ".join(s.on_screen)])  # fmt: skip
            try:
                for idx in range(s.first, s.last + 1):
                    fr = next(frames, None)
                    if fr is None or fr.index != idx:
                        raise DataError(f"{video} could not be read at frame {idx} (segment {k} needs {s.first}..{s.last})")
                    n = copies[idx - s.first]  # 1, except in a variable-rate span
                    if clip_w is not None:
                        for _ in range(n):
                            clip_w.write(fr.image)
                    if reel_w is not None and n:
                        img = fr.image.copy()
                        scale = max(0.5, img.shape[0] / 720)
                        text_box(img, s.caption(fr.time_s), (8, img.shape[0] - int(10 * scale)), (30, 30, 30), scale=0.6 * scale)
                        for _ in range(n):
                            reel_w.write(img)
                        reel_n += n
                    done += 1
                    if progress:
                        progress(done, total)
            except BaseException:
                if clip_w is not None:
                    clip_w.close(keep=False)
                raise
            if clip_w is not None:
                clip_w.close()
                clips.append(clip_w.path)
        if table is not None:
            with open(table, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(SEGMENT_COLUMNS)
                w.writerows(rows)
        ok = True
    finally:
        frames.close()
        if reel_w is not None:
            reel_w.close(keep=ok)
    return clips, reel_n


def write_clips(video: Path, segs: list[Segment], out_dir: Path, sound: bool = True) -> list[Path]:
    """One video file per segment in ``out_dir/clips``, exactly its source frames (and their sound)."""
    return write_segments(video, segs, clips_dir=out_dir / "clips", sound=sound)[0]


def write_reel(video: Path, segs: list[Segment], path: Path, sound: bool = True) -> int:
    """All segments joined into one captioned video (with their sound); returns its frame count."""
    return write_segments(video, segs, reel=path, sound=sound)[1]


def _sound(video: Path, fps: Fraction, sound: bool | SoundTrack) -> SoundTrack | None:
    if isinstance(sound, SoundTrack):
        return sound
    return SoundTrack.of(video, fps) if sound else None


def annotate(res: Results, video: Path, out_path: Path, progress: ProgressFn | None = None, show_time: bool = False,
             sound: bool | SoundTrack = True) -> int:  # fmt: skip
    """The source video with every face of ``res`` drawn (see :mod:`emoreel.outputs.draw`); returns frames written.

    Every source frame is written. Frames of an analysis with ``--every 1`` that have no
    row are copied unchanged. With ``--every N`` the overlays of the latest processed
    frame are held over the N-1 frames that were not analyzed (boxes at their last
    analyzed place), so they don't blink; frames outside the analyzed range are copied
    unchanged. ``show_time`` burns a timecode into every frame. The video's sound is kept
    unless ``sound`` is False.
    """
    by_frame: dict[int, list[Observation]] = {}
    for o in res.rows():
        by_frame.setdefault(o.frame, []).append(o)
    hold = stride(res)
    n = 0
    with open_source(video) as src:
        total = src.info.frame_count or None
        current: list[Observation] = []
        last = -(10**9)
        track = _sound(video, src.info.fps, sound) if total else None
        size = (src.info.width, src.info.height)
        with VideoWriter(out_path, src.info.fps, size, track, [(0, total - 1)] if total else None) as w:
            for fr in src:
                if fr.index in by_frame:
                    current, last = by_frame[fr.index], fr.index
                elif fr.index - last >= hold:
                    current = []
                if current or show_time:
                    w.write(draw_frame(fr.image, current, timecode(fr.time_s) if show_time else "", legend=True))
                else:
                    w.write(fr.image)
                n += 1
                if progress:
                    progress(n, total)
            if n == 0:  # nothing to keep
                raise DataError(f"{video} could not be decoded at all; nothing written")
        if src.truncated:  # the file is kept (its sound ends with its last frame): say what is missing
            raise DataError(f"{video} could not be decoded past frame {src.last_index} of {total}: {out_path} holds "
                            f"only the {n} frames before it")  # fmt: skip
    return n
