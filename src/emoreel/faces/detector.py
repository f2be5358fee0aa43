"""The detector interface: :class:`FaceDetector` (one method, ``detect(image_bgr)`` → :class:`~emoreel.types.Faces`)
and :class:`ScaledDetector`, the base of the built-in backends.

A detector returns boxes, scores in [0, 1] and 5 landmarks in the order of
:mod:`emoreel.types` (NaN where a backend has none) in the pixel coordinates of the
image it was given. A :class:`ScaledDetector` detects a large frame on a copy
downscaled so its long side is at most ``max_side``, maps boxes back, and runs the
landmark stages that need detail (Haar eyes, dlib's shape predictor) on the
full-resolution pixels; it also detects in windows around given boxes
(``regions``/``detect_regions``) and at another score threshold (``detect_at``).

The backends are :mod:`.centerface` and :mod:`.classic` (Haar, HOG); :mod:`.detect`
names them and builds one by name (:func:`~.detect.create_detector`).
A detector instance is meant for one thread at a time; make one per worker.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import InputError
from ..types import Faces


class FaceDetector(ABC):
    """Finds faces in a BGR ``uint8`` image.

    Subclasses implement :meth:`detect`; :meth:`close` is optional. ``name`` is the
    registry name (recorded in run.json).
    """

    name: str = "custom"

    @abstractmethod
    def detect(self, image: np.ndarray) -> Faces:
        """Faces in ``image`` (BGR uint8, H x W x 3), coordinates in ``image`` pixels."""

    def close(self) -> None:
        """Release resources (optional; the built-in backends need nothing)."""

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """``image`` as a 3-channel BGR uint8 array (grey and BGRA are converted)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        raise InputError(f"a detector needs a non-empty uint8 image, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise InputError(f"a detector needs an H x W x 3 BGR image, got shape {image.shape}")


REGION_MARGIN = 1.0  # detect_regions: context around a tracked face, in face sizes per side
REGION_MIN_PAD, REGION_MAX_PAD = 24, 48  # ... but at least / at most this many working-scale pixels
REGION_FACE_PX = 128  # ... and a face over 1.5x this size is looked for zoomed out to this size
REGION_MAX_SHARE = 0.5  # beyond this share of the frame's cost in windows, detect the whole frame
MAX_SEEDS, MAX_REGION_BOXES = 16, 64  # weak candidates kept; more boxes than this: detect the whole frame
REGION_CALL_PX = 4096  # each window's fixed cost (a call, its Python), in pixels: about that of 64 x 64 more
MAX_WORKING_SIDE = 4096  # detection never works on more than this many pixels a side (memory stays bounded)


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (width, height), normally smaller than it.

    Bilinear where the factor is at least 1/2 (it detects the same as area averaging
    there, at a quarter of the cost); below that an area average by a whole factor
    (OpenCV's fast path) and bilinear for the rest: 4-5x cheaper than one area
    average by a fractional factor where the whole factor divides the size (else OpenCV's
    general path), and the same faces found (docs/benchmarks.md).
    """
    h, w = image.shape[:2]
    k = int(min(w / size[0], h / size[1]))
    if k >= 2:
        image = cv2.resize(image, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class Region(NamedTuple):
    """A window of :meth:`ScaledDetector.detect_regions`: working-scale pixels, and a further zoom (1 = none)."""

    x0: int
    y0: int
    x1: int
    y1: int
    zoom: float


class ScaledDetector(FaceDetector):
    """Base of the built-in backends: detect on a copy at most ``max_side`` pixels long.

    ``threshold`` is the minimum score kept; ``max_side`` 0 means full size.
    ``min_face`` (pixels in the input image, 0 = off) limits the downscaling: a
    face that small is never shrunk below :attr:`smallest_face_px`, the size the
    backend still finds, so large frames are detected at a higher resolution.
    Subclasses implement :meth:`_detect` (at the working scale) and may override
    :meth:`_refine` (landmarks on the full-resolution image).
    """

    smallest_face_px = 16  # the smallest face (box side, working-scale pixels) the backend finds reliably
    # detect_regions finds what detect finds (measured for CenterFace: tests/test_detect.py); the fast default
    # uses windows only for such backends. Windows start and end on region_grid (CenterFace's coarsest stride).
    supports_regions = False
    region_grid = 32

    def __init__(self, threshold: float = 0.5, max_side: int = 640, min_face: int = 0):
        if not 0.0 <= float(threshold) <= 1.0:
            raise InputError(f"detector threshold must be in [0, 1], got {threshold}")
        if int(max_side) < 0 or 0 < int(max_side) < 32:
            raise InputError(f"detector max_side must be 0 (full size) or at least 32, got {max_side}")
        if int(min_face) < 0:
            raise InputError(f"detector min_face must be 0 (off) or positive, got {min_face}")
        self.threshold = float(threshold)
        self.max_side = int(max_side)
        self.min_face = int(min_face)

    def working_scale(self, width: int, height: int) -> float:
        """Factor from full-resolution to working-scale pixels (1.0 when no downscaling)."""
        long = max(width, height)
        scale = self.max_side / long if self.max_side and long > self.max_side else 1.0
        if self.min_face and scale < 1.0:
            scale = min(1.0, max(scale, self.smallest_face_px / self.min_face))
        return min(scale, MAX_WORKING_SIDE / long) if long > MAX_WORKING_SIDE else scale

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """Width and height of a ``width`` x ``height`` image at the working scale (what the network sees)."""
        scale = self.working_scale(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def detect(self, image: np.ndarray) -> Faces:
        image = as_bgr(image)
        small, _ = self._scaled(image)
        return self._to_image(image, small, self._detect(small))

    def detect_at(self, image: np.ndarray, threshold: float) -> Faces:
        """:meth:`detect` with another score threshold, for this call only (backends whose ``_detect``
        honours ``floor``: :attr:`supports_regions`)."""
        image = as_bgr(image)
        small, _ = self._scaled(image)
        return self._to_image(image, small, self._detect(small, threshold), threshold)

    def _scaled(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``image`` at the working scale (the same pixels whichever method detects) and that scale."""
        h, w = image.shape[:2]
        scale = self.working_scale(w, h)
        if scale == 1.0:
            return image, scale
        return downscale(image, self.working_size(w, h)), scale

    def _to_image(self, image: np.ndarray, small: np.ndarray, faces: Faces, threshold: float | None = None) -> Faces:
        """Working-scale detections over ``threshold`` (the detector's) back in ``image`` pixels, refined."""
        faces = faces[faces.scores >= (self.threshold if threshold is None else threshold)]
        if small.shape[:2] != image.shape[:2]:
            # exact factors per axis (rounding the size changes the aspect a little)
            fx, fy = image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]
            faces.boxes *= np.float32([fx, fy, fx, fy])
            faces.landmarks *= np.float32([fx, fy])
        return self._refine(image, faces) if len(faces) else faces

    def detect_seeds(self, image: np.ndarray, floor: float) -> tuple[Faces, np.ndarray]:
        """:meth:`detect`, and the boxes (image pixels) of the weaker candidates scoring at least ``floor``.

        The candidates are where a face near the threshold may be found on the next frames
        (:meth:`regions` looks there too): the :data:`MAX_SEEDS` strongest, ``floor`` kept at
        least half the threshold. The faces are exactly those of :meth:`detect`.
        """
        image = as_bgr(image)
        small, _ = self._scaled(image)
        floor = min(max(float(floor), 0.5 * self.threshold, 0.05), self.threshold)  # never every heatmap cell
        raw = self._detect(small, floor)
        weak = raw[(raw.scores >= floor) & (raw.scores < self.threshold)]
        weak = weak[np.argsort(-weak.scores, kind="stable")[:MAX_SEEDS]]
        fx, fy = image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]
        return self._to_image(image, small, raw), weak.boxes * np.float32([fx, fy, fx, fy])

    def regions(self, width: int, height: int, boxes: np.ndarray, margin: float = REGION_MARGIN,
                max_share: float = REGION_MAX_SHARE, max_pad: int = REGION_MAX_PAD,
                face_px: int = REGION_FACE_PX) -> list[Region] | None:
        """Windows around ``boxes`` (image pixels, xyxy) for :meth:`detect_regions`, or None.

        Each box grows by ``margin`` times its longer side on every side, by at most
        ``max_pad`` working-scale pixels. A face up to ``1.5 * face_px`` working pixels
        gets a window at the working scale whose corners snap outwards to the detector
        grid (:attr:`region_grid`), so the network sees the pixels as a whole-frame run
        does; overlapping such windows merge. A larger face gets its own window zoomed out
        until the face is ``face_px`` wide (detected faces that size are as reliable; it
        costs a fraction of the pixels). None when the windows would cost more than
        ``max_share`` of a whole-frame detection (pixels, plus :data:`REGION_CALL_PX` per window for
        its fixed cost): detect the whole frame then.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) > MAX_REGION_BOXES:
            return None
        scale = self.working_scale(width, height)
        sw, sh = self.working_size(width, height)
        g = self.region_grid
        grid, zoomed = [], []
        for x0, y0, x1, y1 in boxes * scale:
            side = max(x1 - x0, y1 - y0, 1.0)
            zoom = face_px / side if side > 1.5 * face_px else 1.0
            pad = min(max(margin * side, REGION_MIN_PAD), max_pad / zoom)
            if zoom < 1.0:
                r = [max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(sw, int(math.ceil(x1 + pad))), min(sh, int(math.ceil(y1 + pad)))]
                if r[2] > r[0] and r[3] > r[1]:
                    zoomed.append(Region(*r, zoom))
                continue
            r = [max(0, int((x0 - pad) // g * g)), max(0, int((y0 - pad) // g * g)),
                 min(sw, int(-(-(x1 + pad) // g) * g)), min(sh, int(-(-(y1 + pad) // g) * g))]  # fmt: skip
            if r[2] > r[0] and r[3] > r[1]:
                grid.append(r)
        merged = True
        while merged:  # union overlapping windows until none overlap
            merged = False
            for i in range(len(grid)):
                for j in range(i + 1, len(grid)):
                    a, b = grid[i], grid[j]
                    if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                        grid[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                        del grid[j]
                        merged = True
                        break
                if merged:
                    break
        out = [Region(*r, 1.0) for r in grid] + zoomed
        cost = sum((r.x1 - r.x0) * (r.y1 - r.y0) * r.zoom**2 + REGION_CALL_PX for r in out)
        return None if cost > max_share * sw * sh else out

    def detect_regions(self, image: np.ndarray, regions: list[Region]) -> Faces:
        """Faces inside the windows ``regions`` (from :meth:`regions`), in image pixels.

        What :meth:`detect` finds there, at a fraction of the cost: each window is detected
        on its own (a zoom-1 window as a slice of the working-scale frame, a zoomed one
        resized from the image). A face whose box reaches a window's edge (other than the
        frame's) is dropped, as the window may cut it; duplicates of overlapping windows
        are suppressed.
        """
        image = as_bgr(image)
        h, w = image.shape[:2]
        scale = self.working_scale(w, h)
        small = None
        found = []
        for r in regions:
            if r.zoom == 1.0:
                if small is None:
                    small, _ = self._scaled(image)
                win = small[r.y0:r.y1, r.x0:r.x1]
                fx, fy = w / small.shape[1], h / small.shape[0]
                ox, oy = r.x0 * fx, r.y0 * fy
                edge = (r.x0 == 0, r.y0 == 0, r.x1 >= small.shape[1], r.y1 >= small.shape[0])
            else:
                sw, sh = self.working_size(w, h)
                ix0, iy0 = int(r.x0 / scale), int(r.y0 / scale)
                ix1 = w if r.x1 >= sw else min(w, int(math.ceil(r.x1 / scale)))
                iy1 = h if r.y1 >= sh else min(h, int(math.ceil(r.y1 / scale)))
                z = scale * r.zoom
                size = (max(1, round((ix1 - ix0) * z)), max(1, round((iy1 - iy0) * z)))
                win = downscale(image[iy0:iy1, ix0:ix1], size)
                fx, fy = (ix1 - ix0) / size[0], (iy1 - iy0) / size[1]
                ox, oy = ix0, iy0
                edge = (ix0 == 0, iy0 == 0, ix1 >= w, iy1 >= h)
            f = self._detect(win)
            if not len(f):
                continue
            b, (wh, ww) = f.boxes, win.shape[:2]
            inside = (((b[:, 0] > 0.5) | edge[0]) & ((b[:, 1] > 0.5) | edge[1])
                      & ((b[:, 2] < ww - 0.5) | edge[2]) & ((b[:, 3] < wh - 0.5) | edge[3]))  # fmt: skip
            f = f[inside & (f.scores >= self.threshold)]
            f.boxes = f.boxes * np.float32([fx, fy, fx, fy]) + np.float32([ox, oy, ox, oy])
            f.landmarks = f.landmarks * np.float32([fx, fy]) + np.float32([ox, oy])
            found.append(f)
        faces = Faces.concat(found)
        if len(found) > 1 and len(faces):
            faces = faces[nms(faces.boxes, faces.scores, getattr(self, "nms_iou", 0.3))]
        return self._refine(image, faces) if len(faces) else faces

    @abstractmethod
    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        """Faces in an image already at the working scale (scores under ``threshold`` are dropped after;
        a backend that drops weak candidates itself keeps those scoring at least ``floor`` when given)."""

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        """Hook: fill landmarks from the full-resolution ``image`` (default: unchanged)."""
        return faces


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first.

    A box is dropped when its intersection over union with a higher-scoring kept
    box exceeds ``iou``. Boxes are x1, y1, x2, y2 in continuous pixel coordinates.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, np.int64)


def order_landmarks(lm: np.ndarray) -> np.ndarray:
    """A copy with eyes and mouth corners in image-left, image-right order (NaN pairs untouched)."""
    lm = np.array(lm, np.float32, copy=True)
    for a, b in ((0, 1), (3, 4)):
        swap = lm[:, a, 0] > lm[:, b, 0]
        lm[swap, a], lm[swap, b] = lm[swap, b].copy(), lm[swap, a].copy()
    return lm
