"""``analyze`` and ``analyze_to_dir``: open a source, run the :class:`~.analyzer.Analyzer` over
it (:func:`~.frames.iter_frames`), and write results.csv + run.json (:mod:`emoreel.results`),
continuing an interrupted run when asked (:mod:`.resume`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import __version__
from ..config import AnalyzeOptions
from ..errors import InputError, OutputError, VideoOpenFailure
from ..faces.detector import FaceDetector, ScaledDetector
from ..media.images import ArraySource
from ..media.video import VideoSource, open_source
from ..model.emotion import resolve_model, sha256_file
from ..results import RECORDING, OutputLock, ResultsWriter, check_output_dir, prepare_output_dir, rewrite_persons
from ..runtime import providers_for
from ..types import Observation
from .analyzer import Analyzer, model_path_for
from .frames import iter_frames
from .resume import file_stamp, plan_resume, read_meta
from .schedule import FAST_SCHEDULE


def _open(source, o: AnalyzeOptions) -> VideoSource:
    return open_source(source, every=o.every, start=o.start, end=o.end, max_frames=o.max_frames)


def _is_arrays(source) -> bool:
    return isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and bool(source)
                                              and all(isinstance(a, np.ndarray) for a in source))  # fmt: skip


def analyze(source, **options) -> Iterator[Observation]:
    """Yield an :class:`Observation` per face per processed frame of ``source``.

    ``source`` is a video path, a camera index, an image file, folder or glob, or images in memory (a
    NumPy BGR image or a list of them: each analysed as a photo, named ``image K``); keyword
    options are the fields of :class:`~emoreel.config.AnalyzeOptions`. The
    ``person`` field is the track's vote so far (``analyze_to_dir`` rewrites it
    with the final vote when the run completes). Anything else is refused in one line.
    """
    if _is_arrays(source):
        src = ArraySource(source)
    elif isinstance(source, (str, int, Path)) and not isinstance(source, bool):
        src = None
    else:
        raise InputError(f"cannot analyze a {type(source).__name__}: give a path, a camera index, or a NumPy image "
                         "(or a list of them)")  # fmt: skip
    o = AnalyzeOptions.from_kwargs(**options)
    if src is not None and (o.start is not None or o.end is not None or o.max_frames is not None or o.every != 1):
        raise InputError("every, start, end and max_frames are for videos and folders, not images in memory: pass the images you want")
    with src if src is not None else _open(source, o) as src:
        analyzer = Analyzer(o)
        try:
            for _, obs in iter_frames(analyzer, src):
                yield from obs
        finally:
            analyzer.close()


def _detector_meta(det: FaceDetector, width: int, height: int) -> dict:
    """The detector's name and, for the built-in backends, its settings and working size for this input."""
    meta: dict = {"name": det.name, "device": getattr(det, "device", "cpu")}
    if isinstance(det, ScaledDetector):
        meta.update(threshold=det.threshold, max_side=det.max_side, min_face=det.min_face,
                    smallest_face_px=det.smallest_face_px,
                    working_size=list(det.working_size(width, height)) if width and height else None)
    return meta


def _image_meta(info, images: list[dict], src: VideoSource) -> dict:
    """run.json entries of an image input: every processed image's size, and the unreadable ones skipped."""
    if info.kind != "images":
        return {}
    return {"images": images, "skipped_images": list(src.skipped_images)}


def _resume_identity(info, o: AnalyzeOptions) -> dict:
    """What :meth:`~emoreel.analysis.resume.ResumePlan.check` compares, without loading the models: options, model, input."""
    try:
        sha = sha256_file(resolve_model(model_path_for(o, providers_for(o.device)[0])))
    except OSError:
        sha = None  # no such model: not the one the run used
    path = str(Path(info.path).resolve()) if info.kind != "camera" else info.path
    return {"params": o.to_dict(), "model": {"sha256": sha},
            "input": {"path": path, "frame_count": info.frame_count, **(file_stamp(info.path) if info.kind == "video" else {})},
            "fast_schedule": None if o.exact else FAST_SCHEDULE}


@dataclass
class RunSummary:
    """What a finished (or interrupted) ``analyze_to_dir`` run did."""

    out_dir: Path
    frames: int
    faces: int
    accepted: int
    tracks: int
    seconds: float
    complete: bool
    already_complete: bool = False  # --resume found a finished run of this input and these options: nothing done

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        if self.already_complete:
            return (f"already complete: {self.frames} frames, {self.faces} faces in {self.tracks} tracks; nothing to resume "
                    f"in {self.out_dir / 'results.csv'} (--force analyzes again)")
        if self.faces == 0:
            return f"no faces found in {self.frames} frames; header-only results in {self.out_dir / 'results.csv'}"
        return (
            f"{self.frames} frames, {self.faces} faces ({self.accepted} accepted: both eyes seen) in {self.tracks} tracks, "
            f"{rate:.1f} frames/s; results in {self.out_dir / 'results.csv'}"
        )


ProgressFn = Callable[[int, int | None], None]


def analyze_to_dir(
    source: str | int | Path,
    out_dir: str | Path,
    options: AnalyzeOptions | None = None,
    force: bool = False,
    progress: ProgressFn | bool | None = None,
    analyzer: Analyzer | None = None,
    resume: bool = False,
) -> RunSummary:
    """Analyze ``source`` into ``out_dir/results.csv`` + ``run.json``, frame by frame.

    Bad input is refused before anything is written; an interrupted run keeps
    every finished frame and leaves ``complete: false`` in run.json. ``resume``
    continues such a run after its last finished frame (same options, model and
    input, else :class:`InputError`; see :mod:`emoreel.analysis.resume`).
    ``progress=True`` draws the command line's progress line (frames, frames/s, ETA) on stderr;
    a function is called with ``(frames done, frames expected or None)`` instead.
    """
    if isinstance(progress, bool):
        from ..progress import Progress

        bar = Progress(enabled=progress)
        try:
            return analyze_to_dir(source, out_dir, options, force, bar if progress else None, analyzer, resume)
        finally:
            bar.close()
    o = (options or AnalyzeOptions()).validate()
    plan = None
    if resume and not force:
        plan = plan_resume(out_dir, o)  # None: nothing written yet, a fresh run
        if plan is not None and plan.complete:  # nothing left to do, if it is a run of this input and these options
            with _open(source, o) as src:
                plan.check(_resume_identity(src.info, o))
            faces, accepted, tracks = plan.counts()
            return RunSummary(plan.out, plan.frames_done, faces, accepted, len(tracks), 0.0, True, already_complete=True)
    if resume and plan is None and read_meta(out_dir) is not None:
        force = True  # a run of emoreel stopped before its first row: started afresh
    check_output_dir(out_dir, force or plan is not None)  # before the models load
    src = _open(source, plan.source_options(o) if plan else o)
    own = analyzer is None
    lock = None
    try:
        if plan is not None:  # another input, a replaced or shorter file: refused before anything is read or written
            plan.check(_resume_identity(src.info, o))
        if o.record and src.info.kind == "images":
            raise InputError("--record is for cameras and videos, not image folders")
        if src.info.kind == "video" and src.declared_count and src.first_index >= src.info.frame_count:
            raise InputError(f"--start {o.start or 0:g} is beyond the end of {src.info.path} "
                             f"({src.info.duration_s:.3f} s); nothing to analyze")  # fmt: skip
        analyzer = analyzer or Analyzer(o)  # bad options and models fail before anything is written
        out = prepare_output_dir(out_dir, force or plan is not None)
        lock = OutputLock(out)  # a second run into this folder is refused, not interleaved
        info = src.info
        analyzer.use_source(src)  # before the detector's settings are recorded
        recording = src.record(out / RECORDING).name if o.record else None
        images: list[dict] = []  # image inputs: each processed image's name and size
        meta = {
            "emoreel_version": __version__,
            "input": {
                "path": str(Path(info.path).resolve()) if info.kind != "camera" else info.path,
                "kind": info.kind, "width": info.width, "height": info.height,
                "fps": float(info.fps), "fps_fraction": str(info.fps), "frame_count": info.frame_count,
                "duration_s": info.duration_s, **({"recording": recording} if recording else {}),
                **(file_stamp(info.path) if info.kind == "video" else {}),
            },
            "params": o.to_dict(),
            "detector": _detector_meta(analyzer.detector, info.width, info.height),
            "model": {"name": analyzer.model.name, "path": str(analyzer.model.path), "sha256": analyzer.model.sha256,
                      "device": getattr(analyzer.model, "device", "cpu"),
                      "classes": list(analyzer.model.classes)},
            "expected_frames": src.expected_frames(),
            "known_people": analyzer.identifier.gallery.people if analyzer.identifier is not None else [],
            "cuts": analyzer.cut_frames,  # the analyzer's own list: every run.json write has the cuts found so far
            "schedule": analyzer.schedule.counts if analyzer.schedule is not None else None,  # live, like "cuts"
            "fast_schedule": None if o.exact else FAST_SCHEDULE,
        }  # fmt: skip
        t0 = time.perf_counter()
        faces = accepted = 0
        tracks: set[int] = set()
        if plan is not None:  # check options/model/input, keep the finished rows, seed tracker and smoother
            plan.apply(analyzer, o, meta)
            faces, accepted, tracks = plan.counts()
        last_meta = t0
        total = meta["expected_frames"]
        complete = False
        with ResultsWriter(out, meta, resume=plan.written() if plan else None) as writer:
            try:
                for frame, obs in iter_frames(analyzer, src):
                    if plan is not None and frame.index < plan.resume_frame:
                        continue  # the overlap: re-analysed to rebuild the tracks, already written
                    try:
                        writer.write_frame(obs)
                    except OutputError as e:
                        raise OutputError(f"{e}; the {writer.frames} frames before it are kept in "
                                          f"{out / 'results.csv'} (marked incomplete)") from None  # fmt: skip
                    if info.kind == "images":
                        images.append({"frame": frame.index, "name": frame.name,
                                       "width": int(frame.image.shape[1]), "height": int(frame.image.shape[0])})
                    faces += len(obs)
                    accepted += sum(ob.accepted for ob in obs)
                    tracks.update(ob.track_id for ob in obs)
                    if progress:
                        progress(writer.frames, total)
                    now = time.perf_counter()
                    if now - last_meta > 5:
                        writer.write_meta(last_frame=frame.index, **_image_meta(info, images, src))
                        last_meta = now
                if src.truncated:
                    writer.close(False, error=f"video ended at frame {src.last_index}", **src.stream_meta())
                    raise VideoOpenFailure(
                        f"{info.path} ended after frame {src.last_index} of {info.frame_count} (truncated or corrupt); "
                        f"the {writer.frames} frames before it are in {out / 'results.csv'}"
                    )
                if writer.frames == 0 and info.kind != "camera":
                    why = (f"--start {o.start:g} is at or beyond the end of the input" if o.start else
                           "no frame of the input could be read")  # fmt: skip
                    writer.close(False, error=why, **src.stream_meta(), **_image_meta(info, images, src))
                    raise InputError(f"{why}; nothing was analyzed")
                persons = analyzer.final_persons()
                if persons:
                    rewrite_persons(out, persons)
                writer.close(True, persons=persons, tracks=len(tracks), faces=faces, **src.stream_meta(),
                             **_image_meta(info, images, src))  # fmt: skip
                complete = True
            finally:
                if not complete:
                    writer.close(False, **src.stream_meta(), **_image_meta(info, images, src))
        return RunSummary(out, writer.frames, faces, accepted, len(tracks), time.perf_counter() - t0, complete)
    finally:
        try:
            src.close()
        finally:
            if own and analyzer is not None:
                analyzer.close()
            if lock is not None:
                lock.close()
