"""Right emotions on real faces: our own labelled checks (docs/model.md, benchmarks/real_faces.py).

The audience shot of the shared clip (frame 240): a man laughing with his mouth wide open, and three
people laughing or smiling with their heads turned 55-65 degrees, both eyes visible. Labels are ours,
given by looking at the frame. The core checks build their inputs from the shipped astronaut photo.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.analysis.analyzer import Analyzer
from emoreel.config import AnalyzeOptions
from emoreel.faces.align import estimate_yaw
from emoreel.media.sample import astronaut
from emoreel.media.video import read_frames
from emoreel.types import Frame

CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video" / "short_hamilton_clip.mp4"
# (label, box centre at frame 240) by eye: the laughing man, the laughing woman, the man and the woman smiling
AUDIENCE = {"laughing man": (83, 99), "laughing woman": (196, 131), "smiling man": (355, 92), "smiling woman": (420, 132)}


@pytest.fixture(scope="module")
def analyzer():
    an = Analyzer(AnalyzeOptions(threads=1))
    yield an
    an.close()


def faces_at(an, image, index=0):
    frame = Frame(index, 0.0, image)
    return an.prepare(frame, an.detect(frame))


def nearest(faces, centre):
    c = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    d = np.hypot(c[:, 0] - centre[0], c[:, 1] - centre[1])
    i = int(np.argmin(d))
    assert d[i] < 35, f"no face near {centre}"
    return i


@pytest.mark.skipif(not CLIP.exists(), reason="../shared/data/video/short_hamilton_clip.mp4 not present")
def test_the_laughing_audience_is_kept_and_happy(analyzer):
    """Turned faces with both eyes visible are kept (they were rejected as not_frontal), and the
    laughing man is happy (he was sad on every frame). Through the shot, the two laughing faces are
    mostly happy (the two subtle smiles, turned 55-65 degrees, are not asserted: docs/model.md)."""
    frame = next(read_frames(CLIP, [240]))
    faces = faces_at(analyzer, frame.image, 240)
    classes = analyzer.model.classes
    turned = 0
    for name, centre in AUDIENCE.items():
        i = nearest(faces, centre)
        assert faces.accepted[i], f"{name}: rejected as {faces.reasons[i]}"
        turned += abs(estimate_yaw(faces.landmarks[i])) > 45
    assert turned >= 2  # these really are turned faces, not frontal ones
    man = nearest(faces, AUDIENCE["laughing man"])
    assert classes[int(np.argmax(faces.probs[man]))] == "happy", dict(zip(classes, faces.probs[man].round(2)))
    happy = total = 0
    for fr in read_frames(CLIP, range(225, 275, 5)):  # the two laughing faces through the whole shot
        f = faces_at(analyzer, fr.image, fr.index)
        for name in ("laughing man", "laughing woman"):
            i = nearest(f, AUDIENCE[name])
            total += 1
            happy += bool(f.accepted[i]) and classes[int(np.argmax(f.probs[i]))] == "happy"
    assert happy / total >= 0.6, f"{happy} of {total} laughing faces happy"


def test_a_smile_stays_happy_small_dim_blurred_and_compressed(analyzer):
    """The shipped smiling photo, degraded as video degrades faces, is still found and still happy."""
    img = astronaut()
    small = cv2.resize(img, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)  # face ~ 48 px wide
    dim = np.clip(255 * (img / 255.0) ** 1.8 * 0.15, 0, 255).astype(np.uint8)
    blur = cv2.GaussianBlur(small, (0, 0), 1.2)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 12])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    for name, im in {"small": small, "dim": dim, "blurred": blur, "jpeg q12": jpeg}.items():
        f = faces_at(analyzer, np.ascontiguousarray(im))
        assert len(f) and f.accepted.any(), f"{name}: no accepted face"
        i = int(np.argmax(np.where(f.accepted, f.widths, -1)))
        label = analyzer.model.classes[int(np.argmax(f.probs[i]))]
        assert label == "happy", f"{name}: {label}"
