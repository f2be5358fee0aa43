"""extract / annotate on results with known labels, and end to end after a real analyze."""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import level, numbered_video

from emoreel.cli import main
from emoreel.results import ResultsWriter, load_results
from emoreel.types import EMOTIONS, Observation
from emoreel.video import open_source, read_frames

FPS = Fraction(30)
N = 60


def probs(name: str, p: float = 0.9) -> tuple[float, ...]:
    v = [(1 - p) / 6] * 7
    v[EMOTIONS.index(name)] = p
    return tuple(v)


def obs(frame, track, emotion, person="", x=20.0, prob=0.9):
    return Observation(
        frame=frame, time_s=frame / 30, track_id=track, x=x, y=10, w=40, h=40, det_score=0.9,
        eyes=(x + 12, 25, x + 28, 25), probs=probs(emotion, prob), emotion=emotion, emotion_smooth=emotion,
        smooth_prob=prob, accepted=True, sharpness=100.0 + frame, person=person,
    )  # fmt: skip


@pytest.fixture
def controlled(tmp_path) -> tuple[Path, Path]:
    """60 numbered frames; track 1 (anna) happy on frames 10-19 and 40-44, else neutral; track 2 sad throughout."""
    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    out = tmp_path / "res"
    out.mkdir()
    meta = {"input": {"path": str(video), "kind": "video", "width": 224, "height": 96, "fps": 30.0,
                      "frame_count": N}, "params": {"every": 1}}  # fmt: skip
    with ResultsWriter(out, meta) as w:
        for f in range(N):
            happy = 10 <= f <= 19 or 40 <= f <= 44
            w.write_frame([obs(f, 1, "happy" if happy else "neutral", "anna"), obs(f, 2, "sad", x=150.0, prob=0.6)])
    return out, video


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    assert "Traceback" not in o.err
    return code, o.out, o.err.strip()


def test_crops_match_selection_and_manifest(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--sheet")
    assert code == 0
    crops = sorted((tmp_path / "x" / "crops").iterdir())
    assert len(crops) == 15  # frames 10-19 and 40-44 of track 1
    with open(tmp_path / "x" / "manifest.csv") as fh:
        manifest = list(csv.DictReader(fh))
    assert sorted(Path(r["file"]).name for r in manifest) == [c.name for c in crops]
    assert {r["person"] for r in manifest} == {"anna"} and {r["emotion"] for r in manifest} == {"happy"}
    assert [int(r["frame"]) for r in manifest] == list(range(10, 20)) + list(range(40, 45))
    assert crops[0].name == "t0000.333_f000010_track001_anna_happy_0.90.png"  # time order = name order
    sheet = cv2.imread(str(tmp_path / "x" / "sheet.png"))
    assert sheet.shape[:2] == (2 * (112 + 18), 8 * 112)  # 15 crops -> 2 rows of 8


def test_best_k_per_track(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "--best", "3", "-o", tmp_path / "x")[0] == 0
    names = [p.name for p in (tmp_path / "x" / "crops").iterdir()]
    assert len(names) == 3  # sharpness grows with the frame: the last 3 happy frames win
    assert sorted(int(n.split("_f")[1][:6]) for n in names) == [42, 43, 44]


def test_min_duration_and_filters(controlled):
    from emoreel.extract import Selection, select

    res = load_results(controlled[0])
    assert select(res, Selection("happy", min_duration=0.3)).sum() == 10  # the 5-frame run (0.17 s) is dropped
    assert select(res, Selection("sad", min_prob=0.7)).sum() == 0
    assert select(res, Selection("sad", start=1.0, end=1.5)).sum() == 16  # frames 30..45
    assert select(res, Selection("happy", person="anna", tracks=(2,))).sum() == 0


def test_clips_and_reel_are_frame_accurate(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    reel = tmp_path / "reel.mp4"
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--no-crops",
                       "--clips", "--pad", "0.1", "--merge-gap", "0.2", "--reel", reel)  # fmt: skip
    assert code == 0
    clips = sorted((tmp_path / "x" / "clips").iterdir())
    assert len(clips) == 2
    expected = [list(range(7, 23)), list(range(37, 48))]  # runs padded by 3 frames each side
    for clip, frames in zip(clips, expected):
        with open_source(clip) as src:
            got = [level(f.image) for f in src]
        assert len(got) == len(frames)
        assert all(abs(a - b) <= 1 for a, b in zip(got, frames)) and got[0] == frames[0] and got[-1] == frames[-1]
    with open_source(reel) as src:
        assert sum(1 for _ in src) == 16 + 11


def test_segments_merge_across_tracks():
    from emoreel.extract import Run, segments

    r = lambda t, a, b: Run(t, "", "happy", np.array([0]), a, b, a / 30, b / 30)  # noqa: E731
    segs = segments([r(1, 10, 20), r(2, 30, 40), r(1, 100, 110)], 30.0, 200, pad_s=0.0, merge_gap_s=0.5)
    assert [(s.first, s.last, len(s.runs)) for s in segs] == [(10, 40, 2), (100, 110, 1)]


def test_annotate_draws_on_every_frame(controlled, tmp_path, capsys):
    res_dir, video = controlled
    out = tmp_path / "ann.mp4"
    assert cli(capsys, "annotate", res_dir, "-o", out, "-q")[0] == 0
    src = list(read_frames(video, [15]))[0].image
    ann = list(read_frames(out, [15]))[0].image
    assert ann.shape == src.shape
    box = np.abs(ann[8:12, 20:60].astype(int) - src[8:12, 20:60].astype(int)).mean()  # the top edge of track 1's box
    assert box > 40


def test_empty_selection_is_not_an_error(controlled, tmp_path, capsys):
    code, out, _ = cli(capsys, "extract", controlled[0], "--emotion", "fear", "-o", tmp_path / "x")
    assert code == 0 and "nothing selected" in out and not (tmp_path / "x").exists()


def test_unknown_names_list_valid_ones(controlled, tmp_path, capsys):
    code, _, err = cli(capsys, "extract", controlled[0], "--emotion", "joyful", "-o", tmp_path / "x")
    assert code != 0 and "valid: angry, disgust" in err
    code, _, err = cli(capsys, "extract", controlled[0], "--emotion", "happy", "--person", "bob", "-o", tmp_path / "x")
    assert code != 0 and "anna" in err and len(err.splitlines()) == 1


def test_existing_output_and_video_checks(controlled, tmp_path, capsys):
    res_dir, video = controlled
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", out)
    assert code != 0 and "--force" in err and (out / "keep.txt").read_text() == "mine"
    moved = tmp_path / "moved.mp4"
    shutil.move(video, moved)
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "y")
    assert code != 0 and "--video" in err
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "y", "--video", moved)[0] == 0
    other = numbered_video(tmp_path / "other.mp4", n=20, fps=FPS)
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "z", "--video", other)
    assert code != 0 and "does not match" in err and "20 frames" in err
    assert not (tmp_path / "z").exists() and not list(tmp_path.glob(".z*")), "nothing half-written"


def test_bad_results_folders(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    code, _, err = cli(capsys, "extract", tmp_path / "nope", "--emotion", "happy", "-o", tmp_path / "x")
    assert code != 0 and "no results folder" in err
    bad = tmp_path / "bad"
    shutil.copytree(res_dir, bad)
    (bad / "run.json").write_text("{not json")
    code, _, err = cli(capsys, "extract", bad, "--emotion", "happy", "-o", tmp_path / "x")
    assert code != 0 and "corrupt" in err
    shutil.copy(res_dir / "run.json", bad / "run.json")
    text = (bad / "results.csv").read_text().replace("emotion_smooth", "label_smooth", 1)
    (bad / "results.csv").write_text(text)
    code, _, err = cli(capsys, "extract", bad, "--emotion", "happy", "-o", tmp_path / "x")
    assert code != 0 and "incompatible version" in err and "emotion_smooth" in err
    meta = json.loads((res_dir / "run.json").read_text())
    meta["schema"] = "emoreel-results/0"
    (bad / "run.json").write_text(json.dumps(meta))
    code, _, err = cli(capsys, "extract", bad, "--emotion", "happy", "-o", tmp_path / "x")
    assert code != 0 and "not supported" in err


def test_end_to_end_after_real_analyze(tmp_path, capsys):
    from emoreel.extract import Selection, select
    from emoreel.sample import make_example_video

    video = make_example_video(tmp_path / "ex.mp4", frames=30)
    assert main(["analyze", str(video), "-o", str(tmp_path / "r"), "-q"]) == 0
    res = load_results(tmp_path / "r")
    labels = [e for e in res.cols["emotion_smooth"] if e]
    top = max(set(labels), key=labels.count)
    n = int(select(res, Selection(top)).sum())
    code, out, _ = cli(capsys, "extract", tmp_path / "r", "--emotion", top, "-o", tmp_path / "x", "--reel", tmp_path / "reel.mp4")
    assert code == 0
    assert len(list((tmp_path / "x" / "crops").iterdir())) == n
    with open_source(tmp_path / "reel.mp4") as src:
        assert src.info.frame_count >= 1 and (src.info.width, src.info.height) == (640, 360)
