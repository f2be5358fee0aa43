"""Training faces from photos, cropped the way analyze crops them, packed once into an ``.npz``.

A labelled photo set (:mod:`emoreel.model.photoset`) holds whole photos. To train on them the way
analyze will see faces, each photo goes through analyze's own photo path (detection at photo
resolution with the second look, the gate, 5-point alignment; :func:`emoreel.analysis.evaluate_photos.largest_faces`)
and its largest accepted face is aligned to the model's input (or to the same face template at another
``size``: a 64-px pack is cropped at 64 px from the photo, not enlarged from 48). Each training photo also gives
a *small copy*: the photo shrunk so that its face is :data:`SMALL_FACE` px (the sizes of a
crowd shot, down to analyze's smallest classified face), with blur, dim light, sensor noise
and JPEG drawn at random, and the face aligned from that small photo with its landmarks
jittered as a detector's are on small faces. The result is a face pack
(:func:`emoreel.model.datasets.save_pack`) that ``emoreel train --add-data`` mixes into training.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..config import AnalyzeOptions
from ..errors import DataError
from ..faces.align import align_face
from ..model.datasets import LabelledFaces, canonical_class, save_pack
from ..model.emotion import EmotionModel, InputSpec
from ..model.photoset import PhotoSet
from ..types import EMOTIONS
from .evaluate_photos import largest_faces

SMALL_FACE = (40, 64)
"""Face sizes (box side, px) of the small copies: analyze classifies faces from 40 px (``--min-face``)."""


def small_copy(image: np.ndarray, landmarks: np.ndarray, side: float, spec: InputSpec, rng: np.random.Generator,
               margin: float = 0.0) -> np.ndarray:  # fmt: skip
    """The face at ``landmarks`` (box side ``side`` px) as a small, degraded photo shows it, aligned to ``spec``."""
    f = min(1.0, rng.uniform(*SMALL_FACE) / max(side, 1.0))
    img = image if f >= 1.0 else cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    lm = (np.asarray(landmarks, np.float64) + 0.5) * f - 0.5
    eye_d = float(np.linalg.norm(lm[1] - lm[0])) or 1.0
    lm = lm + rng.normal(0, 0.04 * eye_d, lm.shape)  # a detector's landmarks wander on small faces
    x = img.astype(np.float32)
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.2)))
    if rng.random() < 0.4:
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** float(rng.uniform(1.2, 2.2)) * float(rng.uniform(0.25, 0.7))
    if rng.random() < 0.3:
        x = x + rng.normal(0, float(rng.uniform(2, 10)), x.shape).astype(np.float32)
    y = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 61))])
        if ok:
            y = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return align_face(y, lm[0], lm[1], spec, margin, lm)


def _grey(crop: np.ndarray) -> np.ndarray:
    return crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)


def pack_spec(model: EmotionModel, size: int | None = None) -> InputSpec:
    """The geometry faces are packed at: ``model``'s face template at ``size`` x ``size`` px (None: the model's size)."""
    if size is None:
        return model.spec
    return model.spec.at(size)


def photo_faces(data: str | Path, split: str, model: EmotionModel, options=None, small_copies: int = 0,
                seed: int = 0, progress=None, size: int | None = None) -> tuple[LabelledFaces, dict]:  # fmt: skip
    """Aligned faces of split ``split`` of a labelled photo set (plus ``small_copies`` small copies of each).

    ``model`` finds and gates the faces as analyze does; each is aligned to its template at ``size`` px (None:
    the model's input size). Returns the faces (grey) and counts: photos, faces found, skipped.
    """
    o = options or AnalyzeOptions()
    spec = pack_spec(model, size)
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[int] = []
    with PhotoSet(data) as ps, tempfile.TemporaryDirectory(prefix="emoreel-pack-") as tmp:
        rows = [r for r in ps.split(split) if canonical_class(r.emotion)]
        root = ps.extract(rows, tmp)
        files = sorted(p for p in Path(root).rglob("*") if p.is_file())
        truth = [canonical_class(f.parent.name) for f in files]
        skipped: list[str] = []
        found = done = 0
        for k, image, faces, best in largest_faces(files, Path(root), o, model, skipped):
            done += 1
            if progress:
                progress(done, len(files))
            if best is None:
                continue
            found += 1
            lm = faces.landmarks[best]
            label = EMOTIONS.index(truth[k])
            images.append(_grey(align_face(image, lm[0], lm[1], spec, o.margin, lm)))
            labels.append(label)
            side = math.sqrt(float(faces.widths[best] * faces.heights[best]))
            for _ in range(small_copies):
                images.append(_grey(small_copy(image, lm, side, spec, rng, o.margin)))
                labels.append(label)
    if not images:
        raise DataError(f"{data} [{split}]: no face found and kept in any photo")
    source = (f"{data} [{split}]: {found} faces of {len(files)} photos at {spec.width} px"
              + (f", each with {small_copies} small copies" if small_copies else ""))  # fmt: skip
    faces_out = LabelledFaces(np.stack(images).astype(np.uint8), np.asarray(labels, np.int64), source=source)
    return faces_out, {"photos": len(files), "found": found, "unreadable": len(skipped)}


def pack_photo_set(data: str | Path, out: str | Path, model: EmotionModel, small_copies: int = 1, seed: int = 0,
                   progress=None, size: int | None = None) -> Path:  # fmt: skip
    """Pack ``train`` (with ``small_copies`` small copies of each face) and ``dev`` (as shot) of a photo set,
    aligned at ``size`` px (None: ``model``'s input size)."""
    train, _ = photo_faces(data, "train", model, small_copies=small_copies, seed=seed, progress=progress, size=size)
    dev, _ = photo_faces(data, "dev", model, progress=progress, size=size)
    return save_pack(out, {"train": train, "dev": dev})

