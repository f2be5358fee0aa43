"""The analysis as lists of stages (issue 24): one interface, each mode a different list composed in one place."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emoreel.analysis import stages as st
from emoreel.analysis.analyzer import Analyzer
from emoreel.config import AnalyzeOptions
from emoreel.media.sample import astronaut
from emoreel.media.video import open_source
from emoreel.types import Faces, Frame


class Nobody:
    """An identifier that knows nobody (no dlib needed)."""

    link_gap = 0

    def observe(self, image, faces, frame_index):
        return [""] * len(faces), np.full(len(faces), np.nan)

    def person(self, track_id):
        return "unknown"

    def final_persons(self):
        return {}


def names(stages) -> list[str]:
    return [type(s).__name__ for s in stages]


@pytest.fixture(scope="module")
def shared():
    an = Analyzer(AnalyzeOptions(threads=1))  # one detector and model for every analyzer here
    yield an.detector, an.model
    an.close()


def analyzer(shared, **opts) -> Analyzer:
    det, model = shared
    return Analyzer(AnalyzeOptions(threads=1, **{k: v for k, v in opts.items() if k != "identifier"}), detector=det,
                    model=model, identifier=opts.get("identifier"))  # fmt: skip


def test_each_mode_is_a_list_of_stages(shared, tmp_path):
    fast = analyzer(shared)
    assert names(fast.find_keyframe) == ["DetectWhole"] and names(fast.find_between) == ["DetectNear"]
    assert names(fast.prepare_detected) == ["Gate", "Align", "Classify"]
    assert names(fast.prepare_moved) == ["Gate", "ClassifyDue"]
    assert names(fast.in_order) == ["Track", "ScheduleDetected", "EndTracks", "Smooth", "ScheduleLabels"]

    exact = analyzer(shared, exact=True)
    assert names(exact.find_between) == ["MoveWithTracks"]  # only with --detect-every: every frame is a keyframe
    assert names(exact.in_order) == ["Track", "EndTracks", "Smooth"]

    known = analyzer(shared, only_known=True, known_faces=str(tmp_path), identifier=Nobody())
    assert names(known.prepare_detected) == ["Gate"]  # classified only once the face is known
    assert names(known.in_order) == ["Track", "EndTracks", "Identify", "OnlyKnown", "Align", "Classify", "Smooth"]

    photos = analyzer(shared)
    cv2.imwrite(str(tmp_path / "a.png"), astronaut())
    with open_source(str(tmp_path)) as src:
        photos.use_source(src)
    assert names(photos.prepare_detected) == ["Gate", "Align", "Classify", "SecondLook"]
    assert names(photos.in_order) == ["Track", "EndTracks", "OwnLabel"]


def test_every_stage_has_the_one_interface(shared):
    an = analyzer(shared)
    frame = Frame(0, 0.0, astronaut())
    work = st.Work(detector_of=lambda: an.detector)
    faces = st.run_stages(an.find_keyframe, frame, None, work)
    assert isinstance(faces, Faces) and len(faces) and work.how == "keyframe"
    for stage in [*an.prepare_detected, *an.in_order]:
        assert isinstance(stage, st.Stage)
        faces = stage(frame, faces, work)
        assert isinstance(faces, Faces)
    assert faces.accepted.any() and np.isfinite(faces.probs[faces.accepted]).all() and (faces.track_ids >= 0).all()
    assert len(work.labels) == len(faces)
