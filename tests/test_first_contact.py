"""Issue 25: what trips a newcomer: errors that point to the right command, progress for Python users."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emoreel.analysis.run import analyze_to_dir
from emoreel.cli import main
from emoreel.config import AnalyzeOptions
from emoreel.media.sample import make_example_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_example_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames=12, size=(320, 180), face_px=150)


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    got = capsys.readouterr()
    assert "Traceback" not in got.err
    return code, got.out.strip(), got.err.strip()


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# 5. errors that point to the right command ------------------------------------------------------------


def test_a_batch_option_given_to_analyze_names_batch(clip, tmp_path, capsys):
    code, _, err = cli(capsys, "analyze", clip, "--split", "2", "-o", tmp_path / "o")
    line = one_line(err)
    assert code == 2 and "--split is an option of emoreel batch" in line and "emoreel batch INPUT... -o ROOT --split N" in line
    assert "usage: emoreel [-h]" not in err and not (tmp_path / "o").exists()
    code, _, err = cli(capsys, "analyze", clip, "-o", tmp_path / "o", "--det-treshold", "0.3")  # a typo
    assert code == 2 and "did you mean --det-threshold?" in one_line(err)
    code, _, err = cli(capsys, "report", tmp_path / "o", "--best", "3", "-o", tmp_path / "r.html")
    assert code == 2 and "--best is an option of emoreel extract, not report" in one_line(err)


def test_verbose_after_the_command(tmp_path, capsys):
    code, _, err = cli(capsys, "analyze", tmp_path / "nope.mp4", "-o", tmp_path / "o", "-v")
    assert code == 2 and "no such file" in one_line(err)  # -v accepted: the input is what is wrong
    code, _, err = cli(capsys, "-v", "analyze", tmp_path / "nope.mp4", "-o", tmp_path / "o")
    assert code == 2 and "no such file" in one_line(err)


def test_analyze_on_a_folder_of_videos_points_to_batch(clip, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    shutil.copy(clip, folder / "b.mp4")
    code, _, err = cli(capsys, "analyze", folder, "-o", tmp_path / "o")
    line = one_line(err)
    assert code == 2 and "2 videos" in line and f"emoreel batch {folder} -o ROOT" in line
    assert f"emoreel analyze {folder / 'a.mp4'} -o OUT_DIR" in line
    code, _, err = cli(capsys, "analyze", f"{folder}/*.mp4", "-o", tmp_path / "o")  # a quoted glob: quoted again
    assert code == 2 and f"emoreel batch '{folder}/*.mp4' -o ROOT" in one_line(err)
    (tmp_path / "nothing").mkdir()
    code, _, err = cli(capsys, "analyze", tmp_path / "nothing", "-o", tmp_path / "o")
    assert code == 2 and one_line(err).endswith(f"no images found in {tmp_path / 'nothing'}")


def test_batch_on_a_folder_without_videos_says_what_it_holds(clip, tmp_path, capsys):
    empty, nested, photos = tmp_path / "empty", tmp_path / "nested", tmp_path / "photos"
    empty.mkdir()
    (nested / "day1").mkdir(parents=True)
    shutil.copy(clip, nested / "day1" / "a.mp4")
    photos.mkdir()
    for k in range(2):
        (photos / f"{k}.jpg").write_bytes(b"")
    code, _, err = cli(capsys, "batch", empty, "-o", tmp_path / "root")
    assert code == 2 and f"no videos (avi/mkv/mov/mp4/webm, ...) in {empty}" in one_line(err)
    code, _, err = cli(capsys, "batch", nested, "-o", tmp_path / "root")
    assert code == 2 and "1 in subfolders: add --recursive" in one_line(err)
    code, _, err = cli(capsys, "batch", photos, "-o", tmp_path / "root")
    assert code == 2 and f"2 images: analyze them with emoreel analyze {photos} -o OUT_DIR" in one_line(err)
    assert not (tmp_path / "root").exists()


def test_an_interrupted_folder_suggests_resume_and_a_complete_one_is_already_complete(clip, tmp_path, capsys):
    out = tmp_path / "o"

    def stop_after_4(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze_to_dir(clip, out, AnalyzeOptions(threads=1), progress=stop_after_4)
    code, _, err = cli(capsys, "analyze", clip, "-o", out, "--threads", "1")
    line = one_line(err)
    assert code == 2 and "unfinished run" in line and line.index("--resume") < line.index("--force")
    code, outp, _ = cli(capsys, "analyze", clip, "-o", out, "--threads", "1", "--resume")
    assert code == 0 and "frames/s" in outp  # the rest analysed
    code, outp, _ = cli(capsys, "analyze", clip, "-o", out, "--threads", "1", "--resume")
    assert code == 0 and outp.startswith("already complete: 12 frames") and "frames/s" not in outp
    code, _, err = cli(capsys, "analyze", clip, "-o", out, "--threads", "1")  # complete: only --force replaces it
    assert code == 2 and "already holds results" in one_line(err) and "--resume" not in err


# 7. the batch progress line ---------------------------------------------------------------------------


def test_batch_progress_counts_each_finished_video_once(clip, tmp_path):
    from emoreel.batch.runner import run_batch

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(clip, videos / name)
    seen: list[dict] = []
    summary = run_batch([str(videos)], tmp_path / "root", AnalyzeOptions(threads=1), workers=2, progress=seen.append)
    assert summary.ok and seen
    assert all(st["frames"] <= st["frames_total"] for st in seen), [(st["frames"], st["frames_total"]) for st in seen]
    assert seen[-1]["frames"] == seen[-1]["frames_total"] == 36 and seen[-1]["videos_done"] == 3


# 3b. analyze_to_dir(..., progress=True) ----------------------------------------------------------------


def test_analyze_to_dir_progress_true_draws_the_cli_line(clip, tmp_path, capsys):
    import emoreel

    capsys.readouterr()
    summary = emoreel.analyze_to_dir(str(clip), tmp_path / "o", AnalyzeOptions(threads=1), progress=True)
    got = capsys.readouterr()
    assert summary.complete and got.out == ""  # progress only: the library prints no summary
    assert "\r[" in got.err and "12/12 frames" in got.err and "frames/s" in got.err and "ETA" in got.err
    assert got.err.endswith("\n")  # the line is ended, so what is printed next starts on its own line
    emoreel.analyze_to_dir(str(clip), tmp_path / "o2", AnalyzeOptions(threads=1), progress=False)
    assert capsys.readouterr().err == ""


# 6. the batch report: one palette, one legend, the failed inputs, frames that fit their pages ------------


@pytest.fixture(scope="module")
def batch_with_failures(clip, tmp_path_factory) -> Path:
    from emoreel.batch.runner import run_batch

    d = tmp_path_factory.mktemp("batch")
    shutil.copy(clip, d / "a.mp4")
    shutil.copy(clip, d / "b.mp4")
    (d / "corrupt.mp4").write_bytes(b"\0" * 4000)
    inputs = [str(d / n) for n in ("a.mp4", "b.mp4", "corrupt.mp4", "missing.mp4")]
    summary = run_batch(inputs, d / "root", AnalyzeOptions(threads=1), workers=1)
    assert [v.status for v in summary.videos] == ["complete", "complete", "failed", "failed"]
    return d / "root"


def test_batch_report_shares_the_palette_and_lists_failed_inputs(batch_with_failures, tmp_path):
    import html
    import re

    from emoreel.outputs.draw import emotion_hex
    from emoreel.types import EMOTIONS

    out = tmp_path / "r.html"
    assert main(["report", str(batch_with_failures), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    outer = re.sub(r'srcdoc="[^"]*"', "", page)  # the batch page without the embedded per-video pages
    for e in EMOTIONS:  # one legend, in the per-video reports' colours
        assert f'<i style="background:{emotion_hex(e)}"></i>{e}</span>' in outer
        assert f'<i style="background:{emotion_hex(e)}"></i>{e}</span>' in html.unescape(page.split('srcdoc="')[1])
    bar_colours = set(re.findall(r'<span title="\w+ \d+%" style="width:[\d.]+%;background:(#[0-9a-f]{6})"', outer))
    assert bar_colours and bar_colours <= {emotion_hex(e) for e in EMOTIONS}
    failed = re.search(r'<h2 id="failed">Failed \(2\)</h2>.*?</table>', outer).group(0)
    assert "corrupt.mp4" in failed and "missing.mp4" in failed and "no such file" in failed
    assert '<a href="#failed"><b>2</b> failed</a>' in outer and "900px" not in page
    assert outer.count("<details") == 2


def test_batch_report_frames_grow_to_their_pages_in_chromium(batch_with_failures, tmp_path):
    import re

    from test_report import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed at /usr/bin/chromium (`make chromium` installs Debian's)")
    out = tmp_path / "r.html"
    assert main(["report", str(batch_with_failures), "-o", str(out)]) == 0
    opened = tmp_path / "opened.html"  # the same page with every video's section opened, as a reader would, then
    # measured a moment later from the batch page: each frame's inner height and the height of the page inside it
    probe = ("<script>document.querySelectorAll('details').forEach(function(d){d.open=true});"
             "setTimeout(function(){document.querySelectorAll('iframe').forEach(function(f){"
             "f.dataset.inner=f.contentWindow.innerHeight;f.dataset.content=f.contentDocument.documentElement.scrollHeight;"
             "})},3000)</script></body>")  # fmt: skip
    opened.write_text(out.read_text(encoding="utf-8").replace("</body>", probe), encoding="utf-8")
    proc = chromium(tmp_path, "--window-size=1200,900", "--dump-dom", opened.as_uri())
    frames = re.findall(r"<iframe [^>]*>", proc.stdout)
    assert len(frames) == 2, proc.stderr[-2000:]
    for f in frames:
        height = int(re.search(r'data-height="(\d+)"', f).group(1))  # the height the embedded page reported
        assert f"height: {height}px" in f and height > 600  # taller than the default frame
        inner = int(re.search(r'data-inner="(\d+)"', f).group(1))
        content = int(re.search(r'data-content="(\d+)"', f).group(1))
        assert inner == height and content <= inner, f  # the whole page fits its frame: nothing scrolls inside


# 1. release hygiene: a licence, the third-party notices, a README that reads the same on an index page -----

ROOT = Path(__file__).resolve().parents[1]


def test_licence_and_third_party_notices():
    import json
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT" and set(project["license-files"]) == {"LICENSE", "THIRD_PARTY_NOTICES"}
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "the emoreel authors" in licence
    notices = (ROOT / "THIRD_PARTY_NOTICES").read_text(encoding="utf-8")
    card = json.loads((ROOT / "src/emoreel/models/centerface.json").read_text(encoding="utf-8"))
    assert card["license"]["text"] in notices and card["sha256"] in notices  # CenterFace's MIT notice, the file it covers
    for model in ("emoreel-fer", "emoreel-fer-int8"):  # every data set a shipped model learned from is named, with its terms
        data = json.dumps(json.loads((ROOT / f"src/emoreel/models/{model}.json").read_text(encoding="utf-8"))["training"])
        named = set(re.findall(r"(fer2013|webfaces)", data.lower()))
        assert named and all(n in notices.lower() for n in named), (model, named)
    assert "research use" in notices and "Apache-2.0" in notices


def test_readme_links_work_on_a_package_index():
    """An index page shows the README without the repository: a relative link or image there is broken."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)", readme) + re.findall(r'(?:src|href)="([^"]+)"', readme)
    assert all(re.match(r"https?://", t) for t in targets), [t for t in targets if not re.match(r"https?://", t)]
    assert "pip install emoreel" not in readme  # not on an index yet: the README says how to install from a clone


# 4. the GPU route: one onnxruntime distribution, and a warning from the installed metadata when there are two ---


def _installed(site: Path, name: str, version: str) -> Path:
    """A distribution's installed metadata (what pip leaves in site-packages), in a folder put on the path."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    return site


def test_two_onnxruntime_distributions_are_named_in_one_warning(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from emoreel import runtime

    if runtime.runtime_conflict() is not None:
        pytest.skip("this environment already has two onnxruntime distributions")
    site = _installed(tmp_path / "site", "onnxruntime-gpu", "1.22.0")
    monkeypatch.syspath_prepend(str(site))
    message = runtime.runtime_conflict()
    assert message is not None and "onnxruntime-gpu 1.22.0" in message and runtime.GPU_ROUTE in message
    # the command line says it once, in one line, and goes on (on CPU here)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")]), "EMOREEL_CACHE": str(tmp_path / "c")}
    p = subprocess.run([sys.executable, "-m", "emoreel", "analyze", "--example", "-o", str(tmp_path / "o"), "--max-frames", "2",
                        "-q", "--threads", "1"], capture_output=True, text=True, env=env)  # fmt: skip
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 0 and len(lines) == 1, p.stderr
    assert lines[0].startswith("emoreel: WARNING: onnxruntime ") and "onnxruntime-gpu 1.22.0" in lines[0]
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in lines[0]
