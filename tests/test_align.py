"""The frontal gate's decisions and eye alignment geometry."""

from __future__ import annotations

import math

import numpy as np

from emoreel.faces.align import (
    IMPLAUSIBLE, NO_EYES, NOT_FRONTAL, TILTED, TOO_SMALL, align_face, estimate_yaw, eye_transform, frontal_gate, landmark_transform,
)
from emoreel.model.emotion import InputSpec
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
    assert gate(face((25, 20, 75, 80), nose=(75, 52))) == NOT_FRONTAL  # nose 1.25 eye-distances aside: ~72 degrees
    assert gate(face((25, 20, 75, 80), eyes=((40, 30), (55, 50)))) == TILTED  # ~53 degrees
    assert gate(face((25, 20, 75, 80), eyes=((48, 40), (52, 40)), nose=(50, 50))) == NOT_FRONTAL  # profile: eyes close


def test_turned_faces_pass_while_both_eyes_show_and_strict_gate_is_available():
    turned = dict(eyes=((40, 40), (56, 40)), nose=(61, 52))  # nose 0.81 eye-distances aside: ~63 degrees
    assert math.isclose(estimate_yaw(face((25, 20, 75, 80), **turned).landmarks[0]), 63.1, abs_tol=0.5)
    assert gate(face((25, 20, 75, 80), **turned)) == ""
    assert gate(face((25, 20, 75, 80), **turned), max_yaw=25) == NOT_FRONTAL
    assert gate(face((25, 20, 75, 80), nose=(55, 52)), max_yaw=25) == NOT_FRONTAL  # ~31 degrees
    assert gate(face((25, 20, 75, 80), nose=(52, 52)), max_yaw=25) == ""  # ~14 degrees


def test_five_point_alignment_covers_a_turned_face():
    spec = InputSpec(48, 48, "grey", "NCHW", 1 / 255, (0.5,), (0.25,), ((0.315, 0.41), (0.685, 0.41)),
                     landmarks=((0.315, 0.41), (0.685, 0.41), (0.5, 0.604), (0.352, 0.755), (0.648, 0.755)))
    frontal = np.array([[100, 100], [140, 100], [120, 121], [104, 137], [136, 137]], np.float64)
    m = landmark_transform(frontal, spec)
    out = frontal @ m[:, :2].T + m[:, 2]
    assert np.allclose(out, np.array(spec.landmarks) * 48, atol=0.6)  # a face shaped like the template lands on it
    # the same face turned ~55 degrees: eyes and mouth squeezed towards the far side, the nose beyond them
    turned = frontal.copy()
    turned[:, 0] = 120 + (frontal[:, 0] - 120) * 0.57
    turned[2, 0] += 14
    eyes_only = eye_transform(turned[0], turned[1], spec)
    five = landmark_transform(turned, spec)
    mouth_y = lambda m: float((turned[3:] @ m[:, :2].T + m[:, 2])[:, 1].mean())  # noqa: E731
    assert mouth_y(eyes_only) > 48  # eye-only alignment zooms in: the mouth falls out of the crop
    assert 30 < mouth_y(five) < 42  # 5 points keep the whole face in the crop


def five(box, eyes=((40, 40), (60, 40)), nose=(50, 52), mouth=((42, 62), (58, 62))):
    f = face(box, eyes, nose)
    f.landmarks[0, 3], f.landmarks[0, 4] = mouth
    return f


def test_landmarks_that_cannot_be_a_face_are_rejected_turned_faces_are_not():
    box = (25, 20, 75, 80)
    assert gate(five(box)) == ""
    # turned ~60 degrees: eyes and mouth squeezed to one side, the nose past the far eye: still a face
    assert gate(five(box, eyes=((40, 40), (56, 40)), nose=(60, 52), mouth=((43, 63), (55, 63)))) == ""
    assert gate(five(box, nose=(50, 36))) == IMPLAUSIBLE  # the nose above the eyes
    assert gate(five(box, mouth=((42, 48), (58, 48)), nose=(50, 55))) == IMPLAUSIBLE  # the mouth above the nose
    assert gate(five(box, mouth=((58, 62), (42, 62)))) == IMPLAUSIBLE  # the mouth corners swapped
    # the same rules in the face's own frame: a face rolled 25 degrees passes, its nose moved above the eyes fails
    c, s_ = math.cos(math.radians(25)), math.sin(math.radians(25))
    rot = lambda p: (50 + (p[0] - 50) * c - (p[1] - 50) * s_, 50 + (p[0] - 50) * s_ + (p[1] - 50) * c)  # noqa: E731
    pts = dict(eyes=(rot((40, 40)), rot((60, 40))), nose=rot((50, 52)), mouth=(rot((42, 62)), rot((58, 62))))
    assert gate(five(box, **pts)) == ""
    assert gate(five(box, **{**pts, "nose": rot((50, 36))})) == IMPLAUSIBLE


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
