"""The :class:`Analyzer`: each video's per-stage state, and the stage lists a frame goes down.

Every step of the analysis is a stage with one interface (:mod:`.stages`: a frame and its
:class:`~emoreel.types.Faces` in, Faces out). :meth:`Analyzer.compose` builds the lists for the mode
in one place: the find stages (a keyframe whole; between keyframes windows, a settling detection or
the faces moved with their tracks), the prepare stages (gate, align, classify: no per-track state, so
:mod:`.frames` runs them on worker threads) and the in-order stages (track, identify, smooth), which run
in frame order on the calling thread, so results do not depend on the number of threads.
:mod:`.run` opens a source, drives the analyzer over it and writes results.csv.
"""

from __future__ import annotations

import logging
import math

from ..config import AnalyzeOptions
from ..errors import InputError
from ..faces.detect import FaceDetector, create_detector
from ..faces.detector import ScaledDetector
from ..faces.track import Tracker
from ..media.cuts import CutDetector
from ..media.video import VideoSource
from ..model.choice import choose_default_model
from ..model.emotion import EmotionModel
from ..model.smooth import EmotionSmoother
from ..runtime import CUDA, providers_for
from ..types import EYE_L, EYE_R, Faces, Frame, Observation
from .schedule import DETECT_EVERY, WorkSchedule, predict_selective
from .stages import (Align, Classify, ClassifyDue, DetectGroup, DetectNear, DetectWhole, EndTracks, Gate, Identify,
                     MoveWithTracks, OnlyKnown, OwnLabel, ScheduleDetected, ScheduleLabels, SecondLook, SettleWhole,
                     Smooth, Stage, Track, Work, run_stages)  # fmt: skip

log = logging.getLogger(__name__)


def model_path_for(o: AnalyzeOptions, providers: list[str]):
    """--model, or the shipped copy (int8 or float) that runs faster on this CPU; --exact: int8, as always."""
    if o.model or o.exact or CUDA in providers:
        return o.model
    return choose_default_model()


class Analyzer:
    """Holds one video's per-stage state and turns frames into observations.

    Pass ready-made ``detector``/``model``/``identifier`` objects to share them
    between runs; otherwise they are built from ``options``.
    """

    def __init__(
        self,
        options: AnalyzeOptions | None = None,
        detector: FaceDetector | None = None,
        model: EmotionModel | None = None,
        identifier=None,
    ):
        self.options = o = (options or AnalyzeOptions()).validate()
        self.per_image = False  # image folder/glob: each image its own moment (see use_source)
        self.source_name = ""  # the ``source`` column of video/camera rows
        self._own_detectors = detector is None
        self._video_link_gap: int | None = None
        self.providers, warning = providers_for(o.device)  # --device: onnxruntime execution providers
        self.detector = detector or self.new_detector()
        self.extra_detectors: list[FaceDetector] = []  # one per extra detection worker
        self.model = model or EmotionModel(self._model_path(), threads=1, providers=self.providers)
        warning = warning or getattr(self.detector, "device_warning", None) or getattr(self.model, "device_warning", None)
        if warning:
            log.warning(warning)  # one line: the GPU was asked for (or could be used) but runs on CPU
        if identifier is None and o.known_faces:
            from ..faces.gallery import Embedder, Gallery
            from ..faces.identify import Identifier

            embedder = Embedder()  # one copy of the dlib models for the gallery and the video
            identifier = Identifier(Gallery.load(o.known_faces, embedder), tolerance=o.tolerance, every=o.id_every,
                                    min_face=o.id_min_face, embedder=embedder)  # fmt: skip
        self.identifier = identifier
        try:
            self.tracker = Tracker(iou_threshold=o.track_iou, max_missed=o.track_max_missed)
            self.smoother = EmotionSmoother(self.model.classes, repeat=o.repeat, ema=o.ema, min_prob=o.min_prob)
        except ValueError as e:  # out-of-range --repeat / --ema / --track-iou ...
            raise InputError(str(e)) from None
        self.cuts = CutDetector(o.scene_cut)
        self.cut_frames: list[int] = []  # frames where a shot cut was found (run.json "cuts")
        self.processed = 0  # frames through process(), for detect_every
        self._sync_detector: FaceDetector | None = None
        if o.detect_every < 0:
            raise InputError("--detect-every must be 0 (automatic) or more")
        self.detect_interval = o.detect_every or (1 if o.exact else DETECT_EVERY)
        # the fast default (schedule.py): keyframes, windows or moved faces in between
        self.schedule = None if o.exact else WorkSchedule(self.detect_interval, o.classify_every, o.det_threshold,
                                                              min_prob=o.min_prob)
        # between keyframes the fast schedule detects in windows around the faces (CenterFace on CPU: windows of
        # many sizes would make a GPU provider re-plan its kernels), else moves them with the tracker
        self.regions = (self.schedule is not None and not o.only_known and getattr(self.detector, "supports_regions", False)
                        and getattr(self.detector, "device", "cpu") == "cpu")  # fmt: skip
        self.worker_detectors(max(1, o.threads))  # loaded now, not on the first frames
        self.compose()

    def worker_detectors(self, n: int) -> list[FaceDetector]:
        """``n`` detectors for the detection workers (the main one first), made on first need."""
        while 1 + len(self.extra_detectors) < n:
            self.extra_detectors.append(self.new_detector())
        return [self.detector, *self.extra_detectors][:n]

    def new_detector(self) -> FaceDetector:
        o = self.options
        extra = {"providers": self.providers} if o.detector == "centerface" else {}
        return create_detector(o.detector, threshold=o.det_threshold, max_side=self._max_side(), min_face=o.min_face,
                               **extra)  # fmt: skip

    def _model_path(self):
        return model_path_for(self.options, self.providers)

    def _max_side(self) -> int:
        return self.options.image_max_side if self.per_image else self.options.det_max_side

    def use_source(self, source: VideoSource) -> None:
        """Adapt to ``source`` before its frames: for image folders/globs each image is its own moment.

        Images are detected at ``image_max_side``, every face gets its own track id,
        the smoothed label is the frame's own label, every image is detected
        (no ``detect_every``) and identity never links faces of different images.
        """
        self.per_image = source.info.kind == "images"
        self.source_name = source.name
        if self._own_detectors:
            side = self._max_side()
            for det in [self.detector, *self.extra_detectors, *([self._sync_detector] if self._sync_detector else [])]:
                if isinstance(det, ScaledDetector):
                    det.max_side = side
        ident = self.identifier
        if ident is not None and hasattr(ident, "link_gap"):
            if self._video_link_gap is None:
                self._video_link_gap = ident.link_gap
            ident.link_gap = 0 if self.per_image else self._video_link_gap  # 0: no two images are linked
        self.compose()  # images: the photo stages

    def compose(self) -> None:
        """Build the stage lists of this mode (:mod:`.stages`): the one place where the modes differ.

        * ``find_keyframe`` / ``find_between``: how a frame that comes without faces gets them (a
          keyframe or shot cut is detected whole; between keyframes: windows around the tracks
          (fast, built-in detector), a whole detection while the fast schedule settles, or the
          faces moved with their tracks);
        * ``prepare_detected``: what needs no per-track state (worker threads): gate, align, classify
          (photos: a second look; ``--only-known``: the gate only, classification waits for identity);
          ``prepare_moved``: the fast schedule's moved faces (gate, classify the tracks that are due);
        * ``in_order``: track, the schedule's bookkeeping, ended tracks, identify, ``--only-known``'s
          gate and classification, smooth (photos: each face's own label).
        """
        o, fast, classes = self.options, self.fast, self.model.classes
        classify = [Align(o, self.model.spec), Classify(self._predictor())]  # stateless: shared by the lists
        # no per-track state: on worker threads
        self.prepare_stages: list[Stage] = [Gate(o)] if o.only_known else [Gate(o), *classify]
        self.prepare_detected = self.prepare_stages
        if self.per_image:
            self.prepare_detected = [*self.prepare_stages, SecondLook(o, self.prepare_stages)]
        self.prepare_moved = [Gate(o), ClassifyDue(self.schedule, classify)] if fast else self.prepare_stages
        # a frame that comes without faces
        moved = MoveWithTracks(self)
        self.find_keyframe: list[Stage] = [DetectWhole()]
        if fast:
            self.find_between: list[Stage] = [DetectNear(self) if self.regions else SettleWhole(self.schedule, moved)]
        else:
            self.find_between = [moved]
        # in frame order
        stages: list[Stage] = [Track(self)]
        if fast:
            stages.append(ScheduleDetected(self.schedule))
        stages.append(EndTracks(self, self.schedule))
        if self.identifier is not None:
            stages.append(Identify(self.identifier))
        if o.only_known:
            stages += [OnlyKnown(self.identifier), *classify]
        if self.per_image:  # nothing to smooth over
            stages.append(OwnLabel(classes, getattr(self.smoother, "min_prob", 0.0)))
        else:
            stages.append(Smooth(self, classes))
        if fast:
            stages.append(ScheduleLabels(self.schedule))
        self.in_order = stages

    def detect(self, frame: Frame) -> Faces:
        return self.detector.detect(frame.image)

    def is_keyframe(self, n: int) -> bool:
        """Whether the ``n``-th processed frame (from 0) is detected whole (every image is)."""
        return self.per_image or n % self.detect_interval == 0

    def prepare(self, frame: Frame, faces: Faces) -> Faces:
        """The stages that need no per-track state: frontal gate, alignment, blur gate, classification.

        Safe to run on worker threads (onnxruntime sessions are thread-safe). With
        ``only_known`` classification waits for identity (the in-order stages).
        """
        return run_stages(self.prepare_stages, frame, faces, Work(detector_of=lambda: self.detector))

    @property
    def views(self) -> str:
        """The test-time views each face gets (``emoreel.model.emotion.VIEWS``): ``--views``, or one with ``--no-tta``."""
        return self.options.views if self.options.tta else "single"

    def _predictor(self):
        """The classify stage's function: the model with the views (fast default: the mirror only where it may matter)."""
        model, views, margin = self.model, self.views, self.options.tta_margin
        if views != "mirror":
            return lambda crops: model.predict(crops, views)
        if self.schedule is None or self.per_image:
            return lambda crops: model.predict(crops, tta=True)  # ten crops for crop models
        return lambda crops: predict_selective(model, crops, margin)

    @property
    def fast(self) -> bool:
        """Whether frames follow the fast schedule (not --exact, images or --only-known)."""
        return self.schedule is not None and not self.per_image and not self.options.only_known

    def is_cut(self, frame: Frame) -> bool:
        """Whether ``frame`` starts a new shot (every image does); call once per frame, in order."""
        return self.per_image or self.cuts.is_cut(frame.image)

    def process(self, frame: Frame, faces: Faces | None = None, prepared: bool = False,
                cut: bool | None = None) -> list[Observation]:
        """All stages after detection for one frame, in frame order.

        ``faces`` are this frame's detections (already through the prepare stages when
        ``prepared``); when None, the frame is detected here: whole on keyframes and shot
        cuts; between keyframes of ``detect_every`` in windows around the tracks (fast
        default, CenterFace), else its faces are moved from the tracks. ``cut``:
        :meth:`is_cut` of this frame when the caller already asked (None: asked here).
        """
        n, self.processed = self.processed, self.processed + 1
        work = Work(n=n, cut=self.is_cut(frame) if cut is None else cut, detector_of=self._calling_thread_detector)
        if work.cut:  # an image is its own moment: no track continues into it
            self.tracker.reset()
            if self.schedule is not None:
                self.schedule.reset()
            if not self.per_image:
                self.cut_frames.append(frame.index)
        if faces is None:
            find = self.find_keyframe if work.cut or self.is_keyframe(n) else self.find_between
            faces = run_stages(find, frame, None, work)
            self.count(work.how)
            prepared = False
        if not prepared:
            faces = run_stages(self.prepare_detected if work.detected else self.prepare_moved, frame, faces, work)
        faces = run_stages(self.in_order, frame, faces, work)
        return self._observations(frame, faces, work)

    def _calling_thread_detector(self) -> FaceDetector:
        """The detector of the calling thread (its own when worker threads hold the main one)."""
        if self.options.threads <= 1:
            return self.detector
        if self._sync_detector is None:
            self._sync_detector = self.new_detector()  # new_detector already takes use_source's max side
        return self._sync_detector

    def detect_group(self, frames: list[Frame], detector: FaceDetector | None = None) -> list[tuple[Faces | None, str]]:
        """Detect and prepare a group: a keyframe (or shot cut) and the frames up to the next one.

        The first frame is detected whole. In the fast schedule with a built-in detector
        every later frame is detected only in windows around the faces of the keyframe (and
        its candidates scoring up to :data:`~.stages.SEED_MARGIN` under the threshold) and of the frame
        before it (:class:`~.stages.DetectGroup`, :meth:`~emoreel.faces.detect.ScaledDetector.detect_regions`:
        the same detector at the same working scale, so nearly the same boxes, landmarks and scores as a
        whole-frame run where the windows reach: docs/benchmarks.md), or whole when the
        windows would cost more; a face that enters mid-group is found at the next keyframe.
        Otherwise later frames get None (their faces are moved by the tracker in :meth:`process`).
        Returns ``(faces, how)`` per frame, ``how`` one of ``keyframe``, ``regions``, ``whole``, ``""``.
        No per-track state: safe on worker threads, each with its own ``detector``.
        """
        det = detector or self.detector
        find = DetectGroup(det, windows=self.regions and len(frames) > 1)
        out: list[tuple[Faces | None, str]] = []
        for frame in frames:
            work = Work(detector_of=lambda: det)
            faces = find(frame, work)
            if faces is not None:
                faces = run_stages(self.prepare_detected, frame, faces, work)
                find.prepared(faces)
            out.append((faces, work.how))
        return out

    def second_look(self, frame: Frame, faces: Faces, detector: FaceDetector | None = None) -> Faces:
        """A photo without a kept face, looked at again down to ``--photo-threshold`` (:class:`~.stages.SecondLook`)."""
        det = detector or self.detector
        return SecondLook(self.options, self.prepare_stages)(frame, faces, Work(detector_of=lambda: det))

    def count(self, how: str) -> None:
        """Record in run.json ``schedule`` how a frame was detected (see :meth:`detect_group`)."""
        if not self.fast or not how:
            return
        c = self.schedule.counts
        c["region_detections" if how == "regions" else "detections"] += 1
        c["extra_detections"] += how == "whole"

    def _observations(self, frame: Frame, faces: Faces, work: Work) -> list[Observation]:
        """One :class:`Observation` per face: the results.csv rows of the frame."""
        out = []
        for i in range(len(faces)):
            x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
            tid = int(faces.track_ids[i])
            el, er = faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R]
            emotion, smooth, sprob = work.labels[i]
            person = self.identifier.person(tid) if self.identifier is not None else ""
            out.append(
                Observation(
                    frame=frame.index, time_s=frame.time_s, track_id=tid,
                    x=x1, y=y1, w=x2 - x1, h=y2 - y1, det_score=float(faces.scores[i]),
                    eyes=(float(el[0]), float(el[1]), float(er[0]), float(er[1])),
                    probs=tuple(float(v) for v in faces.probs[i]), emotion=emotion,
                    emotion_smooth=smooth, smooth_prob=float(sprob),
                    accepted=bool(faces.accepted[i]), reject_reason=faces.reasons[i],
                    sharpness=float(faces.sharpness[i]), person=person,
                    match=work.matches[i] if work.matches is not None else "",
                    match_distance=float(work.distances[i]) if work.distances is not None else math.nan,
                    source=frame.name or self.source_name,
                )
            )  # fmt: skip
        return out

    def final_persons(self) -> dict[int, str]:
        return self.identifier.final_persons() if self.identifier is not None else {}

    def close(self) -> None:
        for det in [self.detector, *self.extra_detectors, *([self._sync_detector] if self._sync_detector else [])]:
            det.close()
