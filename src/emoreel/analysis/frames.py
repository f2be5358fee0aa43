"""The frame loop: frames in detection groups on worker threads, back in frame order.

:func:`detect_parallel` runs the stateless stages of the :class:`~.analyzer.Analyzer`
(:meth:`~.analyzer.Analyzer.detect_group`: detection, the gate, alignment, classification) on
``threads`` worker threads; :func:`iter_frames` hands each frame on to the analyzer's in-order
stages (:meth:`~.analyzer.Analyzer.process`) and yields its observations.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

from ..media.video import VideoSource
from ..types import Faces, Frame, Observation
from .analyzer import Analyzer

MAX_FRAMES_IN_FLIGHT = 6  # per worker thread: decoded frames waiting in detection groups


def _groups(analyzer: Analyzer, frames: Iterable[Frame]) -> Iterator[list[tuple[Frame, bool]]]:
    """``(frame, cut)`` pairs in detection groups: a group starts at each keyframe and at each shot cut."""
    group: list[tuple[Frame, bool]] = []
    for n, frame in enumerate(frames, analyzer.processed):  # process() numbers frames on from there
        cut = analyzer.is_cut(frame)
        if group and (cut or analyzer.is_keyframe(n)):
            yield group
            group = []
        group.append((frame, cut))
    if group:
        yield group


def detect_parallel(analyzer: Analyzer, frames: Iterable[Frame], workers: int
                     ) -> Iterator[tuple[Frame, Faces | None, bool, str]]:  # fmt: skip
    """Detect and prepare :func:`_groups` of frames on ``workers`` threads (:meth:`Analyzer.detect_group`),
    yielding ``(frame, faces, cut, how)`` in frame order (``faces`` None: moved by the tracker later).

    Each worker thread has its own detector (OpenCV cascades are not thread-safe;
    onnxruntime releases the GIL), and groups of at most ``6 * workers`` frames in all are
    in flight (at least one group), so memory stays flat. A worker's exception is re-raised here; stopping early
    cancels what is queued and joins the threads. With one worker the groups are
    detected on the calling thread, the same way.
    """
    if workers <= 1:
        for group in _groups(analyzer, frames):
            for (frame, cut), (faces, how) in zip(group, analyzer.detect_group([f for f, _ in group])):
                yield frame, faces, cut, how
        return
    local = threading.local()
    detectors = analyzer.worker_detectors(workers)
    lock = threading.Lock()

    def detect(group: list[Frame]) -> list[tuple[Faces | None, str]]:
        det = getattr(local, "detector", None)
        if det is None:
            with lock:
                det = local.detector = detectors.pop()
        return analyzer.detect_group(group, det)

    pending: deque = deque()

    def drain(fut_group):
        group, fut = fut_group
        for (frame, cut), (faces, how) in zip(group, fut.result()):
            yield frame, faces, cut, how

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emoreel-detect") as pool:
        try:
            for group in _groups(analyzer, frames):
                pending.append((group, pool.submit(detect, [f for f, _ in group])))
                while len(pending) > 1 and sum(len(g) for g, _ in pending) >= MAX_FRAMES_IN_FLIGHT * workers:
                    yield from drain(pending.popleft())
                if len(pending) >= 2 * workers:
                    yield from drain(pending.popleft())
            while pending:
                yield from drain(pending.popleft())
        finally:
            for _, fut in pending:
                fut.cancel()


def iter_frames(analyzer: Analyzer, source: VideoSource) -> Iterator[tuple[Frame, list[Observation]]]:
    """(frame, observations) for every frame of ``source``; detection runs on ``threads`` workers."""
    analyzer.use_source(source)
    for frame, faces, cut, how in detect_parallel(analyzer, source, max(1, analyzer.options.threads)):
        analyzer.count(how)
        yield frame, analyzer.process(frame, faces, prepared=faces is not None, cut=cut)
