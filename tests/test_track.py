"""The tracker keeps ids through motion, crossings, gaps and strides."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from emoreel.faces.track import Tracker, linear_assignment
from emoreel.types import Faces


def faces_at(centres, size=60, eyes=True) -> Faces:
    """Square faces centred at ``centres``; eyes as landmarks, or all landmarks NaN."""
    boxes, lms = [], []
    for cx, cy, *s in centres:
        w = s[0] if s else size
        boxes.append([cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2])
        lm = np.full((5, 2), np.nan)
        if eyes:
            lm[0], lm[1] = (cx - w / 5, cy - w / 8), (cx + w / 5, cy - w / 8)
        lms.append(lm)
    return Faces(np.array(boxes).reshape(-1, 4), np.ones(len(boxes)), np.array(lms).reshape(-1, 5, 2))


def test_linear_assignment_is_optimal():
    cost = np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]], float)
    assert sorted(linear_assignment(cost)) == [(0, 1), (1, 0), (2, 2)]  # total 5; greedy (0 first) gives 6
    assert linear_assignment(np.zeros((0, 3))) == []
    rng = np.random.default_rng(0)
    for _ in range(300):  # against brute force, square and rectangular, with ties
        n, m = (int(k) for k in rng.integers(1, 6, 2))
        c = rng.integers(0, 4, (n, m)).astype(float) if rng.random() < 0.5 else rng.random((n, m))
        pairs = linear_assignment(c)
        assert len(pairs) == min(n, m)
        assert len({r for r, _ in pairs}) == len({k for _, k in pairs}) == len(pairs)
        if n <= m:
            best = min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(c[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert sum(c[r, k] for r, k in pairs) == pytest.approx(best)


def test_steady_motion_keeps_one_id():
    t = Tracker()
    ids = [t.update(faces_at([(100 + 8 * i, 100)]), i)[0] for i in range(30)]
    assert set(ids) == {1}


@pytest.mark.parametrize("eyes", [True, False])
@pytest.mark.parametrize("missed", ["none", "one", "both"])
def test_two_faces_crossing_keep_their_ids(missed, eyes):
    t = Tracker()
    seen: dict[int, list[float]] = {}
    for i in range(40):
        a, b = (100 + 10 * i, 200), (490 - 10 * i, 210)  # boxes overlap for i = 14..24, centres meet at 19.5
        if missed != "none" and 18 <= i <= 20:
            order = [a] if missed == "one" else []  # detections lost right at the crossing
        else:
            order = [a, b] if i % 2 else [b, a]  # detection order must not matter
        ids = t.update(faces_at(order, eyes=eyes), i)
        for (x, _), tid in zip(order, ids):
            seen.setdefault(int(tid), []).append(x)
    assert sorted(seen) == [1, 2]
    for xs in seen.values():
        steps = np.diff(xs)
        assert (steps > 0).all() or (steps < 0).all(), "each id keeps moving one way: ids never swapped"
        assert len(xs) >= 37


def test_missed_up_to_max_missed_keeps_id_more_gets_new_one():
    t = Tracker(max_missed=5)
    assert t.update(faces_at([(100, 100)]), 0).tolist() == [1]
    for i in range(1, 6):  # missed in frames 1..5: exactly max_missed
        assert t.update(Faces.empty(), i).size == 0
    assert t.update(faces_at([(102, 100)]), 6).tolist() == [1]
    assert t.ended() == []
    for i in range(7, 13):  # missed in frames 7..12: one too many
        t.update(Faces.empty(), i)
        assert t.ended() == ([1] if i == 12 else [])  # reported once, when it ends
    assert t.update(faces_at([(104, 100)]), 13).tolist() == [2]


def test_new_face_gets_new_id_old_keeps_its():
    t = Tracker()
    t.update(faces_at([(100, 100)]), 0)
    assert t.update(faces_at([(102, 100), (400, 300)]), 1).tolist() == [1, 2]
    assert t.update(faces_at([(401, 300), (104, 100)]), 2).tolist() == [2, 1]


def test_face_elsewhere_does_not_take_a_missed_track():
    t = Tracker()
    for i in range(3):
        t.update(faces_at([(100, 100)]), i)
    assert t.update(faces_at([(250, 120)]), 3).tolist() == [2]  # far away: a different face
    assert t.update(faces_at([(100, 100, 20)]), 4).tolist() == [3]  # same spot, a third of the size
    assert t.update(faces_at([(100, 100), (250, 120)]), 5).tolist() == [1, 2]  # the first is back


def test_neighbour_does_not_take_the_id_of_a_missed_face():
    t = Tracker()
    for i in range(3):  # two faces side by side, partly overlapping
        t.update(faces_at([(100, 100), (130, 100)]), i)
    # the face at 130 is missed and a new one appears at 70: matching 100->70 and 130->100
    # would match more tracks, but worse ones than leaving 130 unmatched
    assert t.update(faces_at([(100, 100), (70, 100)]), 3).tolist() == [1, 3]
    assert t.update(faces_at([(100, 100), (130, 100), (70, 100)]), 4).tolist() == [1, 2, 3]


@pytest.mark.parametrize("step", [5, 15])
def test_stride_tracks_by_frame_index(step):
    t = Tracker(max_missed=10)  # a stride longer than max_missed must not end tracks that are seen
    ids = [t.update(faces_at([(100 + 30 * k, 100), (600, 300)]), step * k).tolist() for k in range(10)]
    assert ids == [[1, 2]] * 10


def test_faces_are_predicted_between_detections():
    t = Tracker()
    t.update(faces_at([(100, 100)]), 0)
    t.update(faces_at([(110, 100)]), 2)  # 5 px per frame
    p = t.predict_faces(4)
    assert p.track_ids.tolist() == [1]
    assert p.boxes[0].tolist() == pytest.approx([90, 70, 150, 130])
    assert p.landmarks[0, 0].tolist() == pytest.approx([120 - 12, 100 - 7.5])


def test_empty_frames_and_all_faces_get_ids():
    t = Tracker()
    out = t.update(Faces.empty(), 0)
    assert out.dtype == np.int64 and out.size == 0
    f = faces_at([(100, 100), (300, 100), (500, 100)])
    f.accepted[:] = [True, False, True]  # rejected faces are tracked too
    assert t.update(f, 1).tolist() == [1, 2, 3] and f.track_ids.tolist() == [1, 2, 3]
    assert t.update(Faces.empty(), 2).size == 0


def test_ids_are_per_tracker_and_never_reused():
    a, b = Tracker(max_missed=0), Tracker()
    assert a.update(faces_at([(100, 100)]), 0).tolist() == [1]
    assert b.update(faces_at([(100, 100)]), 0).tolist() == [1]
    a.update(Faces.empty(), 1)
    assert a.ended() == [1]
    assert a.update(faces_at([(100, 100)]), 2).tolist() == [2]


def test_bad_input():
    with pytest.raises(ValueError, match="iou_threshold"):
        Tracker(iou_threshold=1.5)
    with pytest.raises(ValueError, match="max_missed"):
        Tracker(max_missed=-1)
    t = Tracker()
    t.update(faces_at([(100, 100)]), 5)
    with pytest.raises(ValueError, match="frame_index must increase"):
        t.update(faces_at([(100, 100)]), 5)
