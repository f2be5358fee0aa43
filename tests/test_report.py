"""The HTML report: page structure, binning and pooling, scaling, bad input, and what headless Chromium shows."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emoreel.cli import main
from emoreel.errors import InputError
from emoreel.outputs.report import render, tc, write_report
from emoreel.results import COLUMNS, RESULTS_CSV, RUN_JSON, SCHEMA, ResultsWriter, load_results
from emoreel.types import EMOTIONS, Observation

CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
ODD_NAME = "O'Neil <b>&"  # a person name that must be escaped everywhere


def probs(name: str) -> tuple[float, ...]:
    v = [0.05] * 7
    v[EMOTIONS.index(name)] = 0.7
    return tuple(v)


def results_with_tracks(tmp_path: Path, n_frames: int = 90, fps: float = 30000 / 1001) -> Path:
    """A real video (the built-in example) and results for it.

    Track 1 is a known person (``ODD_NAME``), tracks 2 and 3 are unnamed; each of the three
    shows one emotion per third of the clip (3 gallery shots each). Track 98 is on screen the
    whole clip but never frontal and track 99 is a 5-frame blip: both pooled into "other faces".
    """
    from emoreel.media.sample import make_example_video

    video = make_example_video(tmp_path / "v.mp4", frames=n_frames)
    out = tmp_path / "res"
    out.mkdir()
    meta = {"input": {"path": str(video), "kind": "video", "width": 640, "height": 360, "fps": 30.0,
                      "frame_count": n_frames, "duration_s": n_frames / 30}, "params": {"every": 1},
            "model": {"name": "m", "sha256": "ab" * 32}, "detector": {"name": "centerface"}}  # fmt: skip
    with ResultsWriter(out, meta) as w:
        for f in range(n_frames):
            rows = []
            for t in (1, 2, 3):
                emo = EMOTIONS[(t + f * 3 // n_frames) % 7]
                person = ODD_NAME if t == 1 else "unknown"
                rows.append(Observation(f, f / 30, t, 20.0 + 150 * (t - 1), 60, 100, 100, 0.9, (60, 100, 100, 100), probs(emo),
                                        emo, emo, 0.7, True, "", 50.0 + f % 7, person=person))  # fmt: skip
            rows.append(Observation(f, f / 30, 98, 480, 200, 60, 60, 0.7, accepted=False, reject_reason="profile", person="unknown"))
            if f < 5:
                rows.append(Observation(f, f / 30, 99, 500, 10, 40, 40, 0.6, probs=probs("sad"), emotion="sad",
                                        emotion_smooth="sad", smooth_prob=0.6, sharpness=40.0))  # fmt: skip
            w.write_frame(rows)
    return out


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_page_structure_and_escaping(tmp_path):
    res = load_results(results_with_tracks(tmp_path))
    page = render(res, res.meta["input"]["path"])
    assert count(r'<div class="card" ', page) == 4  # the person, track 2, track 3, other faces
    assert count(r'data-kind="person"', page) == 1 and count(r'data-kind="other"', page) == 1
    assert count(r'<svg class="tl"', page) == 4
    assert count(r'<div class="shot"', page) == 9  # 3 emotions x 3 cards; never for "other faces"
    assert count(r'<img src="data:image/jpeg;base64,', page) == 3 + 9  # thumbnails (none for "other") + gallery
    assert "2 tracks shorter than the minimum or without a label (rejected or unsure throughout)" in page
    # legend: every emotion once, with its colour
    legend = re.search(r'<div class="legend">(.*?)</div>', page).group(1)
    assert all(e in legend for e in EMOTIONS)
    # self-contained: no network resource, no external script or stylesheet
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script src" not in page
    # a person name is data, never markup or script
    assert ODD_NAME not in page and html_escaped(ODD_NAME) in page
    assert "onclick" not in page
    data = json.loads(re.search(r'<script type="application/json" id="emoreel-data">(.*?)</script>', page).group(1))
    assert data["cards"] == 4 and data["more"] == 0 and data["bins"] == 90


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_timeline_bins_have_no_seams_at_ntsc_rates(tmp_path):
    """One label for a whole track is one rectangle, even where time/duration*bins rounds badly (29.97 fps)."""
    res_dir = results_with_tracks(tmp_path)
    res = load_results(res_dir)
    res.meta["input"]["fps"] = 30000 / 1001
    res.cols["time_s"] = res.cols["frame"] / (30000 / 1001)
    res.cols["emotion_smooth"][res.cols["track_id"] == 2] = "happy"
    page = render(res, None, labels="online")  # the label as written, not decoded from the probabilities
    svg = re.search(r'<div class="tlrow" data-key="e1">.*?</svg>', page).group(0)  # track 2: the first unnamed card
    assert ">track 2<" in svg
    assert count(r'<rect x=', svg) == 1 and 'width="90"' in svg


def test_cap_pools_and_lists_the_rest(tmp_path):
    res = load_results(results_with_tracks(tmp_path))
    page = render(res, None, max_cards=1)
    assert count(r'<div class="card" ', page) == 2  # the person + other faces
    assert count(r'<tr class="morerow">', page) == 2 and ">2 more<" in page
    page = render(res, None, min_track_s=0)  # the blip becomes a track of its own; the never-frontal track stays pooled
    assert count(r'<div class="card" ', page) == 5 and "1 tracks shorter" in page


def test_empty_results_still_make_a_page(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    with ResultsWriter(out, {"input": {"path": "x.mp4", "kind": "video", "fps": 25.0, "frame_count": 50}}) as w:
        for _ in range(50):
            w.write_frame([])
    page = render(load_results(out), None)
    assert "No faces were found." in page and 'class="card"' not in page


def test_cli_writes_self_contained_file_and_refuses_bad_output(tmp_path, capsys):
    res = results_with_tracks(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert count(r'<img src="data:image/jpeg;base64,', page) == 12
    assert count(r'class="play" href="v.mp4#t=', page) == 9  # the video sits beside the report: a relative link
    assert main(["report", str(res), "-o", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert main(["report", str(res), "-o", str(out), "--force"]) == 0
    capsys.readouterr()
    for argv, message in [
        ([str(tmp_path / "missing"), "-o", str(tmp_path / "x.html")], "no results folder"),
        ([str(tmp_path), "-o", str(tmp_path / "x.html")], "is not an emoreel results folder"),
        ([str(res), "-o", str(tmp_path / "nope" / "x.html")], "does not exist"),
        ([str(res), "-o", str(tmp_path)], "is a folder"),
        ([str(res), "-o", str(tmp_path / "x.html"), "--max-cards", "0"], "--max-cards"),
        ([str(res), "-o", str(tmp_path / "x.html"), "--video", str(tmp_path / "gone.mp4")], "not found"),
    ]:
        assert main(["report", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.html").exists()


def test_cli_without_the_video_warns_and_writes_no_images(tmp_path, caplog):
    res = results_with_tracks(tmp_path)
    (tmp_path / "v.mp4").unlink()
    out = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(out)]) == 0
    assert "no thumbnails" in caplog.text
    page = out.read_text(encoding="utf-8")
    assert "data:image" not in page and 'class="play"' not in page and count(r'<div class="card" ', page) == 4


def write_long_results(out: Path, hours: float = 2.0, fps: int = 30, every: int = 1, tracks: int = 40, blips: int = 300,
                       size: tuple[int, int] = (160, 90), video: str = "movie.mp4") -> int:
    """A synthetic movie's results.csv written directly: two faces on screen at all times.

    Lane A cycles tracks 1..tracks/2, lane B the rest, each track on screen for one contiguous
    stretch; tracks 1-2 are "alice", tracks tracks/2+1.. +2 are "bob". The label changes every
    50 frames and every 7th row is rejected. ``blips`` 10-frame tracks are scattered over the
    movie (pooled into "other faces"). Returns the number of rows.
    """
    n = int(hours * 3600 * fps)
    frames = np.arange(0, n, every)
    half = tracks // 2
    lanes = [(frames * half // n) + 1, ((frames + n // (2 * half)) % n * half // n) + 1 + half]
    blip_at = np.linspace(0, n - 10 * every, blips).astype(int) // every * every
    rows = 0
    out.mkdir(parents=True, exist_ok=True)
    names = {1: "alice", 2: "alice", half + 1: "bob", half + 2: "bob"}
    with open(out / RESULTS_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        blank_probs = [""] * 7
        for lane, tids in enumerate(lanes):
            for f, t in zip(frames.tolist(), tids.tolist()):
                t_s = f"{f / fps:.6f}"
                k = (f // 50 + t) % 7
                ok = (f // every + lane) % 7 != 0
                p = [f"{0.7 if j == k else 0.05:.4f}" for j in range(7)] if ok else blank_probs
                emo = EMOTIONS[k] if ok else ""
                w.writerow([f, t_s, t, names.get(t, "unknown"), "", "", 20 + 60 * lane, 20, 40, 40, "0.9000",
                            30, 35, 50, 35, *p, emo, "0.7000" if ok else "", emo, f"{0.5 + 0.4 * (f % 90) / 90:.4f}" if ok else "",
                            int(ok), "" if ok else "profile", f"{40 + f % 13:.1f}" if ok else "", video])  # fmt: skip
                rows += 1
        for b, start in enumerate(blip_at.tolist()):
            for f in range(start, start + 10 * every, every):
                w.writerow([f, f"{f / fps:.6f}", 10_000 + b, "unknown", "", "", 100, 50, 30, 30, "0.6", "", "", "", "",
                            *blank_probs, "", "", "", "", 0, "too_small", "", video])  # fmt: skip
                rows += 1
    meta = {"schema": SCHEMA, "input": {"path": video, "kind": "video", "width": size[0], "height": size[1], "fps": float(fps),
            "frame_count": n, "duration_s": n / fps}, "params": {"every": every}, "model": {"name": "synthetic", "sha256": "0" * 64},
            "detector": {"name": "centerface"}, "complete": True, "frames_processed": len(frames), "rows": rows}  # fmt: skip
    (out / RUN_JSON).write_text(json.dumps(meta), encoding="utf-8")
    return rows


def test_scales_to_a_two_hour_movie(tmp_path):
    """2 hours at 30 fps (every 3rd frame: ~150k rows), 40 tracks + 300 blips: a bounded page (its render time is
    a benchmark's business, not a test's: a loaded CI machine would make a timed assertion flaky)."""
    rows = write_long_results(tmp_path / "res", every=3)
    res = load_results(tmp_path / "res")
    assert len(res) == rows > 140_000
    page = render(res, None, max_cards=20)
    assert count(r'<div class="card" ', page) == 21 and count(r'<tr class="morerow">', page) == 38 - 20
    assert count(r'<svg class="tl"', page) == 21
    assert "300 tracks shorter" in page
    states = re.findall(r'data-states="([^"]*)"', page)
    assert all(len(s) == 600 for s in states)
    assert len(page) < 400_000, len(page)  # no images here: the timelines cost a few kB a row
    people = re.findall(r'<div class="card" id="card-e\d+" data-kind="person">.*?<h3[^>]*>([^<]*)</h3>', page)
    assert sorted(people) == ["alice", "bob"]  # people first


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed at /usr/bin/chromium (`make chromium` installs Debian's)")
def test_chromium_shows_cards_timelines_gallery_and_moves_the_marker(tmp_path):
    res = results_with_tracks(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(out)]) == 0
    # the same page, plus a click on the first gallery timecode once it has loaded
    click = ("<script>window.addEventListener('load', function(){ var a = document.querySelectorAll('a.tc')[1]; "
             "document.body.dataset.clicked = a.dataset.key + '@' + a.dataset.t; a.click(); });</script></body>")  # fmt: skip
    clicked = tmp_path / "clicked.html"
    clicked.write_text(out.read_text(encoding="utf-8").replace("</body>", click), encoding="utf-8")
    proc = chromium(tmp_path, "--dump-dom", clicked.as_uri())
    dom = proc.stdout
    assert 'data-ready="1"' in dom, f"the page's script did not run: {proc.stderr[-2000:]}"
    cards = count(r'<div class="card[ "]', dom)  # "card hl": the highlighted one
    shots = count(r'<div class="shot"', dom)
    assert cards == 4 and count(r'<svg class="tl"', dom) == 4 and shots == 9
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    assert loaded == 3 + 9, "every thumbnail decodes in the browser (3 cards with a face, 9 gallery shots)"
    # clicking a timecode moved that row's marker to its time and highlighted the row and the card
    key, t = re.search(r'data-clicked="([^@"]+)@([\d.]+)"', dom).groups()
    seek = re.search(r'data-last-seek="([^"]+)"', dom).group(1).split("@")
    assert seek[0] == key and abs(float(seek[1]) - float(t)) < 1e-6
    row = re.search(rf'<div class="tlrow hl" data-key="{key}">.*?</svg>', dom).group(0)
    x1 = float(re.search(r'class="marker" x1="([-\d.e]+)"', row).group(1))
    assert x1 == pytest.approx(90 * float(t) / 3.0, abs=0.01)
    assert f'<div class="card hl" id="card-{key}"' in dom
    assert count(r'class="marker" x1="-1"', dom) == 3  # the other rows' markers stay hidden
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1200,1000", f"--screenshot={shot}", out.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000


def test_cli_defaults_are_the_library_defaults():
    from emoreel.outputs import report
    from emoreel._cli import report as cli

    assert (cli.MAX_CARDS, cli.MIN_TRACK_S, cli.TIMELINE_BINS) == (report.MAX_CARDS, report.MIN_TRACK_S, report.TIMELINE_BINS)


def test_timecodes():
    assert tc(59.96) == "1:00.0" and tc(3723.25) == "1:02:03.2" and tc(5, 0) == "0:05"


@pytest.mark.parametrize("bad", [{"max_cards": 0}, {"bins": 0}, {"min_track_s": -1}])
def test_render_rejects_nonsense_options(tmp_path, bad):
    res = results_with_tracks(tmp_path)
    with pytest.raises(InputError):
        write_report(load_results(res), tmp_path / "r.html", None, **bad)
