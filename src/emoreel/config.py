"""One table of analysis defaults: the library, the CLI options and their help text all read it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


def opt(default, help: str, flag: str | None = None, **kw):
    """A dataclass field carrying its CLI help (and optional flag name)."""
    return field(default=default, metadata={"help": help, "flag": flag, **kw})


@dataclass
class AnalyzeOptions:
    """Every parameter of ``analyze``; recorded in run.json."""

    every: int = opt(1, "process every Nth frame")
    start: float | None = opt(None, "start time in seconds")
    end: float | None = opt(None, "end time in seconds")
    max_frames: int | None = opt(None, "stop after this many processed frames")
    record: bool = opt(False, "keep every frame read in OUT_DIR/recording.mp4 (for --camera runs: what extract, annotate and the report need later)")
    detector: str = opt("centerface", "face detector backend", choices=("centerface", "haar", "hog"))
    det_max_side: int = opt(320, "detect on frames downscaled so the long side is at most this, but never so far that a --min-face face drops below what the detector finds (0 = full size)")
    image_max_side: int = opt(1280, "for image folders/globs: detect on photos downscaled so the long side is at most this (0 = full size); photos need more pixels than video frames (a face scoring 0.45 at 320 px scored 0.84 at full size)")
    det_threshold: float = opt(0.5, "minimum detector confidence for a face")
    photo_threshold: float = opt(0.2, "for image folders/globs: a photo where no face is found and kept gets a second look down to this detector score, keeping its strongest new face only if that face spans at least a quarter of the photo's short side (a portrait or a face crop) and passes the gate (FER2013 val faces as 192 px photos: 169 more faces of 3,589 found, 2 in 3 of them right; none on 181 photos without a face); CenterFace only; >= --det-threshold: off")
    min_face: int = opt(40, "smallest face (box side in pixels) that is classified")
    max_yaw: float = opt(70.0, "face gate: max head turn in degrees, estimated from the nose's offset between the eyes (70: while both eyes show; 25: faces looking at the camera)")
    max_roll: float = opt(30.0, "frontal gate: max eye-line tilt in degrees")
    min_sharpness: float = opt(10.0, "blur gate: min variance of the Laplacian of the aligned face crop (at 48 px, whatever the model's input)")
    scene_cut: float = opt(20.0, "mean grey-level change (0-255) between frames that counts as a shot cut; 0 = off")
    margin: float = opt(0.0, "extra margin around the aligned crop, as a fraction of its size")
    model: str | None = opt(None, "emotion model: an ONNX file with its card beside it, or a shipped model's name (emoreel-fer-int8, the default; emoreel-fer, its float original)")
    tta: bool = opt(True, "average each face over test-time views (--views; the mirror alone: +0.9 points on FER2013 val with the shipped int8 model, one more model run per face); --no-tta: one view")
    views: str = opt("jitter", "test-time views averaged per face with --tta: mirror (the face and its mirror) or jitter (also zoomed 10%% in and out where the mirror's top-2 margin is under 0.15: FER2013 val 69.0%% vs 68.2%%, through detection 68.3%% vs 67.7%%; 4.5 more audience faces in 100 right on the shared clip; 7-22%% fewer frames/s, most on small frames)", choices=("mirror", "jitter"))
    repeat: int = opt(3, "smoothed label changes only after N consecutive frames agree")
    ema: float = opt(0.5, "EMA weight of the newest frame's probabilities (1 = no smoothing)")
    min_prob: float = opt(0.45, "the smoothed label abstains (empty emotion_smooth) while its smoothed probability is below this (0.45: on FER2013 val the shipped, calibrated model is right on 76 in 100 faces above it, which are 81 in 100 faces (with the jitter views); benchmarks/min_prob.py re-derives it for another model)")
    track_iou: float = opt(0.3, "tracker: minimum overlap to continue a track")
    track_max_missed: int = opt(10, "tracker: frames a track survives without a detection")
    known_faces: str | None = opt(None, "folder of reference photos of known people")
    tolerance: float = opt(0.6, "identity: max embedding distance for a match")
    id_every: int = opt(5, "identity: embed each track at most once per this many frames (~100 ms per face)")
    id_min_face: int = opt(60, "identity: smallest face (pixels) that is matched; small blurred faces match strangers")
    only_known: bool = opt(False, "skip emotion work for faces not matched to a known person")
    exact: bool = opt(False, "detect and classify every frame, every face with the --views (the slower reference; without it emoreel skips work where the answers stay the same: docs/benchmarks.md, agreement)")
    detect_every: int = opt(0, "detect the whole frame on every Kth processed frame and at shot cuts; in between the fast default detects only around the faces already found (custom detectors: moves them); 0 = automatic: 3, or 1 with --exact")
    classify_every: int = opt(0, "custom detectors, between keyframes: classify each moved face at least every Nth processed frame and carry its probabilities in between, more often while its label is changing or near a tie (0 = the detection interval; the built-in detectors classify every face found; ignored with --exact)")
    tta_margin: float = opt(1.0, "with --tta --views mirror: mirror-average only faces whose top-2 probability margin without the mirror is below this (1 = every face, as --exact)")
    device: str = opt("auto", "where the detector and the emotion network run: auto (a CUDA GPU when onnxruntime-gpu finds one, else CPU), cpu or cuda (falls back to CPU with a warning)", choices=("auto", "cpu", "cuda"))
    threads: int = opt(2, "worker threads (decode, detect and classify overlap)")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self) -> "AnalyzeOptions":
        """Refuse out-of-range or non-finite numbers (one line naming the option) before any work starts."""
        from .errors import InputError

        for name, (lo, hi, kind) in LIMITS.items():
            v = getattr(self, name)
            if v is None:
                continue
            flag = "--" + name.replace("_", "-")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and float(v) != int(v)):
                raise InputError(f"{flag} must be {'a whole number' if kind is int else 'a number'} (got {v!r})")
            if not math.isfinite(v) or v < lo or v > hi:
                raise InputError(f"{flag} must be between {lo:g} and {hi:g} (got {v})")
        for f in fields(self):  # names from a fixed list (a library caller may pass a detector object instead)
            choices, v = f.metadata.get("choices"), getattr(self, f.name)
            if choices and isinstance(v, str) and v not in choices:
                raise InputError(f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)} (got {v!r})")
        return self

    @classmethod
    def from_kwargs(cls, **kw) -> "AnalyzeOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**kw)


MAX_THREADS = 64

LIMITS: dict[str, tuple[float, float, type]] = {
    # option: (lowest, highest, int or float); None values (start, end, max_frames, ...) are not checked
    "every": (1, 10**9, int), "start": (0, 1e9, float), "end": (0, 1e9, float), "max_frames": (1, 10**12, int),
    "det_max_side": (0, 16384, int), "image_max_side": (0, 16384, int), "det_threshold": (0, 1, float), "photo_threshold": (0, 1, float),
    "min_face": (1, 10**5, int), "max_yaw": (0, 90, float), "max_roll": (0, 180, float),
    "min_sharpness": (0, 1e9, float), "scene_cut": (0, 255, float), "margin": (0, 2, float),
    "repeat": (1, 10**6, int), "ema": (0.001, 1, float), "min_prob": (0, 1, float), "track_iou": (0, 1, float),
    "track_max_missed": (0, 10**6, int), "tolerance": (0, 10, float), "id_every": (1, 10**6, int),
    "id_min_face": (1, 10**5, int), "detect_every": (0, 10**6, int), "classify_every": (0, 10**6, int),
    "tta_margin": (0, 1, float), "threads": (1, MAX_THREADS, int),
}
"""Valid range of each numeric :class:`AnalyzeOptions` field (checked by :meth:`AnalyzeOptions.validate`)."""
