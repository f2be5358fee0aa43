"""Real-video degradations of face crops, for training and for a degraded evaluation set.

FER2013's faces are clean, centred web images; faces in video are small, blurred,
dim, noisy, compressed and turned. :class:`Degrade` applies those conditions to a
batch of grey uint8 crops, each family independently with probability ``p``:

- low resolution: down to 10-32 px and back up (a small face upscaled to the model's size; pixels of the
  face itself, so the same at any model input size);
- blur: Gaussian, sigma 0.5-1.6 px of a 48-px crop (focus, motion), widened with larger crops
  (:data:`REFERENCE_SIDE`) so that it takes the same share of the face;
- low light: gamma 1.2-2.6 and brightness x0.12-0.7 (a dark audience);
- contrast loss: to 35-80% around the mean (haze, flat light);
- noise: Gaussian, sigma 2-14 grey levels (sensor noise, stronger after low light);
- JPEG: quality 12-55 (compression blocks and ringing).

Everything runs on NumPy and OpenCV, so training (any device) and
``emoreel evaluate --degrade`` share it and no torch is needed to evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FAMILIES = ("lowres", "blur", "lowlight", "contrast", "noise", "jpeg")

REFERENCE_SIDE = 48
"""The crop side (px) the blur widths are given for; a 64-px crop gets 64/48 times the sigma."""


@dataclass(frozen=True)
class Degrade:
    """Random video degradations with probability ``p`` per family and image (0 = off)."""

    p: float = 0.3

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W) uint8 -> degraded uint8 copy; each image draws its own degradations."""
        if self.p <= 0:
            return images
        out = images.copy()
        for i in range(len(out)):
            picks = rng.random(len(FAMILIES)) < self.p
            if picks.any():
                out[i] = degrade_one(out[i], picks, rng)
        return out


def degrade_one(img: np.ndarray, picks, rng: np.random.Generator) -> np.ndarray:
    """One grey uint8 image with the families where ``picks`` is true applied, in a camera's order."""
    lowres, blur, lowlight, contrast, noise, jpeg = (bool(v) for v in picks)
    h, w = img.shape[:2]
    x = img.astype(np.float32)
    if blur:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.5, 1.6)) * (w / REFERENCE_SIDE))
    if lowres:
        s = int(rng.integers(10, 33))
        small = cv2.resize(x, (s, s), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC)
    if contrast:
        c = float(rng.uniform(0.35, 0.8))
        m = float(x.mean())
        x = (x - m) * c + m
    if lowlight:
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** float(rng.uniform(1.2, 2.6)) * float(rng.uniform(0.12, 0.7))
    if noise:
        x = x + rng.normal(0, float(rng.uniform(2, 14)), x.shape).astype(np.float32)
    y = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(12, 56))])
        if ok:
            y = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return y


def degraded_copy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed degraded copy of an evaluation set: every image gets at least one family.

    Each family is drawn with probability 0.4 (an image with none drawn gets one at
    random); the same ``seed`` gives the same copy on every machine with the same OpenCV.
    """
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        picks = rng.random(len(FAMILIES)) < 0.4
        if not picks.any():
            picks[rng.integers(len(FAMILIES))] = True
        out[i] = degrade_one(img, picks, rng)
    return out
