"""extract / annotate / live on results with known labels, and end to end after a real analyze."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import level, numbered_video

from emoreel.cli import main
from emoreel.media.encode import SoundTrack, ffmpeg_exe
from emoreel.media.video import open_source, read_frames
from emoreel.results import ResultsWriter, load_results
from emoreel.types import EMOTIONS, Observation

FPS = Fraction(30)
N = 60
HAPPY_1 = list(range(10, 20)) + list(range(40, 45))  # track 1 (anna)
HAPPY_2 = list(range(47, 53))  # track 2 (no name)


def probs(name: str, p: float = 0.9) -> tuple[float, ...]:
    v = [(1 - p) / 6] * 7
    v[EMOTIONS.index(name)] = p
    return tuple(v)


def obs(frame, track, emotion, person="", x=20.0, prob=0.9, sharp=None, accepted=True):
    return Observation(
        frame=frame, time_s=frame / 30, track_id=track, x=x, y=10, w=40, h=40, det_score=0.9,
        eyes=(x + 12, 25, x + 28, 25), probs=probs(emotion, prob) if accepted else (np.nan,) * 7,
        emotion=emotion if accepted else "", emotion_smooth=emotion if accepted else "",
        smooth_prob=prob if accepted else np.nan, accepted=accepted, reject_reason="" if accepted else "blurry",
        sharpness=100.0 + frame if sharp is None else sharp, person=person,
    )  # fmt: skip


def write_results(out: Path, video: Path, frames: dict[int, list[Observation]], n=N, **params) -> Path:
    out.mkdir()
    meta = {"input": {"path": str(video), "kind": "video", "width": 224, "height": 96, "fps": 30.0,
                      "fps_fraction": "30", "frame_count": n},
            "params": {"every": 1, "track_max_missed": 10, **params}}  # fmt: skip
    with ResultsWriter(out, meta) as w:
        for f in sorted(frames):
            w.write_frame(frames[f])
    return out


@pytest.fixture
def controlled(tmp_path) -> tuple[Path, Path]:
    """60 numbered frames. Track 1 (anna) is happy on frames 10-19 and 40-44, else neutral;
    track 2 (no name, prob 0.8) is sad, except happy on frames 47-52."""
    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    frames = {
        f: [obs(f, 1, "happy" if f in HAPPY_1 else "neutral", "anna"),
            obs(f, 2, "happy" if f in HAPPY_2 else "sad", x=150.0, prob=0.8)]
        for f in range(N)
    }  # fmt: skip
    return write_results(tmp_path / "res", video, frames), video


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    assert "Traceback" not in o.err
    return code, o.out, o.err.strip()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---- selection -------------------------------------------------------------------------------


def test_selection_filters(controlled):
    from emoreel.outputs.extract import Selection, select

    res = load_results(controlled[0])
    assert select(res, Selection("happy", online=True)).sum() == 21
    assert select(res, Selection("happy", online=True, person="anna")).sum() == 15
    assert select(res, Selection("happy", online=True, min_duration=0.3)).sum() == 10  # the 5- and 6-frame runs are too short
    assert select(res, Selection("sad", online=True, min_prob=0.85)).sum() == 0  # smoothed prob 0.8
    assert select(res, Selection("sad", raw=True, min_prob=0.75)).sum() == N - 6  # raw prob of "sad" 0.8
    assert select(res, Selection("neutral", raw=True, min_prob=0.5)).sum() == N - 15
    assert select(res, Selection("sad", online=True, start=1.0, end=1.5)).sum() == 16  # frames 30..45
    assert select(res, Selection("happy", online=True, person="anna", tracks=(2,))).sum() == 0
    assert select(res, Selection("happy", online=True, tracks=(2,))).sum() == 6


def test_runs_break_on_other_emotions_and_bridge_tracker_gaps(tmp_path):
    """every=2 and track_max_missed=3: a track may skip one processed frame (gap 4), not two (gap 6);
    a frame seen with another emotion always ends a run; rejected frames are like missed ones."""
    from emoreel.outputs.extract import Selection, continuity_gap, find_runs, select

    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    skip1, skip2, other, rejected = {10}, {30, 32}, 44, {50}
    frames = {}
    for f in range(0, N, 2):
        if f in skip1 | skip2:
            frames[f] = []
        elif f in rejected:
            frames[f] = [obs(f, 1, "happy", accepted=False)]
        else:
            frames[f] = [obs(f, 1, "neutral" if f == other else "happy")]
    res = load_results(write_results(tmp_path / "res", video, frames, every=2, track_max_missed=3))
    assert continuity_gap(res) == 4
    runs = find_runs(res, select(res, Selection("happy", online=True)))
    assert [(r.first_frame, r.last_frame) for r in runs] == [(0, 28), (34, 42), (46, 58)]
    assert runs[0].duration_s == pytest.approx(30 / 30)  # frames 0..29: the last processed frame stands for 2
    assert select(res, Selection("happy", online=True, min_duration=0.45)).sum() == len(runs[0].rows) + len(runs[2].rows)
    # the decoded label (the default) bridges the one neutral frame: one run from 34 on
    runs = find_runs(res, select(res, Selection("happy")))
    assert [(r.first_frame, r.last_frame) for r in runs] == [(0, 28), (34, 58)]


def test_raw_selection_names_the_raw_emotion(tmp_path, capsys):
    """Selecting on the raw label: segments.csv and the reel caption name the raw emotion, not the smoothed one."""
    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    frames = {f: [obs(f, 1, "happy")] for f in range(N)}
    for f in range(20, 30):
        frames[f][0].emotion, frames[f][0].probs = "surprise", probs("surprise")  # smoothing held "happy" through it
    res_dir = write_results(tmp_path / "res", video, frames)
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "surprise", "--raw", "-o", tmp_path / "x", "--no-crops",
                       "--clips", "--pad", "0", "-q")  # fmt: skip
    assert code == 0, err
    assert [(s["first_frame"], s["last_frame"], s["emotions"]) for s in read_csv(tmp_path / "x" / "segments.csv")] == [
        ("20", "29", "surprise")]  # fmt: skip


def test_segments_pad_and_merge_across_tracks():
    from emoreel.outputs.extract import Run, segments

    r = lambda t, a, b: Run(t, "", "happy", np.array([0]), a, b, a / 30, (b + 1) / 30)  # noqa: E731
    segs = segments([r(1, 10, 20), r(2, 30, 40), r(1, 100, 110)], 30.0, 200, pad_s=0.0, merge_gap_s=0.5)
    assert [(s.first, s.last, len(s.runs)) for s in segs] == [(10, 40, 2), (100, 110, 1)]
    segs = segments([r(1, 2, 20), r(2, 190, 199)], 30.0, 200, pad_s=0.2, merge_gap_s=0.0)
    assert [(s.first, s.last) for s in segs] == [(0, 26), (184, 199)]  # clipped to the video
    assert [(s.first, s.last) for s in segments([r(1, 10, 20), r(2, 21, 30)], 30.0, 200, 0.0, 0.0)] == [(10, 30)]


def test_segments_never_cross_a_recorded_cut(tmp_path, capsys):
    """A cut at frame 30 (recorded by analyze in run.json): padding stops there and the runs on
    either side (within --merge-gap) stay separate clips; without "cuts" (older results) they merge."""
    from emoreel.outputs.extract import Run, segments

    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    # around the happy frames the faces are unsure (not another emotion, which would stop the padding by itself)
    frames = {f: [obs(f, 1 if f < 30 else 2, "happy" if 22 <= f < 38 else "neutral", prob=0.9 if 22 <= f < 38 else 0.2)]
              for f in range(N)}  # fmt: skip
    res_dir = write_results(tmp_path / "res", video, frames)
    meta = json.loads((res_dir / "run.json").read_text())
    (res_dir / "run.json").write_text(json.dumps({**meta, "cuts": [30]}))
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--no-crops", "--clips",
                       "--pad", "0.5", "-q")  # fmt: skip
    assert code == 0, err
    segs = [(int(s["first_frame"]), int(s["last_frame"]), s["tracks"]) for s in read_csv(tmp_path / "x" / "segments.csv")]
    assert segs == [(7, 29, "1"), (30, 52, "2")]  # 22-29 padded back 15, but not past 29; 30-37 not before 30
    for clip, (a, b, _) in zip(sorted((tmp_path / "x" / "clips").iterdir()), segs):
        with open_source(clip) as src:
            assert [level(f.image) for f in src] == list(range(a, b + 1))
    r = lambda t, a, b: Run(t, "", "happy", np.array([0]), a, b, a / 30, (b + 1) / 30)  # noqa: E731
    assert [(s.first, s.last) for s in segments([r(1, 22, 29), r(2, 30, 37)], 30.0, N, 0.5, 1.0)] == [(7, 52)]


def test_padding_never_reaches_into_another_emotion_of_the_same_face(tmp_path, capsys):
    """One face: sad 0-19, happy 20-39, neutral 40-89. With 0.5 s of padding the happy clip is the happy
    frames alone (not the sad or neutral seconds around them), the sad clip stops before the happy frames;
    another face's emotions do not stop the padding."""
    n = 90
    video = numbered_video(tmp_path / "v.mp4", n=n, fps=FPS)
    emotion = lambda f: "sad" if f < 20 else "happy" if f < 40 else "neutral"  # noqa: E731
    other = lambda f: [obs(f, 2, "sad" if f < 75 else "happy", x=120.0)] if f >= 60 else []  # noqa: E731
    res_dir = write_results(tmp_path / "res", video, {f: [obs(f, 1, emotion(f))] + other(f) for f in range(n)}, n=n)

    def segs(emo):
        code, _, err = cli(capsys, "extract", res_dir, "--emotion", emo, "-o", tmp_path / emo, "--no-crops", "--clips",
                           "--pad", "0.5", "--merge-gap", "0", "-q")  # fmt: skip
        assert code == 0, err
        return [(int(s["first_frame"]), int(s["last_frame"]), s["tracks"]) for s in read_csv(tmp_path / emo / "segments.csv")]

    assert segs("happy") == [(20, 39, "1"), (75, 89, "2")]  # track 2's happy: its sad 60-74 stops the padding
    assert segs("sad") == [(0, 19, "1"), (45, 74, "2")]  # track 1's neutral 40-89 does not stop track 2's padding


def test_two_runs_of_a_face_never_merge_across_its_other_emotion(tmp_path, capsys):
    """happy 10-24, sad 25-44, happy 45-64 of one face: close enough to merge (--merge-gap 1 s, 73% happy),
    but the clip would show the sad moment: two clips. The same with --raw labels."""
    n = 70
    video = numbered_video(tmp_path / "v.mp4", n=n, fps=FPS)
    emotion = lambda f: "happy" if 10 <= f < 25 or 45 <= f < 65 else "sad" if 25 <= f < 45 else "neutral"  # noqa: E731
    prob = lambda f: 0.9 if emotion(f) != "neutral" else 0.2  # noqa: E731
    res_dir = write_results(tmp_path / "res", video, {f: [obs(f, 1, emotion(f), prob=prob(f))] for f in range(n)}, n=n)
    for extra in ([], ["--raw"]):
        out = tmp_path / ("x" + "".join(extra))
        code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", out, "--no-crops", "--clips",
                           "--pad", "0.1", "--merge-gap", "1", "-q", *extra)  # fmt: skip
        assert code == 0, err
        segs = [(int(s["first_frame"]), int(s["last_frame"])) for s in read_csv(out / "segments.csv")]
        assert len(segs) == 2 and segs[0][1] < 25 and segs[1][0] > 44, (extra, segs)


def test_min_share_stops_a_merge_that_is_mostly_another_emotion():
    """Two short happy runs 1 s apart: merged they would be 25% happy; with --min-share 0.6 they stay
    two clips whose paddings meet halfway; runs close together still merge."""
    from emoreel.outputs.extract import Run, segments

    r = lambda t, a, b: Run(t, "", "happy", np.array([0]), a, b, a / 30, (b + 1) / 30)  # noqa: E731
    runs = [r(1, 30, 39), r(1, 70, 79)]  # 20 happy frames of 50
    merged = segments(runs, 30.0, 200, pad_s=0.5, merge_gap_s=2.0, min_share=0.0)
    assert [(s.first, s.last) for s in merged] == [(15, 94)]
    apart = segments(runs, 30.0, 200, pad_s=0.5, merge_gap_s=2.0, min_share=0.6)
    assert [(s.first, s.last) for s in apart] == [(15, 54), (55, 94)]  # no frame in both
    close = segments([r(1, 30, 39), r(1, 44, 53)], 30.0, 200, pad_s=0.5, merge_gap_s=2.0, min_share=0.6)
    assert [(s.first, s.last, len(s.runs)) for s in close] == [(15, 68, 2)]  # 20 of 24 frames happy


def test_captions_name_everyone_on_screen(tmp_path, capsys):
    """A happy clip of anna while ben and an unnamed track are also in the frames: segments.csv and
    the caption say who else is on screen."""
    from emoreel.outputs.extract import Selection, fill_on_screen, find_runs, recorded_cuts, segments, select

    video = numbered_video(tmp_path / "v.mp4", n=N, fps=FPS)
    frames = {f: [obs(f, 1, "happy" if 20 <= f < 40 else "neutral", "anna"),
                  obs(f, 2, "neutral", "ben", x=100.0)] + ([obs(f, 3, "neutral", x=150.0)] if f >= 35 else [])
              for f in range(N)}  # fmt: skip
    res_dir = write_results(tmp_path / "res", video, frames)
    res = load_results(res_dir)
    runs = find_runs(res, select(res, Selection("happy")), emotion="happy")
    segs = fill_on_screen(res, segments(runs, 30.0, N, 0.0, 0.0, 1, recorded_cuts(res)))
    assert len(segs) == 1 and segs[0].on_screen == ["anna", "ben", "track 3"]
    assert segs[0].caption(0.7).endswith("anna  happy  (with ben, track 3)")
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--no-crops",
                       "--reel", tmp_path / "reel.mp4", "--pad", "0", "-q")  # fmt: skip
    assert code == 0, err
    row = read_csv(tmp_path / "x" / "segments.csv")[0]
    assert (row["persons"], row["on_screen"]) == ("anna", "anna, ben, track 3")


# ---- crops and sheet ------------------------------------------------------------------------------


def test_crops_match_selection_and_manifest(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--sheet", "-q")
    assert code == 0 and "21 crops" in out
    crops = sorted((tmp_path / "x" / "crops").iterdir())
    assert len(crops) == 21 == len(HAPPY_1) + len(HAPPY_2)
    manifest = read_csv(tmp_path / "x" / "manifest.csv")
    assert sorted(Path(r["file"]).name for r in manifest) == [c.name for c in crops]
    assert sorted((int(r["frame"]), int(r["track_id"])) for r in manifest) == sorted(
        [(f, 1) for f in HAPPY_1] + [(f, 2) for f in HAPPY_2])  # fmt: skip
    res = load_results(res_dir)
    for r in manifest:  # each row points back at its results.csv row
        i = int(r["row"])
        assert (res.cols["frame"][i], res.cols["track_id"][i], res.cols["x"][i]) == (int(r["frame"]), int(r["track_id"]), float(r["x"]))
    assert crops[0].name == "t0000.333_f000010_track001_anna_happy_0.90.png"  # time order = name order
    assert crops[-1].name == "t0001.733_f000052_track002_happy_0.80.png"  # no person: named by its track
    assert cv2.imread(str(crops[0])).shape == (112, 112, 3)
    sheet = cv2.imread(str(tmp_path / "x" / "sheet.png"))
    assert sheet.shape[:2] == (3 * (112 + 18), 8 * 112)  # 21 crops -> 3 rows of 8


def test_best_k_per_track(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "--best", "3", "--best-gap", "0", "-o", tmp_path / "x",
               "--sheet")[0] == 0  # fmt: skip
    names = [p.name for p in (tmp_path / "x" / "crops").iterdir()]
    assert len(names) == 6  # 3 per track
    frames = {t: sorted(int(n.split("_f")[1][:6]) for n in names if f"track{t:03d}" in n) for t in (1, 2)}
    assert frames == {1: [42, 43, 44], 2: [50, 51, 52]}  # equal probabilities: the sharpest (latest) win
    assert cv2.imread(str(tmp_path / "x" / "sheet.png")).shape[:2] == (112 + 18, 6 * 112)  # 1 row of 6


def test_grey48_crops_and_native_size(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "--track", "2", "--grey48", "-o", tmp_path / "g")[0] == 0
    crops = sorted((tmp_path / "g" / "crops").iterdir())
    assert len(crops) == 6 and all(cv2.imread(str(c), cv2.IMREAD_UNCHANGED).shape == (48, 48) for c in crops)
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "--track", "2", "--size", "0", "--margin", "0",
               "-o", tmp_path / "n")[0] == 0  # fmt: skip
    assert cv2.imread(str(next((tmp_path / "n" / "crops").iterdir()))).shape == (40, 40, 3)  # the 40x40 box itself


# ---- clips and reel -------------------------------------------------------------------------------


def test_clips_and_reel_are_frame_accurate(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    reel = tmp_path / "reel.mp4"
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--no-crops",
                       "--clips", "--pad", "0.1", "--merge-gap", "0.2", "--reel", reel, "-q")  # fmt: skip
    assert code == 0
    clips = sorted((tmp_path / "x" / "clips").iterdir())
    # padding (3 frames) never reaches into a face's other emotion: each run is surrounded by its face's
    # neutral (track 1) or sad (track 2) frames, so 10-19 stays 10..19; 40-44 and track 2's 47-52 merge: 40..52
    expected = [list(range(10, 20)), list(range(40, 53))]
    assert [c.name for c in clips] == ["clip_001_0.333-0.667.mp4", "clip_002_1.333-1.767.mp4"]
    for clip, frames in zip(clips, expected):
        with open_source(clip) as src:
            got = [level(f.image) for f in src]
        assert got == frames
    segs = read_csv(tmp_path / "x" / "segments.csv")
    assert [(int(s["first_frame"]), int(s["last_frame"]), s["tracks"]) for s in segs] == [(10, 19, "1"), (40, 52, "1 2")]
    assert [int(s["reel_first_frame"]) for s in segs] == [0, 10]
    with open_source(reel) as src:
        reel_frames = list(src)
    assert len(reel_frames) == 10 + 13 == sum(int(s["frames"]) for s in segs)
    # the reel's frames are the segments' frames in order (the caption sits on the bottom rows)
    assert [level(f.image[:60]) for f in reel_frames] == expected[0] + expected[1]


def test_reel_inside_the_output_folder(controlled, tmp_path, capsys):
    res_dir, _ = controlled
    out = tmp_path / "x"
    code, _, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "--person", "anna", "-o", out, "--no-crops",
                     "--reel", out / "reel.mp4", "-q")  # fmt: skip
    assert code == 0 and (out / "reel.mp4").exists() and (out / "segments.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---- annotate -------------------------------------------------------------------------------------


def box_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean difference along the top edge of track 1's box (x 20..60, y 10)."""
    return float(np.abs(a[8:12, 20:60].astype(int) - b[8:12, 20:60].astype(int)).mean())


def test_annotate_draws_on_every_frame(controlled, tmp_path, capsys):
    res_dir, video = controlled
    out = tmp_path / "ann.mp4"
    assert cli(capsys, "annotate", res_dir, "-o", out, "-q")[0] == 0
    with open_source(out) as src:
        assert src.info.frame_count == N and (src.info.width, src.info.height) == (224, 96)
    src = list(read_frames(video, [15]))[0].image
    ann = list(read_frames(out, [15]))[0].image
    assert box_diff(ann, src) > 40
    code, _, err = cli(capsys, "annotate", res_dir, "-o", out, "-q")
    assert code != 0 and "--force" in err


def test_annotate_holds_overlays_between_strided_frames(tmp_path, capsys):
    """every=3 with faces on processed frames 0..12 only: frames 13, 14 hold frame 12's boxes;
    from processed frame 15 (no faces) on, frames are copied unchanged."""
    video = numbered_video(tmp_path / "v.mp4", n=30, fps=FPS)
    frames = {f: [obs(f, 1, "happy")] if f <= 12 else [] for f in range(0, 30, 3)}
    res_dir = write_results(tmp_path / "res", video, frames, n=30, every=3)
    out = tmp_path / "ann.mp4"
    assert cli(capsys, "annotate", res_dir, "-o", out, "-q")[0] == 0
    idx = [12, 13, 14, 15, 16, 29]
    src = {f.index: f.image for f in read_frames(video, idx)}
    ann = {f.index: f.image for f in read_frames(out, idx)}
    assert all(box_diff(ann[i], src[i]) > 40 for i in (12, 13, 14))
    assert all(np.abs(ann[i].astype(int) - src[i].astype(int)).mean() < 3 for i in (15, 16, 29))


# ---- bad input ------------------------------------------------------------------------------------


def test_empty_selection_is_not_an_error(controlled, tmp_path, capsys):
    code, out, _ = cli(capsys, "extract", controlled[0], "--emotion", "fear", "-o", tmp_path / "x")
    assert code == 0 and "nothing selected" in out and not (tmp_path / "x").exists()


def test_unknown_names_list_valid_ones(controlled, tmp_path, capsys):
    code, _, err = cli(capsys, "extract", controlled[0], "--emotion", "joyful", "-o", tmp_path / "x")
    assert code != 0 and "valid: angry, disgust, fear, happy, sad, surprise, neutral" in err
    code, _, err = cli(capsys, "extract", controlled[0], "--emotion", "happy", "--person", "bob", "-o", tmp_path / "x")
    assert code != 0 and "unknown person 'bob'" in err and "anna" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-prob", "1.5"], "--min-prob"),
        (["--best", "0"], "--best"),
        (["--pad", "-1"], "--pad"),
        (["--start", "2", "--end", "1"], "--end"),
        (["--no-crops"], "nothing to write"),
        (["--no-crops", "--clips", "--sheet"], "--sheet"),
        (["--margin", "-0.5"], "--margin"),
    ],
)
def test_bad_option_values(controlled, tmp_path, capsys, args, message):
    code, _, err = cli(capsys, "extract", controlled[0], "--emotion", "happy", "-o", tmp_path / "x", *args)
    assert code != 0 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))


def test_existing_output_and_video_checks(controlled, tmp_path, capsys):
    res_dir, video = controlled
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", out)
    assert code != 0 and "--force" in err and (out / "keep.txt").read_text() == "mine"
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", out, "--force", "-q")
    assert code != 0 and "did not write" in err and (out / "keep.txt").read_text() == "mine"  # --force: own files only
    (out / "keep.txt").unlink()
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", out, "--force", "-q")[0] == 0
    assert len(list((out / "crops").iterdir())) == 21
    reel = tmp_path / "reel.mp4"
    reel.write_text("not mine to replace")
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "r", "--reel", reel)
    assert code != 0 and "--force" in err and reel.read_text() == "not mine to replace"
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path, "--force")
    assert code != 0 and "would replace" in err and res_dir.exists()  # never replace the results themselves
    moved = tmp_path / "moved.mp4"
    shutil.move(video, moved)
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "y")
    assert code != 0 and "not found" in err and "--video" in err
    assert cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "y", "--video", moved, "-q")[0] == 0
    assert len(list((tmp_path / "y" / "crops").iterdir())) == 21
    other = numbered_video(tmp_path / "other.mp4", n=20, fps=FPS)
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "z", "--video", other)
    assert code != 0 and "does not match" in err and "20 frames, results say 60" in err
    other = numbered_video(tmp_path / "wide.mp4", n=N, fps=FPS, size=(256, 96))
    code, _, err = cli(capsys, "annotate", res_dir, "-o", tmp_path / "z.mp4", "--video", other)
    assert code != 0 and "size 256x96, results say 224x96" in err
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
    code, _, err = cli(capsys, "annotate", bad, "-o", tmp_path / "a.mp4")
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
    meta = json.loads((res_dir / "run.json").read_text())
    meta["input"] = {"path": "camera:0", "kind": "camera", "width": 224, "height": 96, "fps": 30.0, "frame_count": 0}
    shutil.copy(res_dir / "results.csv", bad / "results.csv")
    (bad / "run.json").write_text(json.dumps(meta))
    code, _, err = cli(capsys, "annotate", bad, "-o", tmp_path / "a.mp4")
    assert code != 0 and "camera" in err and "--video" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "a.mp4").exists()


# ---- live -----------------------------------------------------------------------------------------


def test_live_without_a_window_says_what_to_do(capsys, monkeypatch):
    import emoreel.outputs.extract

    monkeypatch.setattr(emoreel.outputs.extract, "gui_available", lambda: (False, "no display (DISPLAY is not set)"))
    code, _, err = cli(capsys, "live", "--camera", "0", "--window")  # the OpenCV window; the browser view needs none
    assert code != 0 and len(err.splitlines()) == 1
    assert "no display" in err and "without --window" in err
    assert "emoreel analyze --camera 0 -o OUT --record" in err and "annotate" in err


def test_live_missing_camera(capsys, monkeypatch):
    import emoreel.outputs.extract

    monkeypatch.setattr(emoreel.outputs.extract, "gui_available", lambda: (True, ""))
    code, _, err = cli(capsys, "live", "--camera", "9")
    assert code != 0 and "camera 9 is not available" in err.splitlines()[-1]


# ---- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> tuple[Path, Path]:
    from emoreel.media.sample import make_example_video

    d = tmp_path_factory.mktemp("e2e")
    video = make_example_video(d / "ex.mp4", frames=60)
    assert main(["analyze", str(video), "-o", str(d / "r"), "-q"]) == 0
    return d / "r", video


def nearest_source_frame(img: np.ndarray, source: dict[int, np.ndarray], around: int) -> int:
    """The source frame (of around-1..around+1) that ``img`` differs least from."""
    cands = [i for i in (around - 1, around, around + 1) if i in source]
    return min(cands, key=lambda i: np.abs(img.astype(int) - source[i].astype(int)).mean())


def test_end_to_end_after_real_analyze(analyzed, tmp_path, capsys):
    from emoreel.outputs.extract import Selection, find_runs, select

    res_dir, video = analyzed
    res = load_results(res_dir)
    labels = [e for e in res.cols["emotion_smooth"] if e]
    assert labels, "the real run classified faces"
    top = max(set(labels), key=labels.count)
    sel = Selection(top, start=0.5, end=1.2)  # a time range puts the cut points mid-video
    mask = select(res, sel)
    n, runs = int(mask.sum()), find_runs(res, mask)
    assert n > 0
    out, reel = tmp_path / "x", tmp_path / "reel.mp4"
    code, stdout, _ = cli(capsys, "extract", res_dir, "--emotion", top, "--start", 0.5, "--end", 1.2, "-o", out,
                          "--sheet", "--clips", "--pad", 0.1, "--reel", reel, "-q")  # fmt: skip
    assert code == 0, stdout
    crops = sorted((out / "crops").iterdir())
    assert len(crops) == n == len(read_csv(out / "manifest.csv"))
    rows, cols = -(-n // min(8, n)), min(8, n)
    assert cv2.imread(str(out / "sheet.png")).shape[:2] == (rows * (112 + 18), cols * 112)
    # segments: frames 15..36 selected (0.5 s .. 1.2 s) padded by 3 frames
    first, last = min(r.first_frame for r in runs) - 3, max(r.last_frame for r in runs) + 3
    segs = read_csv(out / "segments.csv")
    assert [(int(s["first_frame"]), int(s["last_frame"])) for s in segs] == [(first, last)] == [(12, 39)]
    source = {f.index: f.image for f in read_frames(video, range(first - 1, last + 2))}
    clip = next((out / "clips").iterdir())
    with open_source(clip) as src:
        got = [f.image for f in src]
    assert len(got) == last - first + 1
    assert nearest_source_frame(got[0], source, first) == first  # cut points match the source frames
    assert nearest_source_frame(got[-1], source, last) == last
    assert all(abs(nearest_source_frame(img, source, first + k) - (first + k)) <= 1 for k, img in enumerate(got))
    with open_source(reel) as src:
        assert sum(1 for _ in src) == last - first + 1
        assert (src.info.width, src.info.height) == (640, 360)


def test_annotate_and_live_frames_after_real_analyze(analyzed, tmp_path, capsys):
    from emoreel.config import AnalyzeOptions
    from emoreel.outputs.extract import live_frames
    from emoreel.analysis.analyzer import Analyzer

    res_dir, video = analyzed
    out = tmp_path / "ann.mp4"
    assert cli(capsys, "annotate", res_dir, "-o", out, "-q", "--timecode")[0] == 0
    with open_source(out) as src:
        assert src.info.frame_count == 60
    analyzer = Analyzer(AnalyzeOptions(threads=1))
    try:
        with open_source(video, max_frames=3) as src:
            shown = list(live_frames(src, analyzer))
    finally:
        analyzer.close()
    assert len(shown) == 3 and all(len(obs) == 2 for _, obs, _ in shown)
    frame, _, img = shown[-1]
    assert img.shape == frame.image.shape and np.abs(img.astype(int) - frame.image.astype(int)).sum() > 0


# ---- sound ----------------------------------------------------------------------------------------

RATE = 48000
BURSTS = (12, 42)  # source frames where a 60 ms tone starts (inside anna's happy runs)
VIDEO_DELAY = 0.5  # the video stream starts 0.5 s after the audio, as in many real files


def pcm(path: Path) -> np.ndarray:
    """The first audio stream of ``path``, mono float at 48 kHz (empty when it has none)."""
    exe = ffmpeg_exe()
    out = subprocess.run([exe, "-v", "error", "-i", str(path), "-map", "0:a:0?", "-ac", "1", "-ar", str(RATE),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout  # fmt: skip
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768


def onsets(x: np.ndarray) -> list[float]:
    """Times (s) where the tone bursts start: the envelope crosses half its peak."""
    env = np.convolve(np.abs(x), np.ones(48) / 48, "same")
    on = env > 0.5 * env.max()
    starts = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    return [s / RATE for s in starts]


@pytest.fixture
def sounded(tmp_path) -> tuple[Path, Path]:
    """The ``controlled`` results on a copy of the numbered video that has sound: silence with a
    1 kHz burst starting exactly when frames 12 and 42 play; the video starts 0.5 s into the audio."""
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg")
    silent = numbered_video(tmp_path / "silent.mp4", n=N, fps=FPS)
    audio = np.zeros(int((VIDEO_DELAY + N / 30 + 0.5) * RATE), np.float32)
    for f in BURSTS:
        s = round((VIDEO_DELAY + f / 30) * RATE)
        audio[s : s + RATE * 6 // 100] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE * 6 // 100) / RATE)
    raw = tmp_path / "a.raw"
    raw.write_bytes((audio * 32767).astype("<i2").tobytes())
    video = tmp_path / "v.mov"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-itsoffset", str(VIDEO_DELAY), "-i", str(silent),
                    "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw),
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", str(video)], check=True)  # fmt: skip
    frames = {
        f: [obs(f, 1, "happy" if f in HAPPY_1 else "neutral", "anna"),
            obs(f, 2, "happy" if f in HAPPY_2 else "sad", x=150.0, prob=0.8)]
        for f in range(N)
    }  # fmt: skip
    return write_results(tmp_path / "res", video, frames), video


def test_sound_track_finds_where_frame_zero_plays(sounded):
    _, video = sounded
    track = SoundTrack.of(video, FPS)
    assert track is not None and track.start_s == pytest.approx(VIDEO_DELAY, abs=0.002)
    assert [round(t * 30 - VIDEO_DELAY * 30, 2) for t in onsets(pcm(video))] == [12.0, 42.0]


@pytest.mark.parametrize("inputs", [64, 1], ids=["one-ffmpeg-run", "many-segments-via-wav"])
def test_clips_and_reel_carry_the_sound_of_their_frames(sounded, tmp_path, capsys, monkeypatch, inputs):
    monkeypatch.setattr("emoreel.media.encode.MAX_SOUND_INPUTS", inputs)
    res_dir, _ = sounded
    reel = tmp_path / "reel.mp4"
    code, out, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "--person", "anna", "-o", tmp_path / "x",
                         "--no-crops", "--clips", "--pad", "0", "--merge-gap", "0", "--reel", reel, "-q")  # fmt: skip
    assert code == 0 and "(with sound)" in out, err
    clips = sorted((tmp_path / "x" / "clips").iterdir())
    assert len(clips) == 2  # frames 10-19 and 40-44
    for clip, first, last in zip(clips, (10, 40), (19, 44)):
        with open_source(clip) as src:
            assert [level(f.image) for f in src] == list(range(first, last + 1))
        assert fourcc(clip) in ("avc1", "h264")
        x = pcm(clip)
        assert len(x) == pytest.approx((last - first + 1) / 30 * RATE, abs=RATE // 100)
        burst = next(b for b in BURSTS if first <= b <= last)
        assert onsets(x) == [pytest.approx((burst - first) / 30, abs=0.002)]
    # the reel: 10 frames of the first segment, then 5 of the second, each with its own sound
    x = pcm(reel)
    assert len(x) == pytest.approx(15 / 30 * RATE, abs=RATE // 100)
    assert onsets(x) == [pytest.approx(2 / 30, abs=0.002), pytest.approx((10 + 2) / 30, abs=0.002)]
    assert not [p for p in tmp_path.rglob(".*partial*")]


def test_annotate_keeps_the_sound_in_sync(sounded, tmp_path, capsys):
    res_dir, _ = sounded
    out = tmp_path / "ann.mp4"
    code, stdout, _ = cli(capsys, "annotate", res_dir, "-o", out, "-q")
    assert code == 0 and "with sound" in stdout
    x = pcm(out)
    assert len(x) == pytest.approx(N / 30 * RATE, abs=RATE // 100)
    assert onsets(x) == [pytest.approx(b / 30, abs=0.002) for b in BURSTS]


def fourcc(path: Path) -> str:
    code = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FOURCC))
    return "".join(chr(code >> 8 * i & 0xFF) for i in range(4))


def test_mute(sounded, tmp_path, capsys):
    res_dir, _ = sounded
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "m", "--no-crops", "--clips",
                       "--mute", "-q")  # fmt: skip
    assert code == 0 and "(muted)" in out
    clips = list((tmp_path / "m" / "clips").iterdir())
    assert clips and all(SoundTrack.of(c, FPS) is None for c in clips)


def test_silent_source(controlled, tmp_path, capsys):
    silent_res, _ = controlled
    code, out, _ = cli(capsys, "annotate", silent_res, "-o", tmp_path / "a.mp4", "-q")
    assert code == 0 and "no sound: the video has none" in out
    assert SoundTrack.of(tmp_path / "a.mp4", FPS) is None


def test_without_ffmpeg_clips_are_still_written(controlled, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("emoreel.media.encode.ffmpeg_exe", lambda: None)
    res_dir, _ = controlled
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "happy", "--person", "anna", "-o", tmp_path / "x",
                       "--no-crops", "--clips", "--pad", "0", "--merge-gap", "0", "-q")  # fmt: skip
    assert code == 0 and "ffmpeg not found" in out
    clip = sorted((tmp_path / "x" / "clips").iterdir())[0]
    with open_source(clip) as src:
        assert [level(f.image) for f in src] == list(range(10, 20))
    assert fourcc(clip) in ("mp4v", "FMP4")  # OpenCV's MPEG-4 part 2


# ---- variable frame rate ----------------------------------------------------------------------------

VFR_BURSTS = (62, 72)  # source frames (of the 30 fps original) where a tone starts; both after the hole


@pytest.fixture
def vfr(tmp_path) -> tuple[Path, Path]:
    """A real variable-frame-rate file: 90 numbered frames at 30 fps with source frames 30-59 dropped
    (a 1 s hole: file frame j >= 30 shows source frame j + 30 and plays at (j + 30) / 30 s), over
    sound with a tone burst when source frames 62 and 72 play. Results: anna is happy on file frames
    25-34 (across the hole) and 40-49 (after it), with time_s the frames' presentation times."""
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg")
    cfr = numbered_video(tmp_path / "cfr.mp4", n=90, fps=FPS)
    audio = np.zeros(int(3.5 * RATE), np.float32)
    for f in VFR_BURSTS:
        s = round(f / 30 * RATE)
        audio[s : s + RATE * 6 // 100] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE * 6 // 100) / RATE)
    raw = tmp_path / "a.raw"
    raw.write_bytes((audio * 32767).astype("<i2").tobytes())
    video = tmp_path / "vfr.mov"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(cfr), "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw),
                    "-map", "0:v", "-map", "1:a", "-vf", "select='lt(n,30)+gte(n,60)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-c:a", "pcm_s16le", str(video)], check=True)  # fmt: skip
    with open_source(video) as src:
        info, times = src.info, {f.index: f.time_s for f in src}
    assert len(times) == 60 and abs(times[40] - 70 / 30) < 0.01  # really variable-rate
    happy = set(range(25, 35)) | set(range(40, 50))
    out = tmp_path / "res"
    out.mkdir()
    meta = {"input": {"path": str(video), "kind": "video", "width": info.width, "height": info.height,
                      "fps": float(info.fps), "fps_fraction": str(info.fps), "frame_count": info.frame_count},
            "params": {"every": 1, "track_max_missed": 2}}  # fmt: skip
    with ResultsWriter(out, meta) as w:
        for f in sorted(times):
            o = obs(f, 1, "happy" if f in happy else "neutral", "anna")
            o.time_s = times[f]
            w.write_frame([o])
    return out, video


@pytest.mark.parametrize("inputs", [64, 1], ids=["one-ffmpeg-run", "many-segments-via-wav"])
def test_variable_frame_rate_clips_are_cut_by_presentation_time(vfr, tmp_path, capsys, monkeypatch, inputs):
    monkeypatch.setattr("emoreel.media.encode.MAX_SOUND_INPUTS", inputs)
    res_dir, _ = vfr
    reel = tmp_path / "reel.mp4"
    code, out, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "-o", tmp_path / "x", "--no-crops", "--clips",
                         "--pad", "0", "--merge-gap", "0", "--reel", reel, "-q")  # fmt: skip
    assert code == 0 and "(with sound)" in out, err
    segs = read_csv(tmp_path / "x" / "segments.csv")
    assert [(int(s["first_frame"]), int(s["last_frame"])) for s in segs] == [(25, 34), (40, 49)]
    # times are presentation times: file frame 34 shows source frame 64, file frame 40 source frame 70
    starts, ends = [float(s["start_s"]) for s in segs], [float(s["end_s"]) for s in segs]
    assert starts == [pytest.approx(25 / 30, abs=1 / 30), pytest.approx(70 / 30, abs=1 / 30)]
    assert ends == [pytest.approx(65 / 30, abs=1 / 30), pytest.approx(80 / 30, abs=1 / 30)]
    clips = sorted((tmp_path / "x" / "clips").iterdir())
    assert [c.name for c in clips] == [f"clip_001_{starts[0]:.3f}-{ends[0]:.3f}.mp4", f"clip_002_{starts[1]:.3f}-{ends[1]:.3f}.mp4"]
    # written at a constant 30 fps: the frame before the hole is held for the second it plays
    across = list(range(25, 29)) + [29] * 31 + list(range(60, 65))
    for clip, shown, burst in zip(clips, (across, list(range(70, 80))), VFR_BURSTS):
        with open_source(clip) as src:
            assert src.info.fps == 30
            assert [level(f.image) for f in src] == shown
        x = pcm(clip)
        assert len(x) == pytest.approx(len(shown) / 30 * RATE, abs=RATE // 100)
        assert onsets(x) == [pytest.approx((burst - shown[0]) / 30, abs=0.02)]
    x = pcm(reel)  # 40 frames of the first segment, then 10 of the second, each with its own sound
    assert len(x) == pytest.approx(50 / 30 * RATE, abs=RATE // 100)
    assert onsets(x) == [pytest.approx(37 / 30, abs=0.02), pytest.approx((40 + 2) / 30, abs=0.02)]
    assert [int(s["reel_first_frame"]) for s in segs] == [0, 40]


def test_timeline_holds_frames_over_holes_and_leaves_constant_rates_alone():
    from emoreel.media.encode import Timeline

    cfr = Timeline(Fraction(30000, 1001))
    assert cfr.copies(5, 9) == [1] * 5 and cfr.frames_out(5, 9) == 5
    assert cfr.time(30) == float(Fraction(30 * 1001, 30000)) and cfr.end(29) == cfr.time(30)
    # frames 0-2 at 30 fps, then a 0.5 s hole, frames 3-4 at 30 fps again; frame 2 unknown (interpolated)
    tl = Timeline(Fraction(30), {0: 0.0, 1: 1 / 30, 3: 0.6, 4: 0.6 + 1 / 30})
    assert tl.time(2) == pytest.approx((1 / 30 + 0.6) / 2)
    assert tl.end(4) == pytest.approx(0.6 + 2 / 30)  # past the last known frame: one frame at the rate
    assert tl.copies(3, 4) == [1, 1]
    full = Timeline(Fraction(30), {0: 0.0, 1: 1 / 30, 2: 2 / 30, 3: 0.6, 4: 0.6 + 1 / 30})
    assert full.copies(0, 4) == [1, 1, 16, 1, 1] and full.frames_out(0, 4) == 20
    dense = Timeline(Fraction(30), {0: 0.0, 1: 0.01, 2: 1 / 30})  # closer than a frame: one is dropped
    assert dense.copies(0, 1) == [0, 1] and dense.frames_out(0, 2) == 2
