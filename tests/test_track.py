"""The tracker keeps ids through motion, crossings, gaps and strides."""

from __future__ import annotations

import numpy as np
import pytest

from emoreel.track import Tracker, linear_assignment
from emoreel.types import Faces


def faces_at(centres, size=60, eyes=True) -> Faces:
    boxes, lms = [], []
    for cx, cy in centres:
        boxes.append([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
        lm = np.full((5, 2), np.nan)
        if eyes:
            lm[0], lm[1] = (cx - size / 5, cy - size / 8), (cx + size / 5, cy - size / 8)
        lms.append(lm)
    return Faces(np.array(boxes).reshape(-1, 4), np.ones(len(boxes)), np.array(lms).reshape(-1, 5, 2))


def test_linear_assignment_is_optimal():
    cost = np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]], float)
    pairs = linear_assignment(cost)
    assert sorted(pairs) == [(0, 1), (1, 0), (2, 2)]  # total 5, greedy (row1->col1 first) gives 6
    assert sorted(linear_assignment(np.array([[1.0, 0.0]]))) == [(0, 1)]
    assert linear_assignment(np.zeros((0, 3))) == []


def test_steady_motion_keeps_one_id():
    t = Tracker()
    ids = [t.update(faces_at([(100 + 8 * i, 100)]), i)[0] for i in range(30)]
    assert set(ids) == {1}


@pytest.mark.parametrize("gap", [False, True])
def test_two_faces_crossing_keep_their_ids(gap):
    t = Tracker()
    seen = {}
    for i in range(40):
        a, b = (100 + 10 * i, 200), (490 - 10 * i, 210)  # they pass through each other around i = 19
        if gap and 18 <= i <= 20:
            f = faces_at([a])  # one of them is missed during the crossing
            ids = t.update(f, i)
            continue
        order = [a, b] if i % 2 else [b, a]  # detection order must not matter
        ids = t.update(faces_at(order), i)
        for (x, _), tid in zip(order, ids):
            seen.setdefault(tid, []).append(x)
    assert len(seen) == 2
    for xs in seen.values():
        steps = np.diff(xs)
        assert (steps > 0).all() or (steps < 0).all(), "each id keeps moving one way: ids never swapped"


def test_short_gap_keeps_id_long_gap_gets_new_one():
    t = Tracker(max_missed=5)
    assert t.update(faces_at([(100, 100)]), 0)[0] == 1
    assert t.update(faces_at([]), 1).size == 0
    assert t.update(faces_at([(102, 100)]), 5)[0] == 1  # missed frames 1..4
    assert t.update(faces_at([(104, 100)]), 20)[0] == 2  # gone for 15 frames
    assert t.ended() == [1]
    assert t.ended() == []


def test_new_face_gets_new_id_old_keeps_its():
    t = Tracker()
    t.update(faces_at([(100, 100)]), 0)
    ids = t.update(faces_at([(102, 100), (400, 300)]), 1)
    assert ids.tolist() == [1, 2]


def test_stride_tracks_by_frame_index():
    t = Tracker(max_missed=10)
    ids = [t.update(faces_at([(100 + 30 * k, 100)]), 5 * k)[0] for k in range(10)]  # 6 px/frame, every 5th frame
    assert set(ids) == {1}


def test_faces_without_eyes_use_box_centres():
    t = Tracker()
    ids = [t.update(faces_at([(100 + 5 * i, 100)], eyes=False), i)[0] for i in range(10)]
    assert set(ids) == {1}


def test_trackers_do_not_share_ids():
    a, b = Tracker(), Tracker()
    assert a.update(faces_at([(100, 100)]), 0)[0] == 1
    assert b.update(faces_at([(100, 100)]), 0)[0] == 1
