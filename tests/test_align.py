"""The frontal gate's decisions and eye alignment geometry."""

from __future__ import annotations

import math

import numpy as np

from emoreel.align import NO_EYES, NOT_FRONTAL, TILTED, TOO_SMALL, align_face, eye_transform, frontal_gate
from emoreel.emotion import InputSpec
from emoreel.types import Faces

SPEC = InputSpec(48, 48, "grey", "NCHW", 1 / 255, (0.5,), (0.25,), ((0.3, 0.4), (0.7, 0.4)))


def face(box, eyes=((40, 40), (60, 40)), nose=(50, 52)):
    lm = np.full((1, 5, 2), np.nan, np.float32)
    if eyes is not None:
        lm[0, 0], lm[0, 1] = eyes
    if nose is not None:
        lm[0, 2] = nose
    return Faces(np.array([box], np.float32), np.array([0.9]), lm)


def gate(f, **kw):
    frontal_gate(f, min_face=30, **kw)
    return f.reasons[0]


def test_frontal_face_passes():
    assert gate(face((25, 20, 75, 80))) == ""


def test_rejections_carry_reasons():
    assert gate(face((40, 30, 60, 50), eyes=((45, 38), (55, 38)), nose=(50, 44))) == TOO_SMALL
    assert gate(face((25, 20, 75, 80), eyes=None)) == NO_EYES
    assert gate(face((25, 20, 75, 80), nose=(60, 52))) == NOT_FRONTAL  # nose half an eye-distance aside
    assert gate(face((25, 20, 75, 80), eyes=((40, 30), (55, 50)))) == TILTED  # ~53 degrees
    assert gate(face((25, 20, 75, 80), eyes=((48, 40), (56, 40)), nose=(52, 50))) == NOT_FRONTAL  # profile: eyes close


def test_haar_faces_without_nose_use_eyes_only():
    assert gate(face((25, 20, 75, 80), nose=None)) == ""


def test_alignment_levels_eyes_at_template():
    el, er = np.array([100.0, 120.0]), np.array([140.0, 100.0])  # tilted by ~26.6 degrees
    m = eye_transform(el, er, SPEC)
    for src, dst in ((el, (0.3 * 48, 0.4 * 48)), (er, (0.7 * 48, 0.4 * 48))):
        assert np.allclose(m[:, :2] @ src + m[:, 2], dst, atol=1e-6)
    img = np.zeros((240, 240, 3), np.uint8)
    for p in (el, er):  # white dots on the eyes land on the template positions
        img[int(p[1]) - 2 : int(p[1]) + 3, int(p[0]) - 2 : int(p[0]) + 3] = 255
    crop = align_face(img, el, er, SPEC)
    assert crop.shape == (48, 48, 3)
    ys, xs = np.nonzero(crop[..., 0] > 60)
    left, right = xs < 24, xs >= 24
    assert math.isclose(xs[left].mean(), 14.4, abs_tol=1.0) and math.isclose(xs[right].mean(), 33.6, abs_tol=1.0)
    assert math.isclose(ys.mean(), 19.2, abs_tol=1.0)


def test_margin_shrinks_the_face():
    el, er = np.array([100.0, 100.0]), np.array([140.0, 100.0])
    a = eye_transform(el, er, SPEC)
    b = eye_transform(el, er, SPEC, margin=0.5)
    assert math.hypot(*b[:, 0]) < math.hypot(*a[:, 0])
