"""Frame sources (video file, camera, image folder/glob); :class:`VideoWriter` is in :mod:`emoreel.media.encode`,
image files in :mod:`emoreel.media.images`, shot cuts in :mod:`emoreel.media.cuts`.

Sources decode on a background thread into a small bounded queue, so decoding
overlaps with the work done on each frame. Times are exact: ``index / fps``
with ``fps`` a :class:`~fractions.Fraction` (29.97 is 30000/1001, not 29).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputError, VideoOpenFailure
from ..types import Frame, VideoInfo
from .encode import VideoWriter, ffmpeg_exe
from .images import MAX_IMAGE_PIXELS, ImageTooLarge, encodable, image_root, image_size, imread, list_images, relative_name

log = logging.getLogger(__name__)

MAX_CAMERA = 1023
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                  ".m2ts", ".3gp", ".ogv"}  # fmt: skip
RESYNC_STEPS_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # after a read error: seek this far past the last good frame, in turn


def _declared_count(path: str) -> bool:
    """Whether the container stores its frame count (MP4/MOV, AVI); Matroska/WebM and streams only estimate it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip") or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def variable_frame_rate(path: str, timeout: float = 300.0) -> bool:
    """Whether the frames of ``path``'s video stream are not evenly spaced in time (phones record so): the packet
    timestamps, demuxed by ffmpeg (nothing decoded), differ by more than a rounding tick. False when ffmpeg cannot tell."""
    r = _demux_video(path, "framecrc", timeout)
    if r is None:
        return False
    pts = []
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if line.startswith("#") or len(cells) < 3:
            continue
        try:
            pts.append(int(cells[2]))
        except ValueError:
            continue
    if len(pts) < 3:
        return False
    steps = np.diff(np.unique(pts))
    mid = float(np.median(steps))
    return bool(np.abs(steps - mid).max() > max(1.0, 0.02 * mid))


def container_intact(path: str, timeout: float = 120.0) -> bool:
    """Whether every packet of ``path``'s video stream is in the file: ffmpeg demuxes it (no decoding, seconds for
    a film) and reports nothing. A cut file says "partial file" or worse. False when ffmpeg cannot tell."""
    r = _demux_video(path, "null", timeout)
    return r is not None and r.returncode == 0 and not r.stderr.strip()


def _demux_video(path: str, fmt: str, timeout: float):
    """ffmpeg reading every packet of ``path``'s first video stream without decoding it, written as ``fmt`` to
    stdout (``framecrc``: one line per packet; ``null``: nothing); the finished process (text output), or None
    when there is no ffmpeg or it did not finish in ``timeout`` seconds."""
    import subprocess

    exe = ffmpeg_exe()
    if exe is None:
        return None
    try:
        return subprocess.run([exe, "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy", "-f", fmt, "-"],
                              capture_output=True, text=True, errors="replace", timeout=timeout)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None


def exact_fps(fps: float) -> Fraction:
    """The exact rate behind a float fps: 29.97 or 29.97002997 -> 30000/1001, 25.0 -> 25."""
    if not fps or not np.isfinite(fps) or fps <= 0:
        return Fraction(0)
    for base in (24, 30, 48, 60, 120):  # NTSC rates, often stored rounded to 2 decimals
        ntsc = Fraction(base * 1000, 1001)
        if abs(fps - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def no_images_hint(source: str) -> str:
    """The error for a folder or glob without images: one that holds videos points to ``batch``."""
    import glob as _glob
    from shlex import quote

    p = Path(source)
    found = sorted(str(f) for f in p.iterdir()) if p.is_dir() else _glob.glob(source)
    videos = [f for f in found if Path(f).suffix.lower() in VIDEO_SUFFIXES and Path(f).is_file()]
    if not videos:
        return f"no images found in {source}"
    return (f"no images found in {source}, but {len(videos)} video{'s' if len(videos) > 1 else ''}: analyze takes one "
            f"video (emoreel analyze {quote(videos[0])} -o OUT_DIR); for all of them: emoreel batch {quote(source)} -o ROOT")


class VideoSource:
    """Iterate :class:`Frame` objects from a source; use as a context manager.

    ``every`` keeps every Nth frame, ``start``/``end`` (seconds) bound the range and
    ``max_frames`` caps how many frames are yielded. After iteration,
    :attr:`truncated` says whether a file ended before its declared frame count.
    :meth:`record` keeps a copy of every frame read (skipped ones included), so that
    frame indices of a camera run point into the recording.
    """

    def __init__(
        self,
        source: str | int | Path | list[str | Path],
        every: int = 1,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
        image_fps: float = 1.0,
        queue_size: int = 8,
        root: str | Path | None = None,
    ):
        if every < 1:
            raise InputError("--every must be at least 1")
        if start is not None and start < 0 or end is not None and end <= 0:
            raise InputError("--start must be >= 0 and --end > 0")
        if start is not None and end is not None and end <= start:
            raise InputError(f"--end ({end}) must be after --start ({start})")
        if max_frames is not None and max_frames < 1:
            raise InputError("--max-frames must be at least 1")
        self.every, self.start, self.end, self.max_frames = every, start, end, max_frames
        self._queue_size = queue_size
        self._cap = None
        self._images: list[str] | None = None
        self.truncated = False
        self.last_index = -1
        self.bad_images = 0
        self.skipped_images: list[str] = []  # names of unreadable images, in order
        self.gaps: list[list[int]] = []  # [first, last] source frames lost to damage and skipped over
        self.declared_count = False  # the container stores its frame count (else it is an estimate)
        self.ended_early = False  # a stream ended cleanly a little before its declared (or estimated) count
        self.frames_read: int | None = None  # where a video's stream ended (source frames), once read to its end
        self._root = Path(".")
        self.name = ""  # what the ``source`` column of video/camera rows says
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._recorder: VideoWriter | None = None
        if isinstance(source, (list, tuple)):
            self._open_images([str(f) for f in source], root, image_fps)
        elif isinstance(source, int) or (isinstance(source, str) and source.startswith("camera:")):
            self._open_camera(int(str(source).split(":")[-1]))
        else:
            self._open_path(str(source), image_fps)

    # -- opening -------------------------------------------------------------------------
    def _open_camera(self, n: int) -> None:
        if not 0 <= n <= MAX_CAMERA:
            raise InputError(f"--camera must be between 0 and {MAX_CAMERA} (got {n})")
        cap = cv2.VideoCapture(n)
        ok, img = cap.read() if cap.isOpened() else (False, None)
        if not ok or img is None:
            cap.release()
            raise VideoOpenFailure(f"camera {n} is not available (no device or no permission)")
        self._cap, self._first = cap, img
        self.name = f"camera:{n}"
        fps = exact_fps(cap.get(cv2.CAP_PROP_FPS)) or Fraction(30)
        self.info = VideoInfo(f"camera:{n}", "camera", img.shape[1], img.shape[0], fps, 0)

    def _open_path(self, source: str, image_fps: float) -> None:
        images = list_images(source)
        if images is not None:
            if not images:
                raise InputError(no_images_hint(source))
            self._open_images(images, image_root(source), image_fps, source)
            return
        p = Path(source)
        if not p.exists():
            raise InputError(f"no such file: {source}")
        if p.is_dir():
            raise InputError(f"{source} is a folder with no images")
        if not p.is_file():  # a FIFO would block the decoder forever, a device read without end
            raise InputError(f"{source} is not a regular file (a pipe, socket or device); give a video file")
        if not os.access(p, os.R_OK):
            raise InputError(f"cannot read {source}: permission denied")
        if not encodable(str(p)):
            raise InputError(f"cannot open {source!r}: its name is not valid UTF-8 (rename the file)")
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise VideoOpenFailure(f"cannot open {source} as video (not a video, or corrupt/truncated)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        fps = exact_fps(cap.get(cv2.CAP_PROP_FPS))
        if w <= 0 or h <= 0 or not fps:
            cap.release()
            raise VideoOpenFailure(f"cannot open {source} as video (no video stream)")
        self._cap, self._first = cap, None
        self.name = p.name
        self.declared_count = _declared_count(str(p))
        self.info = VideoInfo(str(p), "video", w, h, fps, n)
        if (self.start or self.end is not None) and variable_frame_rate(str(p)):  # frame index = time x fps is wrong there
            cap.release()
            raise InputError(f"{source} has a variable frame rate: emoreel cannot start or end part-way exactly there "
                             "(--start, --end, --resume, batch --split); analyse it whole, or give it a constant rate "
                             "first (ffmpeg -i IN -fps_mode cfr OUT)")  # fmt: skip

    @property
    def image_names(self) -> list[str]:
        """Names of an image source's files, relative to its folder (or a glob's fixed part), in frame order."""
        return [relative_name(f, self._root) for f in self._images or ()]

    def _open_images(self, images: list[str], root: str | Path | None, image_fps: float, label: str | None = None) -> None:
        """An image source over ``images`` (in this order); names are relative to ``root``."""
        if not images:
            raise InputError("no images given")
        first = size = None
        for f in images:  # the first image that can be read sets the nominal size
            size = image_size(f)
            if size is not None and size[0] * size[1] <= MAX_IMAGE_PIXELS:
                break
        if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
            first = imread(images[0])
            if first is None:
                raise InputError(f"cannot read image {images[0]}")
            size = (first.shape[1], first.shape[0])
        self._images = images
        self._root = Path(root) if root is not None else Path(os.path.commonpath([str(Path(f).parent) for f in images]))
        self.info = VideoInfo(label or str(self._root), "images", int(size[0]), int(size[1]),
                              exact_fps(image_fps), len(images))  # fmt: skip

    @property
    def image_paths(self) -> list[str]:
        """The files of an image source, in frame order (empty for videos and cameras)."""
        return list(self._images or ())

    def record(self, path: str | Path) -> Path:
        """Write every frame read to ``path`` (from the first, also with a start time); call before iterating.

        The file appears under its name when the source is closed, also after an
        interruption, holding the frames read so far.
        """
        if self.info.kind == "images":
            raise InputError("recording is for cameras and videos, not image folders")
        self._recorder = VideoWriter(path, self.info.fps, (self.info.width, self.info.height))
        return self._recorder.path

    # -- range -----------------------------------------------------------------------------
    @property
    def first_index(self) -> int:
        if self.start is None or not self.info.fps:
            return 0
        return int(round(self.start * self.info.fps))

    @property
    def stop_index(self) -> int | None:
        """One past the last source frame index to consider (None = to the end)."""
        n = self.info.frame_count or None
        if self.end is not None and self.info.fps:
            e = int(round(self.end * self.info.fps))
            n = e if n is None else min(n, e)
        return n

    def expected_frames(self) -> int | None:
        """How many frames iteration will yield, when the source says its length."""
        stop = self.stop_index
        if stop is None:
            return self.max_frames
        k = max(0, -(-(stop - self.first_index) // self.every))
        return min(k, self.max_frames) if self.max_frames else k

    # -- reading ---------------------------------------------------------------------------
    def _time(self, index: int) -> float:
        return float(index / self.info.fps) if self.info.fps else float(index)

    def stream_meta(self) -> dict:
        """run.json entries about how the video read: frames lost to damage (``gaps``), an early clean end."""
        meta: dict = {}
        if self.gaps:
            meta["gaps"] = [list(g) for g in self.gaps]
        if self.ended_early:
            meta["frames_in_stream"] = self.last_index + 1
        if self.frames_read is not None and self.info.frame_count and self.frames_read != self.info.frame_count:
            meta["frames_declared"], meta["frames_decoded"] = self.info.frame_count, self.frames_read
        return meta

    def _produce(self) -> Iterator[Frame]:
        first, stop, yielded = self.first_index, self.stop_index, 0
        if self._images is not None:
            for i in range(first, len(self._images) if stop is None else min(stop, len(self._images)), self.every):
                name = relative_name(self._images[i], self._root)
                try:
                    img = imread(self._images[i])
                except ImageTooLarge as e:
                    self.bad_images += 1
                    self.skipped_images.append(name)
                    log.warning("%s", e)
                    continue
                if img is None:
                    self.bad_images += 1
                    self.skipped_images.append(name)
                    log.warning("cannot read image %s; skipped", self._images[i])
                    continue
                yield Frame(i, self._time(i), img, name)
                yielded += 1
                if self.max_frames and yielded >= self.max_frames:
                    return
            return
        cap, rec = self._cap, self._recorder
        index = 0
        last_img = None
        self._last_t = -1.0
        if self._first is not None:  # camera: the probe frame is frame 0
            if rec:
                rec.write(self._first)
            yield Frame(0, 0.0, self._first, self.name)
            yielded, index = 1, 1
        elif first > 0 and rec is None:
            cap.set(cv2.CAP_PROP_POS_FRAMES, first)
            index = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) or first
        while not self._stop.is_set():
            if self.max_frames and yielded >= self.max_frames:
                return
            if stop is not None and index >= stop:
                return
            keep = (index - first) % self.every == 0 and index >= first
            ok = cap.grab()
            if not ok:
                resumed = self._resync(cap, index, stop) if self.info.kind == "video" else None
                if resumed is None:
                    self.frames_read = index if self.info.kind == "video" else None  # the stream's end
                    break
                if rec:  # the recording keeps one file frame per source frame: the gap repeats the last frame
                    for _ in range(resumed - index):
                        rec.write(last_img if last_img is not None else np.zeros((self.info.height, self.info.width, 3), np.uint8))
                log.warning("%s: frames %d-%d could not be decoded; skipped", self.info.path, index, resumed - 1)
                self.gaps.append([index, resumed - 1])
                index = resumed
                continue
            if keep or rec:
                ok, img = cap.retrieve()
                if not ok or img is None:  # a frame that does not decode: skip it, keep reading
                    self.gaps.append([index, index])
                    index += 1
                    continue
                last_img = img
                if rec:
                    rec.write(img)
                if keep:
                    yield Frame(index, self._pts(cap, index), img, self.name)
                    yielded += 1
            index += 1
        if self.info.kind == "video" and self.info.frame_count and not self._stop.is_set():
            expected_end = stop if stop is not None else self.info.frame_count
            # containers over-declare a little (phones by a few frames): a clean end within one second and 1% of
            # the count (at least 2 frames) of the declared end is the file's end; short of that, a damaged file
            slack = max(2, min(int(round(0.01 * expected_end)), int(self.info.fps or 30)))
            if index < expected_end - 2:
                self.last_index = index - 1
                if self.declared_count and (self.gaps or (expected_end - index > slack and not container_intact(self.info.path))):
                    self.truncated = True
                else:  # Matroska/WebM estimate the count from the duration; an intact MP4 (an edit list) may
                    self.ended_early = True  # declare frames it never plays: a clean end is the end

    def _pts(self, cap, index: int) -> float:
        """When the frame just read plays: the decoder's presentation time (right for variable frame rates),
        ``index / fps`` where the file has none (cameras, streams without timestamps)."""
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if self.info.kind == "video" else float("nan")
        if not np.isfinite(t) or t < 0 or (index > 0 and t <= self._last_t):
            t = self._time(index)
        self._last_t = t
        return t

    def _resync(self, cap, index: int, stop: int | None) -> int | None:
        """After a read error before the declared end, seek past the damage; the index of the next frame
        that decodes (it is then the current frame), or None when nothing further reads."""
        end = stop if stop is not None else self.info.frame_count
        if not self.declared_count or not end or index >= end - 2 or not self.info.fps:
            return None
        base = max(self._last_t, self._time(index - 1))
        for step in RESYNC_STEPS_S:
            if self._stop.is_set():
                return None
            if not cap.set(cv2.CAP_PROP_POS_MSEC, (base + step) * 1000.0) or not cap.grab():
                continue
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            resumed = int(round(t * float(self.info.fps)))
            if resumed > index:
                # the grabbed frame is frame ``resumed``: hand it back through a one-frame replay
                return self._replay(cap, resumed)
        return None

    def _replay(self, cap, resumed: int) -> int:
        """Step back one frame so the loop's next grab returns frame ``resumed``."""
        cap.set(cv2.CAP_PROP_POS_FRAMES, resumed)
        return resumed

    def __iter__(self) -> Iterator[Frame]:
        q: queue.Queue = queue.Queue(maxsize=self._queue_size)
        done = object()
        error: list[BaseException] = []

        def worker():
            try:
                for fr in self._produce():
                    while not self._stop.is_set():
                        try:
                            q.put(fr, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
            except BaseException as e:  # re-raised in the consumer
                error.append(e)
            finally:
                while True:
                    try:
                        q.put(done, timeout=0.1)
                        break
                    except queue.Full:
                        if self._stop.is_set():
                            return

        self._stop.clear()
        self._thread = threading.Thread(target=worker, name="emoreel-decode", daemon=True)
        self._thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                yield item
        finally:
            self._stop.set()
            while self._thread.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
            if error:
                raise error[0]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._recorder is not None:
            self._recorder.close(keep=self._recorder.frames > 0)
            self._recorder = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(source: str | int | Path, **kwargs) -> VideoSource:
    """Open a video file, camera (int or ``camera:N``), image folder or glob; see :class:`VideoSource`."""
    return VideoSource(source, **kwargs)


def probe(path: str | Path) -> VideoInfo:
    """Size, rate and frame count of a video file without decoding it."""
    with VideoSource(path) as src:
        return src.info


def read_frames(path: str | Path, indices: Iterable[int]) -> Iterator[Frame]:
    """Frame-accurate reads of the given source frame indices (ascending), decoding forward.

    Gaps longer than a few seconds are crossed with a seek; short ones by grabbing.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    src = VideoSource(path)
    cap, fps = src._cap, src.info.fps
    if src._images is not None:
        try:
            for i in wanted:
                try:
                    img = imread(src._images[i]) if i < len(src._images) else None
                except ImageTooLarge:
                    img = None
                if img is not None:
                    yield Frame(i, src._time(i), img, relative_name(src._images[i], src._root))
        finally:
            src.close()
        return
    def grab(pos: int) -> int | None:
        """Grab frame ``pos`` (or the next one that decodes past damage); the index grabbed, None at the end."""
        if cap.grab():
            return pos
        resumed = src._resync(cap, pos, None)
        return resumed if resumed is not None and cap.grab() else None

    try:
        pos = 0
        src._last_t = -1.0
        seek_gap = max(int(fps * 5), 150) if fps else 150
        for i in wanted:
            if i - pos > seek_gap:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            got = None
            while got is None or got < i:
                got = grab(pos)
                if got is None:
                    return
                pos = got + 1
            if got > i:  # frame i was lost to damage (analyze skipped it too)
                continue
            ok, img = cap.retrieve()
            if not ok:
                continue
            yield Frame(i, src._pts(cap, i), img, src.name)
    finally:
        src.close()


