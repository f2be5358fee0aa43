"""Writing videos: H.264 with the source's sound through ffmpeg, or OpenCV when ffmpeg is missing.

ffmpeg comes from the ``imageio-ffmpeg`` wheel (a static build, nothing downloaded), or from
the ``PATH``. Frames are piped to it raw, so every frame written is a frame in the file.
The sound of a clip is cut from the source by frame numbers: frame ``i`` of the source
plays at ``SoundTrack.start_s + i / fps`` on the source's timeline, and each span of frames
gets exactly ``frames / fps`` seconds of audio (silence where the source has none), so
sound stays in sync across the segments of a reel.

Variable-frame-rate sources (a :class:`Timeline` with the frames' presentation times) are
written as constant-rate files too: each source frame is held until the next one plays
(repeated over a hole in the timestamps), at ``Timeline.fps``, and the sound of a span is cut
from its first frame's presentation time for as long as the written frames last.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from ..errors import OutputError

log = logging.getLogger(__name__)

RATE = 48000  # audio sample rate of everything emoreel writes
FFMPEG_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv"}  # written as H.264 (+ AAC) by ffmpeg


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str | None:
    """Path of an ffmpeg binary: imageio-ffmpeg's, else one on the PATH, else None."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and os.access(exe, os.X_OK):
            return exe
    except Exception:  # not installed, or no binary for this platform
        pass
    return shutil.which("ffmpeg")


@dataclass(frozen=True)
class Timeline:
    """When source frames play, and how a span of them becomes frames of a constant-rate file.

    ``times=None`` (a constant-rate source): frame ``i`` plays at ``i / fps`` and is written
    once, exactly as before. Otherwise ``times`` maps source frames to their presentation
    times (seconds on the decoder's clock, like results.csv's ``time_s``; ``origin`` is frame
    0's), frames not in it are interpolated between their known neighbours (extrapolated at
    ``fps`` past the ends), and a span ``first..last`` is written at ``fps``: frame ``i`` is
    held from output frame ``round((t(i) - t(first)) * fps)`` until the next one starts, the
    last until ``end(last)``. A hole in the timestamps so repeats the frame before it (as a
    player shows it); frames closer together than ``1 / fps`` may be dropped.
    """

    fps: Fraction
    times: Mapping[int, float] | None = field(default=None, compare=False)
    origin: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", sorted(self.times) if self.times else [])

    def time(self, frame: int) -> float:
        """When source frame ``frame`` plays (the decoder's clock)."""
        if self.times is None:
            return float(frame / self.fps)
        t = self.times.get(frame)
        if t is not None:
            return float(t)
        known = self._known
        if not known:
            return float(frame / self.fps)
        k = bisect.bisect_left(known, frame)
        if k == 0:
            return float(self.times[known[0]] - (known[0] - frame) / self.fps)
        if k == len(known):
            return float(self.times[known[-1]] + (frame - known[-1]) / self.fps)
        a, b = known[k - 1], known[k]
        ta, tb = self.times[a], self.times[b]
        return float(ta + (tb - ta) * (frame - a) / (b - a))

    def end(self, last: int) -> float:
        """When source frame ``last`` stops playing: when the next one starts."""
        if self.times is None:
            return float((last + 1) / self.fps)
        if last + 1 in self.times or (self._known and self._known[-1] > last):
            return max(self.time(last + 1), self.time(last))
        return self.time(last) + float(1 / self.fps)

    def copies(self, first: int, last: int) -> list[int]:
        """How many output frames each source frame ``first..last`` is written as."""
        if self.times is None:
            return [1] * (last - first + 1)
        t0, rate = self.time(first), float(self.fps)
        ticks, prev = [], 0
        for t in [self.time(i) for i in range(first, last + 1)] + [self.end(last)]:
            prev = max(prev, round((t - t0) * rate))
            ticks.append(prev)
        return [b - a for a, b in zip(ticks, ticks[1:])]

    def frames_out(self, first: int, last: int) -> int:
        """Output frames of the span ``first..last``."""
        return last - first + 1 if self.times is None else sum(self.copies(first, last))


@dataclass(frozen=True)
class SoundTrack:
    """The first audio stream of ``source``: where its video frame 0 plays (``start_s``, in
    seconds on ffmpeg's timeline of the file) and its frame rate; with a variable-rate
    ``timeline``, frames play at their presentation times instead of ``frame / fps``."""

    source: Path
    start_s: float
    fps: Fraction
    timeline: Timeline | None = None

    @classmethod
    def of(cls, video: str | Path, fps: Fraction | float) -> "SoundTrack | None":
        """The sound of ``video``, or None when it has no audio stream or ffmpeg is missing."""
        exe = ffmpeg_exe()
        if exe is None or not fps:
            return None
        cmd = [exe, "-hide_banner", "-nostdin", "-i", str(video), "-map", "0:v:0", "-frames:v", "1",
               "-vf", "showinfo", "-f", "null", "-"]  # fmt: skip
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60).stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("cannot read the sound of %s: %s", video, exc)
            return None
        if not re.search(r"Stream #0:\d+.*: Audio:", out):
            return None
        m = re.search(r"pts_time:\s*(-?[\d.]+)", out)
        start = max(0.0, float(m.group(1))) if m else 0.0
        return cls(Path(video), start, Fraction(fps))

    def time(self, frame: int) -> float:
        """When source frame ``frame`` plays, on the file's timeline."""
        tl = self.timeline
        if tl is not None and tl.times is not None:
            return self.start_s + tl.time(frame) - tl.origin
        return self.start_s + float(frame / self.fps)


def sound_note(video: Path, mute: bool, out: Path, fps: Fraction) -> tuple["SoundTrack | bool", str]:
    """The ``sound`` argument for writing ``out`` from ``video`` (frame rate ``fps``, as
    :func:`emoreel.media.video.probe` reads it), and a few words saying what it will be."""
    if mute:
        return False, "muted"
    if out.suffix.lower() not in FFMPEG_SUFFIXES and out.suffix:
        return False, f"no sound: {out.suffix} files are written without"
    if ffmpeg_exe() is None:
        return False, "no sound: ffmpeg not found (pip install imageio-ffmpeg)"
    track = SoundTrack.of(video, fps)
    return (track, "with sound") if track else (False, "no sound: the video has none")


MAX_SOUND_INPUTS = 64  # more spans than this are cut one by one into a temporary WAV first


def _span_samples(spans: Sequence[tuple[int, int]], fps: Fraction, timeline: Timeline | None = None) -> list[int]:
    """Audio samples of each span: boundaries at round(frames so far * RATE / fps), so the
    sound of span k starts exactly where its first frame starts in the output (frames as
    written: ``timeline`` says how many a variable-rate span becomes)."""
    counts, frames, edge = [], 0, 0
    for first, last in spans:
        frames += timeline.frames_out(first, last) if timeline is not None else last - first + 1
        end = round(frames * RATE / fps)
        counts.append(end - edge)
        edge = end
    return counts


def _span_chain(n: int, fades: bool) -> str:
    """Filters that turn one cut input into exactly ``n`` stereo samples starting at its seek point."""
    fade = RATE // 200  # 5 ms fades where spans join, so cuts don't click
    chain = f"aresample={RATE}:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo,apad,atrim=end_sample={n}"
    if fades and n > 2 * fade:
        chain += f",afade=t=in:ns={fade},afade=t=out:ss={n - fade}:ns={fade}"
    return chain


def _cut(sound: SoundTrack, first: int, n: int) -> list[str]:
    return ["-ss", f"{sound.time(first):.6f}", "-t", f"{n / RATE + 0.1:.6f}", "-i", str(sound.source)]


def _render_sound(exe: str, sound: SoundTrack, spans: Sequence[tuple[int, int]], fps: Fraction, wav: Path) -> None:
    """The sound of ``spans`` joined into one 16-bit stereo WAV, one ffmpeg run per span."""
    import wave

    with wave.open(str(wav), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for (first, _), n in zip(spans, _span_samples(spans, fps, sound.timeline)):
            cmd = [exe, "-v", "error", "-nostdin", *_cut(sound, first, n), "-map", "0:a:0", "-af", _span_chain(n, True),
                   "-f", "s16le", "-acodec", "pcm_s16le", "-"]  # fmt: skip
            run = subprocess.run(cmd, capture_output=True)
            if run.returncode != 0:
                raise OutputError(f"cannot cut the sound of {sound.source}: {run.stderr.decode(errors='replace').strip()}")
            out.writeframes(run.stdout[: 4 * n].ljust(4 * n, b"\0"))


def _sound_args(sound: SoundTrack, spans: Sequence[tuple[int, int]], fps: Fraction) -> tuple[list[str], list[str]]:
    """ffmpeg inputs and output options that put the sound of ``spans`` (source frames
    ``first..last``, in order) under the piped video (input 0)."""
    inputs: list[str] = []
    chains: list[str] = []
    for k, ((first, _), n) in enumerate(zip(spans, _span_samples(spans, fps, sound.timeline)), 1):
        inputs += _cut(sound, first, n)
        chains.append(f"[{k}:a:0]{_span_chain(n, len(spans) > 1)}[a{k}]")
    joined = "".join(f"[a{k}]" for k in range(1, len(spans) + 1))
    graph = ";".join(chains) + f";{joined}concat=n={len(spans)}:v=0:a=1[aout]"
    return inputs, ["-filter_complex", graph, "-map", "0:v", "-map", "[aout]"]


class VideoWriter:
    """Write BGR frames to a video file; the file appears under its name only when closed cleanly.

    ``.mp4/.mov/.m4v/.mkv`` are H.264 (yuv420p, CRF 18) written by ffmpeg when there is one,
    with ``sound`` cut to ``spans`` (source frames ``(first, last)`` in the order they are
    written) as AAC; without ffmpeg, or for ``.avi``, OpenCV writes mp4v/MJPG with no sound.
    ``has_sound`` says which happened. With a variable-rate ``sound.timeline`` each span lasts
    ``timeline.frames_out(first, last)`` frames at ``fps`` (the timeline's rate): the caller
    writes each source frame ``timeline.copies`` times.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, size: tuple[int, int],
                 sound: SoundTrack | None = None, spans: Sequence[tuple[int, int]] | None = None):  # fmt: skip
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.size = (int(size[0]), int(size[1]))
        self.frames = 0
        self._w = self._proc = self._log = self._wav = None
        exe = ffmpeg_exe() if self.path.suffix.lower() in FFMPEG_SUFFIXES else None
        if exe is not None:
            self._start_ffmpeg(exe, Fraction(fps) if fps else Fraction(30), sound, spans)
            self.has_sound = sound is not None and bool(spans)
        else:
            fourcc = {".avi": "MJPG", ".mkv": "MJPG"}.get(self.path.suffix.lower(), "mp4v")
            self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
            if not self._w.isOpened():
                raise OutputError(f"cannot write video {self.path} (unsupported extension or unwritable folder)")
            self.has_sound = False

    def _start_ffmpeg(self, exe: str, fps: Fraction, sound: SoundTrack | None, spans) -> None:
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot write video {self.path}: {self.path.parent} is not a folder")
        w, h = self.size
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-framerate", f"{fps.numerator}/{fps.denominator}",
               "-i", "pipe:0"]  # fmt: skip
        out_opts = ["-map", "0:v"]
        if sound is not None and spans and len(spans) > MAX_SOUND_INPUTS:
            self._wav = self.path.with_name(f".{self.path.stem}.partial.wav")
            try:
                _render_sound(exe, sound, spans, fps, self._wav)
            except BaseException:
                self._wav.unlink(missing_ok=True)
                raise
            cmd += ["-i", str(self._wav)]
            out_opts = ["-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "160k"]
        elif sound is not None and spans:
            inputs, out_opts = _sound_args(sound, spans, fps)
            cmd += inputs
            out_opts += ["-c:a", "aac", "-b:a", "160k"]
        cmd += out_opts
        if sound is not None and spans:
            cmd += ["-shortest"]  # fewer frames written than the spans promised (a source that ended): sound ends with them
        if w % 2 or h % 2:  # yuv420p needs even sides
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", {".mkv": "matroska"}.get(self.path.suffix.lower(), "mp4"),
                str(self.tmp)]  # fmt: skip
        self._log = tempfile.TemporaryFile()
        try:
            # its own session: a Ctrl-C in the terminal reaches emoreel, which then finishes the file
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                          start_new_session=True)  # fmt: skip
        except OSError as exc:
            if self._wav is not None:
                self._wav.unlink(missing_ok=True)
            raise OutputError(f"cannot run ffmpeg ({exe}): {exc}") from exc

    def _ffmpeg_error(self, code: int | None) -> str:
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else f"ffmpeg exited with code {code}"

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self._proc is not None:
            try:
                self._proc.stdin.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
            except OSError:  # ffmpeg stopped: say why
                raise OutputError(f"cannot write video {self.path}: {self._ffmpeg_error(self._proc.wait())}") from None
        else:
            self._w.write(image)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file; ``keep=False`` throws it away."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                proc.stdin.close()
            except OSError:
                pass
            if not keep:
                proc.kill()
            code = proc.wait()
            msg = self._ffmpeg_error(code) if keep and code != 0 else ""
            self._log.close()
            if msg:
                self.tmp.unlink(missing_ok=True)
                raise OutputError(f"cannot write video {self.path}: {msg}")
        elif self._w is not None:
            self._w.release()
            self._w = None
        else:
            return
        if self._wav is not None:
            self._wav.unlink(missing_ok=True)
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None)
