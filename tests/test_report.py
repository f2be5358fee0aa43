"""The HTML report: structure, scaling, bad input, and what headless Chromium shows."""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from emoreel.cli import main
from emoreel.results import ResultsWriter, load_results
from emoreel.report import render
from emoreel.types import EMOTIONS, Observation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def probs(name: str) -> tuple[float, ...]:
    v = [0.05] * 7
    v[EMOTIONS.index(name)] = 0.7
    return tuple(v)


def results_with_tracks(tmp_path, n_frames=90, tracks=3, video=None) -> Path:
    """Tracks 1..k each hold one emotion per third of the clip; track 99 is a 5-frame blip."""
    from emoreel.sample import make_example_video

    video = video or make_example_video(tmp_path / "v.mp4", frames=n_frames)
    out = tmp_path / "res"
    out.mkdir()
    meta = {"input": {"path": str(video), "kind": "video", "width": 640, "height": 360, "fps": 30.0,
                      "frame_count": n_frames, "duration_s": n_frames / 30}, "params": {"every": 1},
            "model": {"name": "m", "sha256": "ab" * 32}, "detector": {"name": "centerface"}}  # fmt: skip
    with ResultsWriter(out, meta) as w:
        for f in range(n_frames):
            rows = []
            for t in range(1, tracks + 1):
                emo = EMOTIONS[(t + f * 3 // n_frames) % 7]
                rows.append(Observation(f, f / 30, t, 20.0 + 150 * (t - 1), 60, 100, 100, 0.9, (60, 100, 100, 100), probs(emo),
                                        emo, emo, 0.7, True, "", 50.0, person="anna" if t == 1 else "unknown"))  # fmt: skip
            if f < 5:
                rows.append(Observation(f, f / 30, 99, 500, 10, 40, 40, 0.6, accepted=False, reject_reason="too_small"))
            w.write_frame(rows)
    return out


def test_structure_of_the_page(tmp_path):
    html = render(load_results(results_with_tracks(tmp_path)), None)
    assert html.count("class='card'") == 4  # anna, track 2, track 3, other faces (the blip)
    assert "other faces" in html and "anna" in html
    assert html.count("<svg class=\"tl\"") == 4
    assert not re.search(r"(src|href)=['\"]https?://", html), "no network resources"


def test_cli_writes_self_contained_file_and_refuses_overwrite(tmp_path, capsys):
    res = results_with_tracks(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(out)]) == 0
    html = out.read_text()
    assert html.count("data:image/jpeg;base64,") >= 4  # thumbnails and gallery from the real video
    assert main(["report", str(res), "-o", str(out)]) != 0
    assert "--force" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "x.html")]) != 0
    assert "no results folder" in capsys.readouterr().err


def test_scales_to_long_videos(tmp_path):
    """2 hours at 30 fps, 40 tracks: the page stays small because timelines are binned."""
    import time

    import numpy as np

    from emoreel.results import Results

    n = 2 * 3600 * 30 // 6  # every 6th frame processed
    frames = np.arange(n) * 6
    cols = {"frame": np.tile(frames, 2), "time_s": np.tile(frames / 30.0, 2)}
    tids = np.concatenate([(frames // 5400) % 40 + 1, (frames // 3000) % 40 + 41])
    m = len(tids)
    emo = np.array(EMOTIONS, dtype=object)[(np.arange(m) // 50) % 7]
    cols.update(track_id=tids, person=np.full(m, "", dtype=object), match=np.full(m, "", dtype=object),
                emotion=emo, emotion_smooth=emo, reject_reason=np.full(m, "", dtype=object),
                accepted=np.ones(m, np.int64), smooth_prob=np.full(m, 0.7), sharpness=np.full(m, 50.0))  # fmt: skip
    for k in ("match_distance", "x", "y", "w", "h", "det_score", "eye_l_x", "eye_l_y", "eye_r_x", "eye_r_y", "emotion_prob", *EMOTIONS):
        cols[k] = np.full(m, 1.0)
    meta = {"input": {"fps": 30.0, "frame_count": n * 6, "duration_s": n * 6 / 30.0}, "params": {"every": 6}}
    t = time.perf_counter()
    html = render(Results(tmp_path, meta, cols), None, max_cards=40)
    assert time.perf_counter() - t < 60
    assert html.count("class='card'") == 40 and html.count("class='morerow'") == 40
    assert len(html) < 5_000_000


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make test installs Debian's chromium)")
def test_chromium_renders_cards_timeline_and_gallery(tmp_path):
    res = results_with_tracks(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(out)]) == 0
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
           "--virtual-time-budget=3000", "--dump-dom", out.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-ready="1"' in dom, "the page's script ran"
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    gallery = len(re.findall(r"<div class=\"shot\">", dom))
    cards = len(re.findall(r"<div class=\"card\"", dom))
    assert cards == 4
    assert gallery == 9  # tracks 1-3 each hold 3 emotions; the rejected blip has none
    assert loaded == cards + gallery, "every thumbnail decoded in the browser"
    assert len(re.findall(r'<svg class="tl"', dom)) == 4
    shot = tmp_path / "shot.png"
    subprocess.run(cmd[:-2] + ["--window-size=1200,900", f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
