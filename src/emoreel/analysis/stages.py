"""The stages of the analysis, each with one interface: a frame and its :class:`~emoreel.types.Faces`
in, the frame's Faces out (``stage(frame, faces, work) -> faces``).

A frame goes down a list of stages once. The :class:`~.analyzer.Analyzer` composes the lists for
each mode in one place (:meth:`~.analyzer.Analyzer.compose`); a mode is a different list or a
different stage, not a branch in the middle:

* **find** (a frame with no faces yet): :class:`DetectWhole`, or between keyframes
  :class:`DetectNear` (windows around the tracks, frame by frame), :class:`SettleWhole` (the
  fast schedule wants a real detection) and :class:`MoveWithTracks` (faces moved by their tracks);
  a group of frames on a worker thread is detected by :class:`DetectGroup` (the keyframe whole,
  the frames after it in windows around its faces).
* **prepare** (no per-track state, safe on worker threads): :class:`Gate`, :class:`Align`,
  :class:`Classify` with the chosen test-time views; :class:`SecondLook` for photos; the faces
  moved by the fast schedule go through :class:`Gate` and :class:`ClassifyDue` instead.
* **in frame order**: :class:`Track`, :class:`ScheduleDetected` (fast), :class:`EndTracks`,
  :class:`Identify` (known people), :class:`OnlyKnown` then :class:`Align` and :class:`Classify`
  (``--only-known``), :class:`Smooth` (or :class:`OwnLabel` for photos), :class:`ScheduleLabels` (fast).

What a stage learns about the frame that is not a face's own field (how it was found, the
aligned crops, identity matches, labels) travels in the frame's :class:`Work`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..faces.align import BLURRY, align_faces, frontal_gate, gate_sharpness
from ..faces.detector import FaceDetector
from ..faces.track import iou_matrix
from ..types import Faces, Frame

SEED_MARGIN = 0.2  # fast schedule: keyframe candidates this far under the detector threshold are looked at again
PORTRAIT_SHARE = 0.25  # photos: a face found by the second look must span this share of the photo's short side
UNKNOWN_PERSON = "unknown_person"


@dataclass
class Work:
    """What one frame carries down the stages besides its faces."""

    n: int = 0  # the frame's number among the processed frames (from 0)
    cut: bool = False  # the frame starts a new shot (every image does)
    detector_of: Callable[[], FaceDetector] | None = None  # the detector of the thread the frame is on (made on need)
    how: str = ""  # how its faces were found: keyframe, regions, whole ("" moved with their tracks)
    detected: bool = True  # False: the faces were moved with their tracks, not detected
    crops: list[np.ndarray] = field(default_factory=list)  # Align: the aligned crops to classify ...
    crop_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # ... and their faces
    matches: list[str] | None = None  # Identify: each face's best gallery match in this frame
    distances: np.ndarray | None = None  # ... and its distance
    labels: list[tuple[str, str, float]] = field(default_factory=list)  # (raw, smoothed, smoothed prob) per face

    @property
    def detector(self) -> FaceDetector:
        return self.detector_of()


class Stage(ABC):
    """One step of the analysis of a frame."""

    @abstractmethod
    def __call__(self, frame: Frame, faces: Faces | None, work: Work) -> Faces:
        """The frame's faces after this stage (the find stages get None and find them)."""


def run_stages(stages: list[Stage], frame: Frame, faces: Faces | None, work: Work) -> Faces:
    for stage in stages:
        faces = stage(frame, faces, work)
    return faces


# --------------------------------------------------------------------------- find


class DetectWhole(Stage):
    """The whole frame, by the frame's thread's detector (a keyframe, a shot cut, every image)."""

    def __call__(self, frame, faces, work):
        work.how, work.detected = "keyframe", True
        return work.detector.detect(frame.image)


class DetectNear(Stage):
    """Between keyframes, frame by frame (``emoreel live``): windows around where the live tracks are
    expected (:meth:`~emoreel.faces.detector.ScaledDetector.detect_regions`), or the whole frame
    when the windows would cost more."""

    def __init__(self, analyzer):
        self.an = analyzer  # its tracker (resume replaces it)

    def __call__(self, frame, faces, work):
        det = work.detector
        tracks = getattr(self.an.tracker, "tracks", None)
        h, w = frame.image.shape[:2]
        boxes = np.array([t.predict(frame.index)[0] for t in tracks or []]).reshape(-1, 4)
        rects = det.regions(w, h, boxes) if tracks is not None else None
        work.detected = True
        if rects is None:
            work.how = "whole"
            return det.detect(frame.image)
        work.how = "regions"
        return det.detect_regions(frame.image, rects) if rects else Faces.empty()


class MoveWithTracks(Stage):
    """Between detections: each live track's face moved by its velocity (nothing detected)."""

    def __init__(self, analyzer):
        self.an = analyzer

    def __call__(self, frame, faces, work):
        work.how, work.detected = "", False
        return self.an.tracker.predict_faces(frame.index)


class SettleWhole(Stage):
    """The fast schedule without windows: the whole frame while it settles after a change
    (:meth:`~.schedule.WorkSchedule.wants_detection`), else ``moved``."""

    def __init__(self, schedule, moved: Stage):
        self.schedule, self.moved, self.whole = schedule, moved, DetectWhole()

    def __call__(self, frame, faces, work):
        if not self.schedule.wants_detection(work.n):
            return self.moved(frame, faces, work)
        self.schedule.counts["extra_detections"] += 1
        return self.whole(frame, faces, work)


class DetectGroup:
    """The find stage of one detection group on a worker thread: the keyframe whole (with the
    candidates just under the threshold), each later frame in windows around the faces of the
    keyframe, its candidates and the frame before (or whole when windows would cost more).

    Made per group (it remembers the group's faces); ``windows=False``: the keyframe only, the
    later frames get None (their faces are moved with the tracks in frame order)."""

    def __init__(self, detector: FaceDetector, windows: bool):
        self.det, self.windows = detector, windows
        self.first: Faces | None = None
        self.weak = np.zeros((0, 4), np.float32)
        self.last: Faces | None = None

    def __call__(self, frame: Frame, work: Work) -> Faces | None:
        det = self.det
        if self.first is None:
            work.how = "keyframe"
            if self.windows:
                self.first, self.weak = det.detect_seeds(frame.image, det.threshold - SEED_MARGIN)
            else:
                self.first = det.detect(frame.image)
            return self.first
        if not self.windows:
            work.how, work.detected = "", False
            return None
        h, w = frame.image.shape[:2]
        rects = det.regions(w, h, np.concatenate([self.first.boxes, self.weak, self.last.boxes]))
        if rects is None:
            work.how = "whole"
            return det.detect(frame.image)
        work.how = "regions"
        return det.detect_regions(frame.image, rects) if rects else Faces.empty()

    def prepared(self, faces: Faces) -> None:
        """The frame's faces after the prepare stages: the next window's around them."""
        self.last = faces


# --------------------------------------------------------------------------- prepare


class Gate(Stage):
    """The frontal gate: both eyes found, head turn and roll within bounds, big enough."""

    def __init__(self, options):
        self.o = options

    def __call__(self, frame, faces, work):
        o = self.o
        frontal_gate(faces, min_face=o.min_face, max_yaw=o.max_yaw, max_roll=o.max_roll)
        return faces


class Align(Stage):
    """Crops fitted to the model card's 5-point template; a blurry crop rejects its face.

    The kept crops go on in ``work`` to :class:`Classify`."""

    def __init__(self, options, spec):
        self.o, self.spec = options, spec

    def __call__(self, frame, faces, work):
        crops, idx = align_faces(frame.image, faces, self.spec, self.o.margin)
        work.crops, work.crop_idx = [], np.zeros(0, int)
        if len(idx):
            faces.sharpness[idx] = sharp = gate_sharpness(frame.image, faces, idx, self.spec, crops, self.o.margin)
            blurry = sharp < self.o.min_sharpness
            for i in idx[blurry]:
                faces.accepted[i], faces.reasons[i] = False, BLURRY
            keep = np.flatnonzero(~blurry)
            work.crops, work.crop_idx = [crops[k] for k in keep], idx[keep]
        return faces


class Classify(Stage):
    """Emotion probabilities of the aligned crops, averaged over the chosen test-time views."""

    def __init__(self, predict: Callable[[list[np.ndarray]], np.ndarray]):
        self.predict = predict

    def __call__(self, frame, faces, work):
        if len(work.crop_idx):
            faces.probs[work.crop_idx] = self.predict(work.crops)
        work.crops, work.crop_idx = [], np.zeros(0, int)
        return faces


class ClassifyDue(Stage):
    """The fast schedule's moved faces (after the gate): the tracks that are due are aligned and
    classified again, the others carry their track's last classification."""

    def __init__(self, schedule, classify: list[Stage]):
        self.schedule, self.classify = schedule, classify  # [Align, Classify]

    def __call__(self, frame, faces, work):
        due = self.schedule.due(work.n, faces.track_ids)
        self.schedule.carry(faces, np.flatnonzero(~due))
        idx = np.flatnonzero(due)
        if len(idx):
            sub = run_stages(self.classify, frame, faces[idx], work)
            faces.probs[idx], faces.sharpness[idx], faces.accepted[idx] = sub.probs, sub.sharpness, sub.accepted
            for j, i in enumerate(idx):
                faces.reasons[i] = sub.reasons[j]
            self.schedule.classified_faces(work.n, faces, idx)
        return faces


class SecondLook(Stage):
    """A photo without a kept face, looked at again down to ``--photo-threshold``.

    Of the new candidates (scoring under the detector's threshold, not overlapping a face already
    found), the strongest one spanning at least :data:`PORTRAIT_SHARE` of the photo's short side (a
    portrait or a face crop, where a face fills the frame and scores low for want of context) goes
    through ``prepare`` like any face, and is added when kept. The faces are returned unchanged
    otherwise, and by detectors other than CenterFace (whose scores this was measured on).
    """

    def __init__(self, options, prepare: list[Stage]):
        self.o, self.prepare = options, prepare

    def __call__(self, frame, faces, work):
        det = work.detector
        floor = max(self.o.photo_threshold, 0.05)  # never every heatmap cell
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
        best = run_stages(self.prepare, frame, cand[new[[int(np.argmax(cand.scores[new]))]]], work)
        return Faces.concat([faces, best]) if best.accepted.any() else faces


# --------------------------------------------------------------------------- in frame order


class Track(Stage):
    """Detected faces get track ids (moved faces keep theirs); ended tracks are reported by the tracker."""

    def __init__(self, analyzer):
        self.an = analyzer  # its tracker (resume replaces it)

    def __call__(self, frame, faces, work):
        if work.detected:
            self.an.tracker.update(faces, frame.index)
        return faces


class ScheduleDetected(Stage):
    """Fast schedule, a detected frame: settle after a change, remember the classifications."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, frame, faces, work):
        if work.detected:
            self.schedule.detected(work.n, faces, work.cut)
            self.schedule.classified_faces(work.n, faces)
        return faces


class EndTracks(Stage):
    """Tracks that ended are forgotten by the smoother (and the schedule)."""

    def __init__(self, analyzer, schedule):
        self.an, self.schedule = analyzer, schedule

    def __call__(self, frame, faces, work):
        for tid in self.an.tracker.ended():
            self.an.smoother.forget(tid)
            if self.schedule is not None:
                self.schedule.forget(tid)
        return faces


class Identify(Stage):
    """Known people: each face matched against the gallery, each track named by its votes."""

    def __init__(self, identifier):
        self.identifier = identifier

    def __call__(self, frame, faces, work):
        if len(faces):
            work.matches, work.distances = self.identifier.observe(frame.image, faces, frame.index)
        return faces


class OnlyKnown(Stage):
    """``--only-known``: the faces of unknown people are rejected (the rest is classified after this)."""

    def __init__(self, identifier):
        self.identifier = identifier

    def __call__(self, frame, faces, work):
        for i in np.flatnonzero(faces.accepted):
            if self.identifier.person(int(faces.track_ids[i])) in ("", "unknown"):
                faces.accepted[i] = False
                faces.reasons[i] = UNKNOWN_PERSON
        return faces


def _raw(faces: Faces, i: int, classes) -> tuple[str, np.ndarray | None]:
    if not faces.accepted[i]:
        return "", None
    p = faces.probs[i]
    return classes[int(np.argmax(p))], p


class Smooth(Stage):
    """Each accepted face's label smoothed over its track (EMA + repeater; it may abstain)."""

    def __init__(self, analyzer, classes):
        self.an, self.classes = analyzer, classes  # its smoother (resume replaces it)

    def __call__(self, frame, faces, work):
        work.labels = []
        for i in range(len(faces)):
            raw, p = _raw(faces, i, self.classes)
            smooth, prob = self.an.smoother.update(int(faces.track_ids[i]), p) if p is not None else ("", math.nan)
            work.labels.append((raw, smooth, prob))
        return faces


class OwnLabel(Stage):
    """Photos: nothing to smooth over; each face keeps its own label (abstaining under ``min_prob``, as the smoother does)."""

    def __init__(self, classes, min_prob: float):
        self.classes, self.min_prob = classes, min_prob

    def __call__(self, frame, faces, work):
        work.labels = []
        for i in range(len(faces)):
            raw, p = _raw(faces, i, self.classes)
            sure = p is not None and float(np.max(p)) >= self.min_prob
            work.labels.append((raw, raw, float(np.max(p))) if sure else (raw, "", math.nan))
        return faces


class ScheduleLabels(Stage):
    """Fast schedule: a track whose raw label differs from its smoothed one is classified every frame."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, frame, faces, work):
        for i, (raw, smooth, _) in enumerate(work.labels):
            self.schedule.labels(int(faces.track_ids[i]), raw, smooth)
        return faces
