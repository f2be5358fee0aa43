"""The :class:`Analyzer`: one frame's faces through every stage, with each video's per-stage state.

Stages per frame: detect → frontal gate → align → blur gate → classify (one batch
per frame) → track → identify (optional) → smooth per track. Detection, the frontal
gate, alignment and classification (no per-track state) may run on worker threads
(:mod:`.frames`); tracking, identity and smoothing run in frame order on the calling
thread, so results do not depend on the number of threads. :mod:`.run` opens a source,
drives the analyzer over it and writes results.csv.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..config import AnalyzeOptions
from ..errors import InputError
from ..faces.align import BLURRY, align_faces, frontal_gate, sharpness
from ..faces.detect import FaceDetector, create_detector
from ..faces.detector import ScaledDetector
from ..faces.track import Tracker, iou_matrix
from ..media.cuts import CutDetector
from ..media.video import VideoSource
from ..model.choice import choose_default_model
from ..model.emotion import EmotionModel
from ..model.smooth import EmotionSmoother
from ..runtime import CUDA, providers_for
from ..types import EYE_L, EYE_R, Faces, Frame, Observation
from .schedule import DETECT_EVERY, WorkSchedule, predict_selective

log = logging.getLogger(__name__)

UNKNOWN_PERSON = "unknown_person"
SEED_MARGIN = 0.2  # fast schedule: keyframe candidates this far under the detector threshold are looked at again
PORTRAIT_SHARE = 0.25  # photos: a face found by the second look must span this share of the photo's short side


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

    def detect(self, frame: Frame) -> Faces:
        return self.detector.detect(frame.image)

    def is_keyframe(self, n: int) -> bool:
        """Whether the ``n``-th processed frame (from 0) is detected whole (every image is)."""
        return self.per_image or n % self.detect_interval == 0

    def prepare(self, frame: Frame, faces: Faces) -> Faces:
        """The stages that need no per-track state: frontal gate, alignment, blur gate, classification.

        Safe to run on worker threads (onnxruntime sessions are thread-safe). With
        ``only_known`` classification waits for identity, so it is left to :meth:`process`.
        """
        o = self.options
        frontal_gate(faces, min_face=o.min_face, max_yaw=o.max_yaw, max_roll=o.max_roll)
        if not o.only_known:
            self._classify(frame, faces)
        return faces

    def _classify(self, frame: Frame, faces: Faces) -> None:
        o = self.options
        crops, idx = align_faces(frame.image, faces, self.model.spec, o.margin)
        if len(idx):
            faces.sharpness[idx] = sharp = np.array([sharpness(c) for c in crops])
            blurry = sharp < o.min_sharpness
            for i in idx[blurry]:
                faces.accepted[i], faces.reasons[i] = False, BLURRY
            keep = np.flatnonzero(~blurry)
            if len(keep):
                faces.probs[idx[keep]] = self._predict([crops[k] for k in keep])

    @property
    def views(self) -> str:
        """The test-time views each face gets (``emoreel.model.emotion.VIEWS``): ``--views``, or one with ``--no-tta``."""
        return self.options.views if self.options.tta else "single"

    def _predict(self, crops: list[np.ndarray]) -> np.ndarray:
        o, views = self.options, self.views
        if views != "mirror":
            return self.model.predict(crops, views)
        if self.schedule is None or self.per_image:
            return self.model.predict(crops, tta=True)  # ten crops for crop models
        return predict_selective(self.model, crops, o.tta_margin)  # the mirror only where it may matter

    @property
    def _fast(self) -> bool:
        """Whether this frame's work follows the fast schedule (not --exact, images or --only-known)."""
        return self.schedule is not None and not self.per_image and not self.options.only_known

    def _prepare_predicted(self, frame: Frame, faces: Faces, n: int) -> None:
        """Fast schedule, faces moved from their tracks: classify the tracks that are due, carry the rest."""
        o = self.options
        frontal_gate(faces, min_face=o.min_face, max_yaw=o.max_yaw, max_roll=o.max_roll)
        due = self.schedule.due(n, faces.track_ids)
        self.schedule.carry(faces, np.flatnonzero(~due))
        idx = np.flatnonzero(due)
        if len(idx):
            sub = faces[idx]
            self._classify(frame, sub)
            faces.probs[idx], faces.sharpness[idx], faces.accepted[idx] = sub.probs, sub.sharpness, sub.accepted
            for j, i in enumerate(idx):
                faces.reasons[i] = sub.reasons[j]
            self.schedule.classified_faces(n, faces, idx)

    def is_cut(self, frame: Frame) -> bool:
        """Whether ``frame`` starts a new shot (every image does); call once per frame, in order."""
        return self.per_image or self.cuts.is_cut(frame.image)

    def process(self, frame: Frame, faces: Faces | None = None, prepared: bool = False,
                cut: bool | None = None) -> list[Observation]:
        """All stages after detection for one frame, in frame order.

        ``faces`` are this frame's detections (already through :meth:`prepare` when
        ``prepared``); when None, the frame is detected here: whole on keyframes and shot
        cuts; between keyframes of ``detect_every`` in windows around the tracks (fast
        default, CenterFace), else its faces are moved from the tracks. ``cut``:
        :meth:`is_cut` of this frame when the caller already asked (None: asked here).
        """
        n, self.processed = self.processed, self.processed + 1
        cut = self.is_cut(frame) if cut is None else cut
        if cut:  # an image is its own moment: no track continues into it
            self.tracker.reset()
            if self.schedule is not None:
                self.schedule.reset()
            if not self.per_image:
                self.cut_frames.append(frame.index)
        predicted = faces is None and not self.is_keyframe(n) and not cut
        if predicted and self._fast and self.regions:  # frame by frame (live): windows around the tracks
            faces, how = self._detect_near(frame)
            self.count(how)
            predicted, prepared = False, False
        if predicted and self._fast and self.schedule.wants_detection(n):  # settling after a change
            predicted = False
            self.schedule.counts["extra_detections"] += 1
        if faces is None:
            faces = self.tracker.predict_faces(frame.index) if predicted else self._detect_sync(frame)
            prepared = False
            if not predicted:
                self.count("keyframe")
        if not prepared:
            if predicted and self._fast:
                self._prepare_predicted(frame, faces, n)
            else:
                self.prepare(frame, faces)
                if self.per_image:
                    faces = self.second_look(frame, faces, self._calling_thread_detector())
        if not predicted:
            self.tracker.update(faces, frame.index)
            if self._fast:
                self.schedule.detected(n, faces, cut)
                self.schedule.classified_faces(n, faces)
        return self._finish(frame, faces)

    def _finish(self, frame: Frame, faces: Faces) -> list[Observation]:
        """After tracking and classification: end tracks, identify, smooth, make the frame's observations."""
        o = self.options
        for tid in self.tracker.ended():
            self.smoother.forget(tid)
            if self.schedule is not None:
                self.schedule.forget(tid)
        matches, distances = [""] * len(faces), np.full(len(faces), np.nan)
        if self.identifier is not None and len(faces):
            matches, distances = self.identifier.observe(frame.image, faces, frame.index)
            if o.only_known:
                for i in np.flatnonzero(faces.accepted):
                    if self.identifier.person(int(faces.track_ids[i])) in ("", "unknown"):
                        faces.accepted[i] = False
                        faces.reasons[i] = UNKNOWN_PERSON
        if o.only_known:
            self._classify(frame, faces)
        obs = self._observations(frame, faces, matches, distances)
        if self._fast:
            for ob in obs:
                self.schedule.labels(ob.track_id, ob.emotion, ob.emotion_smooth)
        return obs

    def _calling_thread_detector(self) -> FaceDetector:
        """The detector of the calling thread (its own when worker threads hold the main one)."""
        if self.options.threads <= 1:
            return self.detector
        if self._sync_detector is None:
            self._sync_detector = self.new_detector()  # new_detector already takes use_source's max side
        return self._sync_detector

    def _detect_sync(self, frame: Frame) -> Faces:
        """Detect on the calling thread."""
        return self._calling_thread_detector().detect(frame.image)

    def _detect_near(self, frame: Frame) -> tuple[Faces, str]:
        """Between keyframes, frame by frame: detect in windows around where the live tracks are expected."""
        det = self._calling_thread_detector()
        tracks = getattr(self.tracker, "tracks", None)
        h, w = frame.image.shape[:2]
        boxes = np.array([t.predict(frame.index)[0] for t in tracks or []]).reshape(-1, 4)
        rects = det.regions(w, h, boxes) if tracks is not None else None
        if rects is None:
            return det.detect(frame.image), "whole"
        return (det.detect_regions(frame.image, rects) if rects else Faces.empty()), "regions"

    def detect_group(self, frames: list[Frame], detector: FaceDetector | None = None) -> list[tuple[Faces | None, str]]:
        """Detect and :meth:`prepare` a group: a keyframe (or shot cut) and the frames up to the next one.

        The first frame is detected whole. In the fast schedule with a built-in detector
        every later frame is detected only in windows around the faces of the keyframe (and
        its candidates scoring up to ``SEED_MARGIN`` under the threshold) and of the frame
        before it (:meth:`~emoreel.faces.detect.ScaledDetector.detect_regions`: the same detector
        at the same working scale, so nearly the same boxes, landmarks and scores as a
        whole-frame run where the windows reach: docs/benchmarks.md), or whole when the
        windows would cost more; a face that enters mid-group is found at the next keyframe.
        Otherwise later frames get None (their faces are moved by the tracker in :meth:`process`).
        Returns ``(faces, how)`` per frame, ``how`` one of ``keyframe``, ``regions``, ``whole``, ``""``.
        No per-track state: safe on worker threads, each with its own ``detector``.
        """
        det = detector or self.detector
        if not self.regions or len(frames) == 1:
            first = self.prepare(frames[0], det.detect(frames[0].image))
            if self.per_image:
                first = self.second_look(frames[0], first, det)
            return [(first, "keyframe")] + [(None, "")] * (len(frames) - 1)
        first, weak = det.detect_seeds(frames[0].image, det.threshold - SEED_MARGIN)
        out: list[tuple[Faces | None, str]] = [(self.prepare(frames[0], first), "keyframe")]
        for frame in frames[1:]:
            h, w = frame.image.shape[:2]
            rects = det.regions(w, h, np.concatenate([first.boxes, weak, out[-1][0].boxes]))
            if rects is None:
                out.append((self.prepare(frame, det.detect(frame.image)), "whole"))
            else:
                faces = det.detect_regions(frame.image, rects) if rects else Faces.empty()
                out.append((self.prepare(frame, faces), "regions"))
        return out

    def second_look(self, frame: Frame, faces: Faces, detector: FaceDetector | None = None) -> Faces:
        """A photo without a kept face, looked at again down to ``--photo-threshold``.

        Of the new candidates (scoring under the detector's threshold, not overlapping a face already
        found), the strongest one spanning at least :data:`PORTRAIT_SHARE` of the photo's short side (a
        portrait or a face crop, where a face fills the frame and scores low for want of context) is
        gated and classified like any face, and added when kept. ``faces`` is returned unchanged
        otherwise, and by detectors other than CenterFace (whose scores this was measured on).
        """
        det = detector or self.detector
        floor = max(self.options.photo_threshold, 0.05)  # never every heatmap cell
        if (len(faces) and faces.accepted.any()) or not getattr(det, "supports_regions", False) or floor >= det.threshold:
            return faces
        cand = det.detect_at(frame.image, floor)
        side = min(frame.image.shape[:2])
        new = (cand.scores < det.threshold) & (np.minimum(cand.widths, cand.heights) >= PORTRAIT_SHARE * side)
        if len(faces) and len(cand):  # not a weaker box around a face already found (and rejected)
            new &= iou_matrix(cand.boxes, faces.boxes).max(1) < 0.3
        new = np.flatnonzero(new)
        if not len(new):
            return faces
        best = self.prepare(frame, cand[new[[int(np.argmax(cand.scores[new]))]]])
        return Faces.concat([faces, best]) if best.accepted.any() else faces

    def count(self, how: str) -> None:
        """Record in run.json ``schedule`` how a frame was detected (see :meth:`detect_group`)."""
        if not self._fast or not how:
            return
        c = self.schedule.counts
        c["region_detections" if how == "regions" else "detections"] += 1
        c["extra_detections"] += how == "whole"

    def _observations(self, frame: Frame, faces: Faces, matches, distances) -> list[Observation]:
        classes = self.model.classes
        out = []
        for i in range(len(faces)):
            x1, y1, x2, y2 = (float(v) for v in faces.boxes[i])
            tid = int(faces.track_ids[i])
            el, er = faces.landmarks[i, EYE_L], faces.landmarks[i, EYE_R]
            emotion, smooth, sprob = "", "", math.nan
            if faces.accepted[i]:
                p = faces.probs[i]
                k = int(np.argmax(p))
                emotion = classes[k]
                if self.per_image:  # nothing to smooth over: the image's own label (abstaining as the smoother does)
                    sure = float(p[k]) >= getattr(self.smoother, "min_prob", 0.0)
                    smooth, sprob = (emotion, float(p[k])) if sure else ("", math.nan)
                else:
                    smooth, sprob = self.smoother.update(tid, p)
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
                    match=matches[i], match_distance=float(distances[i]),
                    source=frame.name or self.source_name,
                )
            )  # fmt: skip
        return out

    def final_persons(self) -> dict[int, str]:
        return self.identifier.final_persons() if self.identifier is not None else {}

    def close(self) -> None:
        for det in [self.detector, *self.extra_detectors, *([self._sync_detector] if self._sync_detector else [])]:
            det.close()
