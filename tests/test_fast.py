"""The fast default against --exact on real video, selective mirror averaging, --device and the int8/float choice."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emoreel import runtime
from emoreel.analysis.analyzer import Analyzer
from emoreel.analysis.run import analyze_to_dir
from emoreel.analysis.run import analyze as emoreel_analyze
from emoreel.analysis.schedule import WorkSchedule, predict_selective
from emoreel.config import AnalyzeOptions
from emoreel.media.sample import make_example_video
from emoreel.model import choice
from emoreel.model.emotion import EmotionModel
from emoreel.outputs.agreement import compare

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "short_hamilton_clip.mp4"
TARGET = 0.97  # issue 17: agreement with --exact on each measure


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """The int8/float timing goes to a temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("EMOREEL_CACHE", str(tmp_path_factory.getbasetemp() / "emoreel-cache"))


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return make_example_video(tmp_path_factory.mktemp("fast") / "example.mp4")  # what `analyze --example` writes


def _agree(video, tmp_path, **fast) -> tuple[dict, dict]:
    exact = analyze_to_dir(video, tmp_path / "exact", AnalyzeOptions(exact=True)).out_dir
    quick = analyze_to_dir(video, tmp_path / "fast", AnalyzeOptions(**fast)).out_dir
    return compare(exact, quick), json.loads((quick / "run.json").read_text())


def _check(r: dict, label: float = TARGET) -> None:
    for key in ("faces", "frames", "segments", "segments_back"):
        assert r[key] >= TARGET, (key, r)
    assert r["label"] >= label, ("label", r)


def test_fast_default_agrees_with_exact_on_the_example_video(example, tmp_path):
    r, meta = _agree(example, tmp_path)
    _check(r)
    s = meta["schedule"]
    assert s["detections"] + s["region_detections"] == 90, s  # every frame detected, whole or in windows


@pytest.mark.skipif(not CLIP.exists(), reason="needs ../shared/data/video")
def test_fast_default_agrees_with_exact_on_real_footage(tmp_path):
    """Four shots, up to eight faces, audience faces near the detector threshold: the hard case."""
    r, meta = _agree(CLIP, tmp_path)
    _check(r)  # 99.9% faces, 99.6% frames, 99.3% smoothed labels, all 4 segments (2026-12-02)
    assert r["new_face_delay_max"] <= 2, r  # new faces found within 2 frames
    s = meta["schedule"]
    assert s["region_detections"] > 0.2 * 275 and s["detections"] < 0.8 * 275, s  # the whole frame skipped often


def test_exact_records_no_schedule(example, tmp_path):
    meta = json.loads((analyze_to_dir(example, tmp_path / "e", AnalyzeOptions(exact=True, max_frames=5)).out_dir
                       / "run.json").read_text())  # fmt: skip
    assert meta["schedule"] is None and meta["params"]["exact"] is True


def test_schedule_settles_after_changes_and_classifies_near_decisions():
    from emoreel.types import Faces

    s = WorkSchedule(detect_every=4, det_threshold=0.5)
    f = Faces(np.array([[0, 0, 50, 50]]), np.array([0.9]), np.zeros((1, 5, 2)))
    f.track_ids = np.array([1])
    s.detected(0, f, cut=False)  # a new face: detect the next frame too
    assert s.wants_detection(1) and not s.wants_detection(2)
    s.detected(1, f, cut=False)
    assert not s.wants_detection(2)
    f.sharpness[:] = 50
    f.probs[0] = [0.9, 0, 0, 0.1, 0, 0, 0]
    s.classified_faces(1, f)
    s.labels(1, "angry", "angry")
    assert not s.due(2, np.array([1]))[0]  # confident and stable: carried
    assert s.due(5, np.array([1]))[0]  # classify_every (= detect_every) frames later: due
    f.probs[0] = [0.45, 0, 0, 0.4, 0, 0, 0.15]
    s.classified_faces(2, f)
    assert s.due(3, np.array([1]))[0]  # near a tie: classified every frame
    weak = Faces(np.array([[0, 0, 50, 50]]), np.array([0.55]), np.zeros((1, 5, 2)))
    weak.track_ids = np.array([1])
    s.detected(4, weak, cut=False)
    assert s.wants_detection(5)


def test_selective_mirror_matches_full_mirror_where_it_runs():
    m = EmotionModel("emoreel-fer-int8")
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (m.spec.height, m.spec.width), np.uint8) for _ in range(5)]
    full, plain = m.predict(crops, tta=True), m.predict(crops, tta=False)
    np.testing.assert_allclose(predict_selective(m, crops, 0.999999), full, atol=1e-5)
    np.testing.assert_allclose(predict_selective(m, crops, 0.0), plain, atol=1e-6)


def test_device_choice_and_cpu_fallback(caplog):
    cpu, cuda = runtime.CPU, runtime.CUDA
    assert runtime.providers_for("cpu", [cuda, cpu]) == ([cpu], None)
    assert runtime.providers_for("auto", [cuda, cpu]) == ([cuda, cpu], None)
    assert runtime.providers_for("auto", [cpu]) == ([cpu], None)
    provs, warning = runtime.providers_for("cuda", [cpu])
    assert provs == [cpu] and "running on CPU" in warning and "\n" not in warning

    class Fell:  # onnxruntime-gpu installed, but the CUDA provider did not start
        def get_providers(self):
            return [cpu]

    assert runtime.used_device(Fell(), [cuda, cpu])[0] == "cpu" and runtime.used_device(Fell(), [cuda, cpu])[1]
    with caplog.at_level(logging.WARNING, logger="emoreel"):
        a = Analyzer(AnalyzeOptions(device="cuda", threads=1))
    a.close()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    if runtime.CUDA not in __import__("onnxruntime").get_available_providers():
        assert len(lines) == 1 and "running on CPU" in lines[0].getMessage()
        assert a.model.device == a.detector.device == "cpu"


def test_cli_shows_the_fallback_in_one_line(tmp_path):
    import onnxruntime

    if runtime.CUDA in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider is available here")
    env = {**os.environ, "EMOREEL_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "emoreel", "analyze", "--example", "-o", str(tmp_path / "o"),
                        "--device", "cuda", "--max-frames", "3", "-q"], capture_output=True, text=True, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
        "emoreel: WARNING: --device cuda: onnxruntime offers no CUDA provider (the GPU build instead of the CPU one: "
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu); running on CPU"
    ]


def test_int8_or_float_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOREEL_CACHE", str(tmp_path))
    calls = []

    def fake(path, **kw):
        calls.append(path.name)
        return 1.0 if "int8" in path.name else 0.5  # float twice as fast: chosen

    monkeypatch.setattr(choice, "_time_model", fake)
    assert choice.choose_default_model().name == choice.FLOAT_MODEL
    assert choice.choose_default_model().name == choice.FLOAT_MODEL
    assert sorted(calls) == sorted([choice.INT8_MODEL, choice.FLOAT_MODEL])  # timed once
    cached = json.loads((tmp_path / "model-choice.json").read_text())
    (key,) = cached
    assert runtime.cpu_model() in key and cached[key]["model"] == choice.FLOAT_MODEL
    monkeypatch.setenv("EMOREEL_CACHE", str(tmp_path / "other"))
    monkeypatch.setattr(choice, "_time_model", lambda path, **kw: 1.0)  # a tie: int8 stays
    assert choice.choose_default_model().name == choice.INT8_MODEL


def test_frame_by_frame_processing_uses_windows_too(example):
    """`emoreel live` hands frames one at a time to Analyzer.process: between keyframes it detects in windows
    around the tracks, and finds the faces the grouped (file) path finds."""
    from emoreel.media.video import open_source

    opts = {"threads": 1, "det_max_side": 640}  # detection at full size: windows pay off on this small video
    a = Analyzer(AnalyzeOptions(**opts))
    try:
        with open_source(example) as src:
            a.use_source(src)
            live = [a.process(f) for f in src]
    finally:
        a.close()
    assert a.schedule.counts["region_detections"] > 0 and a.schedule.counts["carried_faces"] == 0
    grouped: dict[int, int] = {}
    for ob in emoreel_analyze(example, **opts):
        grouped[ob.frame] = grouped.get(ob.frame, 0) + 1
    same = sum(len(obs) == grouped.get(i, 0) for i, obs in enumerate(live))
    assert same >= 0.97 * len(live) and sum(len(obs) for obs in live) >= 0.97 * sum(grouped.values())


def test_windows_only_where_they_were_measured():
    """Windows are measured for CenterFace on CPU; Haar, --only-known and --exact keep the tracker's moved faces."""
    for opts, expected in [({}, True), ({"detector": "haar"}, False), ({"exact": True}, False)]:
        a = Analyzer(AnalyzeOptions(threads=1, **opts))
        try:
            assert a.regions is expected, opts
        finally:
            a.close()
