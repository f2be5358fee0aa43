"""The fast default: where the detector and the emotion network can be skipped without changing answers.

Faces move smoothly between shot cuts and emotions change over hundreds of
milliseconds, so most per-frame work repeats what the previous frame found.
Every decision is taken in frame order, so results never depend on the number
of threads:

* **detection**: the whole frame on every ``detect_every``-th processed frame
  (keyframes) and at shot cuts. With CenterFace on CPU the frames in between
  are detected only in windows around the faces of the keyframe (and its candidates
  just under the threshold) and of the frame before
  (:meth:`emoreel.analysis.analyzer.Analyzer.detect_group`,
  :meth:`emoreel.faces.detect.ScaledDetector.detect_regions`): the same detector at the
  same scale, so nearly the same boxes, landmarks and scores where the windows reach, at a
  fraction of the pixels; a face that enters between keyframes is found at the next
  one. Every detected face is classified, as with ``--exact``.
* **other detectors**, a GPU, ``--only-known`` (no windows): in between, tracked faces are moved by their
  velocity (:meth:`~emoreel.faces.track.Tracker.predict_faces`), with dense detection for
  the ``settle`` frames after a face appeared, was lost or scored within
  ``weak_margin`` of the threshold; a moved face is classified again only when it is
  due (``classify_every`` frames since its last classification), while its raw label
  differs from its smoothed one, or while its top-2 probability margin or the distance
  of its top probability from ``min_prob`` is under ``near_margin``; otherwise its
  last probabilities (and blur measure) are carried (:class:`WorkSchedule`).
* **mirror averaging**: see :func:`predict_selective`: the mirror is run only for
  faces whose un-mirrored top-2 margin is under ``tta_margin``.

``--exact`` turns all of this off (every frame detected and classified, every
face mirrored). Agreement with ``--exact`` is measured in docs/benchmarks.md
(:mod:`emoreel.outputs.agreement`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Faces

# run.json "fast_schedule": what the fast default does between keyframes (1: moved faces, every 2nd frame;
# 2: windows, every 3rd); a run is resumed only with the same (None with --exact)
FAST_SCHEDULE = 2
DETECT_EVERY = 3  # the default detection interval of the fast mode (docs/benchmarks.md: agreement)
SETTLE = 1  # frames detected after a new face, a lost track or a weak detection
WEAK_MARGIN = 0.1  # a detection scoring under threshold + this counts as weak
NEAR_MARGIN = 0.2  # top-2 probability margin under which a track is classified every frame


def top2_margin(probs: np.ndarray) -> np.ndarray:
    """Best minus second-best probability per row (N, C) -> (N,); NaN rows give NaN."""
    p = np.asarray(probs, np.float64)
    if p.shape[-1] < 2:
        return np.ones(p.shape[:-1])
    part = np.sort(p, axis=-1)
    return part[..., -1] - part[..., -2]


def predict_selective(model, crops: list[np.ndarray], tta_margin: float) -> np.ndarray:
    """Probabilities of ``crops``; the mirror image is averaged in only where it may matter.

    Every face is run once un-mirrored; faces whose top-2 margin is under ``tta_margin``
    are also run mirrored and the two averaged, as ``model.predict(crops, tta=True)``
    does for every face (flipping the aligned crop before preprocessing is the same as
    flipping the tensor: the preprocessing is per pixel or left-right symmetric).
    Models that use ten-crop TTA (card ``input.crop``) get ``tta=True`` for every face.
    """
    if len(crops) == 0 or tta_margin >= 1.0 or getattr(model.spec, "crop", 0):
        return model.predict(crops, tta=tta_margin > 0)
    p = model.predict(crops, tta=False)
    if tta_margin <= 0:
        return p
    redo = np.flatnonzero(top2_margin(p) < tta_margin)
    if len(redo):
        mirrored = model.predict([np.ascontiguousarray(crops[i][:, ::-1]) for i in redo], tta=False)
        p[redo] = (p[redo] + mirrored) / 2
    return p


@dataclass
class _TrackState:
    frame: int  # processed-frame number of the last classification
    probs: np.ndarray  # its probabilities (NaN when it was not classified)
    sharpness: float
    reason: str  # the blur gate's verdict then ("" or "blurry")
    changing: bool = True  # raw label differs from the smoothed one (or no smoothed label yet)


class WorkSchedule:
    """Per-video state of the fast mode: when to detect, and which tracks to classify again."""

    def __init__(self, detect_every: int = DETECT_EVERY, classify_every: int = 0, det_threshold: float = 0.5,
                 settle: int = SETTLE, weak_margin: float = WEAK_MARGIN, near_margin: float = NEAR_MARGIN,
                 min_prob: float = 0.5):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1 (got {detect_every})")
        self.detect_every = int(detect_every)
        self.classify_every = int(classify_every) or self.detect_every
        self.weak = float(det_threshold) + weak_margin
        self.settle, self.near_margin = int(settle), float(near_margin)
        self.min_prob = float(min_prob)  # the smoother abstains under it: a top probability near it is a near decision
        self._dense_until = -1  # detect every processed frame up to and including this one
        self._last_ids: set[int] = set()  # tracks of the latest detected frame
        self._tracks: dict[int, _TrackState] = {}
        # run.json "schedule": whole-frame detections (extra: beyond the keyframes), frames detected in windows
        # around the faces, faces classified and faces that carried their track's classification
        self.counts = {"detect_every": self.detect_every, "classify_every": self.classify_every, "detections": 0,
                       "extra_detections": 0, "region_detections": 0, "classified_faces": 0, "carried_faces": 0}

    def is_keyframe(self, n: int) -> bool:
        """Periodic keyframes, known ahead (worker threads detect them)."""
        return n % self.detect_every == 0

    def wants_detection(self, n: int) -> bool:
        """Whether processed frame ``n`` (not a keyframe, not a cut) needs a real detection."""
        return n <= self._dense_until

    def detected(self, n: int, faces: Faces, cut: bool) -> None:
        """After tracking a detected frame: settle (detect densely) when faces came, went or are weak."""
        ids = {int(t) for t in faces.track_ids}
        changed = bool(ids ^ self._last_ids) or bool(len(faces) and float(faces.scores.min()) < self.weak)
        if changed or cut:
            self._dense_until = max(self._dense_until, n + self.settle)
        self._last_ids = ids

    def due(self, n: int, track_ids: np.ndarray) -> np.ndarray:
        """Boolean mask over predicted faces: which to classify on processed frame ``n``."""
        out = np.ones(len(track_ids), bool)
        for i, tid in enumerate(track_ids):
            st = self._tracks.get(int(tid))
            if st is None or st.changing or n - st.frame >= self.classify_every:
                continue
            top = float(np.max(st.probs)) if np.isfinite(st.probs).all() else np.nan
            sure = top2_margin(st.probs) >= self.near_margin and abs(top - self.min_prob) >= self.near_margin
            out[i] = not sure  # NaN (not classified): due
        return out

    def carry(self, faces: Faces, idx: np.ndarray) -> None:
        """Give faces ``idx`` (already through the frontal gate) their track's last classification."""
        for i in idx:
            st = self._tracks.get(int(faces.track_ids[i]))
            if st is None or not faces.accepted[i]:
                continue
            faces.probs[i] = st.probs
            faces.sharpness[i] = st.sharpness
            if st.reason:
                faces.accepted[i], faces.reasons[i] = False, st.reason
            self.counts["carried_faces"] += 1

    def classified_faces(self, n: int, faces: Faces, idx: np.ndarray | None = None) -> None:
        """Remember the classification of faces ``idx`` (all when None) done on processed frame ``n``."""
        for i in range(len(faces)) if idx is None else idx:
            if np.isnan(faces.sharpness[i]):  # gated before alignment: nothing to carry
                continue
            tid = int(faces.track_ids[i])
            old = self._tracks.get(tid)
            self._tracks[tid] = _TrackState(n, faces.probs[i].copy(), float(faces.sharpness[i]), faces.reasons[i],
                                            old.changing if old else True)  # fmt: skip
            self.counts["classified_faces"] += 1

    def labels(self, track_id: int, raw: str, smooth: str) -> None:
        """The frame's raw and smoothed labels of a track (a changing label is classified every frame)."""
        st = self._tracks.get(track_id)
        if st is not None:
            st.changing = raw != smooth

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)
        self._last_ids.discard(track_id)

    def reset(self) -> None:
        """At a shot cut: no track continues."""
        self._tracks.clear()
        self._last_ids = set()
