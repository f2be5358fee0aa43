"""`emoreel batch`: many videos, resume, one video in parts, worker faults, Ctrl-C, a shared root, Ray."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emoreel.analysis.run import analyze_to_dir
from emoreel.analysis.stitch import agreement
from emoreel.batch.engines import LocalEngine, cpu_count
from emoreel.batch.runner import BATCH_CSV, BatchLock, folder_name, run_batch
from emoreel.cli import main
from emoreel.config import AnalyzeOptions
from emoreel.errors import OutputError
from emoreel.media.sample import make_example_video

LONG = 150  # frames of the "long" video: long enough for two parts with their overlap


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    (d / "a").mkdir()
    (d / "b").mkdir()
    make_example_video(d / "a" / "clip.mp4", frames=30)
    make_example_video(d / "b" / "clip.mp4", frames=30, face_px=200)  # same name, another video
    make_example_video(d / "long.mp4", frames=LONG)
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(os.urandom(4000))
    return d


@pytest.fixture(scope="module")
def sequential(videos, tmp_path_factory) -> Path:
    """long.mp4 analysed in one go: what resumed and split runs must reproduce."""
    out = tmp_path_factory.mktemp("seq") / "long"
    analyze_to_dir(videos / "long.mp4", out, AnalyzeOptions(threads=1))
    return out


def read_batch(root: Path) -> dict[str, dict]:
    with open(root / BATCH_CSV, newline="") as fh:
        return {Path(r["input"]).name if "clip" not in r["input"] else r["input"]: r for r in csv.DictReader(fh)}


def assert_close(seq: Path, other: Path) -> dict:
    ag = agreement(seq, other)
    assert ag["rows_a"] == ag["rows_b"] and ag["rows"] == 1.0, ag
    assert ag["same_track_ids"] == 1.0, ag  # track ids stitched to the sequential numbering
    assert ag["emotion_smooth"] >= 0.98, ag
    return ag


@pytest.fixture(scope="module")
def batch_root(videos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch") / "root"
    args = [str(videos / "a" / "clip.mp4"), str(videos / "b" / "clip.mp4"), str(videos / "missing.mp4"),
            str(videos / "empty.mp4"), str(videos / "corrupt.mp4")]
    assert main(["batch", *args, "-o", str(root), "-q", "--workers", "2"]) == 1  # some inputs failed
    return root


def test_batch_statuses_names_and_reasons(batch_root, videos):
    rows = read_batch(batch_root)
    a, b = rows[str(videos / "a" / "clip.mp4")], rows[str(videos / "b" / "clip.mp4")]
    assert a["status"] == b["status"] == "complete"
    assert a["folder"] != b["folder"] and a["folder"].startswith("clip-") and a["folder"] == folder_name(videos / "a" / "clip.mp4")
    assert int(a["frames"]) == 30 and int(a["faces"]) > 0 and float(a["duration_s"]) == pytest.approx(1.0)
    for name in ("missing.mp4", "empty.mp4", "corrupt.mp4"):
        assert rows[name]["status"] == "failed" and rows[name]["reason"], rows[name]
    assert "no such file" in rows["missing.mp4"]["reason"]
    meta = json.loads((batch_root / a["folder"] / "run.json").read_text())
    # 2 workers share the cores: each gets cores / 2 threads, at most the 2 asked for, at least 1
    assert meta["complete"] and meta["params"]["threads"] == max(1, min(AnalyzeOptions().threads, cpu_count() // 2))


def test_batch_rerun_skips_complete_and_redoes_changed_options(batch_root, videos):
    clips = [str(videos / "a" / "clip.mp4"), str(videos / "b" / "clip.mp4")]
    assert main(["batch", *clips, "-o", str(batch_root), "-q"]) == 0
    rows = read_batch(batch_root)
    assert [rows[c]["status"] for c in clips] == ["skipped", "skipped"]
    assert rows["missing.mp4"]["status"] == "failed"  # earlier runs' inputs stay listed
    assert main(["batch", clips[0], "-o", str(batch_root), "-q", "--min-prob", "0.6"]) == 0
    assert read_batch(batch_root)[clips[0]]["status"] == "complete"  # other options: analysed again


def test_shared_root_is_refused(batch_root, videos):
    lock = BatchLock(batch_root)
    try:
        with pytest.raises(OutputError, match="in use by another emoreel batch"):
            run_batch([str(videos / "a" / "clip.mp4")], batch_root)
    finally:
        lock.close()


def test_resume_continues_after_the_last_frame(videos, sequential, tmp_path, capsys):
    out = tmp_path / "resumed"
    shutil.copytree(sequential, out)
    lines = (out / "results.csv").read_text().splitlines(True)
    kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",")[0]) < 80]
    (out / "results.csv").write_text("".join(kept) + "80,2.66,1,,,")  # killed mid-row
    meta = json.loads((out / "run.json").read_text())
    meta.update(complete=False, finished=None)
    (out / "run.json").write_text(json.dumps(meta))
    bad = tmp_path / "other"
    shutil.copytree(out, bad)
    assert main(["analyze", str(videos / "long.mp4"), "-o", str(out), "--resume", "-q"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["complete"] and meta["frames_processed"] == LONG and meta["resumed"][0]["frame"] == 79
    assert_close(sequential, out)
    assert main(["analyze", str(videos / "long.mp4"), "-o", str(bad), "--resume", "-q", "--min-prob", "0.7"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_resume_of_a_complete_run_checks_input_and_options(videos, sequential, tmp_path, capsys):
    out = tmp_path / "done"
    shutil.copytree(sequential, out)
    before = (out / "run.json").read_text()
    assert main(["analyze", str(videos / "long.mp4"), "-o", str(out), "--resume", "-q"]) == 0  # same run: done
    for extra in (["--min-prob", "0.9"], ["--model", "emoreel-fer" if "int8" in before else "emoreel-fer-int8"]):
        assert main(["analyze", str(videos / "long.mp4"), "-o", str(out), "--resume", "-q", *extra]) == 2, extra
        assert "cannot resume" in capsys.readouterr().err
    assert main(["analyze", str(videos / "a" / "clip.mp4"), "-o", str(out), "--resume", "-q"]) == 2  # another video
    assert "cannot resume" in capsys.readouterr().err and (out / "run.json").read_text() == before
    meta = json.loads(before)
    del meta["fast_schedule"]  # a run.json of an emoreel before the windowed fast default
    (out / "run.json").write_text(json.dumps(meta))
    assert main(["analyze", str(videos / "long.mp4"), "-o", str(out), "--resume", "-q"]) == 2
    assert "earlier emoreel" in capsys.readouterr().err


def test_split_merges_into_one_run(videos, sequential, tmp_path):
    s = run_batch([str(videos / "long.mp4")], tmp_path / "root", AnalyzeOptions(threads=1), workers=2, split=2)
    v = s.videos[0]
    assert v.status == "complete" and v.parts == 2 and v.frames == LONG
    out = tmp_path / "root" / v.folder
    meta = json.loads((out / "run.json").read_text())
    assert meta["complete"] and len(meta["split"]["parts"]) == 2 and not (out / ".parts").exists()
    frames = [int(ln.split(",")[0]) for ln in (out / "results.csv").read_text().splitlines()[1:]]
    assert frames == sorted(frames) and set(frames) == set(range(LONG))
    assert_close(sequential, out)


def test_killed_worker_is_retried(videos, sequential, tmp_path):
    eng = LocalEngine(1)
    root = tmp_path / "root"
    killed = []

    def killer():
        csv_path = root / folder_name(videos / "long.mp4") / "results.csv"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            procs = [p for _, p, _ in list(eng.running.values())]
            if procs and csv_path.exists() and csv_path.read_text().count("\n") > 40:
                os.kill(procs[0].pid, signal.SIGKILL)
                killed.append(procs[0].pid)
            time.sleep(0.02)

    th = threading.Thread(target=killer)
    th.start()
    try:
        s = run_batch([str(videos / "long.mp4")], root, AnalyzeOptions(threads=1), engine=eng, retries=1)
    finally:
        th.join()
        eng.close()
    assert killed, "the worker finished before it could be killed"
    v = s.videos[0]
    assert v.status == "complete" and v.attempts == 2
    meta = json.loads((root / v.folder / "run.json").read_text())
    assert meta.get("resumed"), "the retry continued the killed run"
    assert_close(sequential, root / v.folder)


def test_ctrl_c_keeps_finished_videos_and_resumes(videos, tmp_path):
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "emoreel", "batch", str(videos / "a" / "clip.mp4"), str(videos / "long.mp4"),
           "-o", str(root), "-q", "--workers", "1", "--exact"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    long_csv = root / folder_name(videos / "long.mp4") / "results.csv"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if long_csv.exists() and long_csv.read_text().count("\n") > 20:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = read_batch(root)
    assert rows[str(videos / "a" / "clip.mp4")]["status"] == "complete"
    assert rows["long.mp4"]["status"] == "incomplete"
    assert main(cmd[3:]) == 0
    rows = read_batch(root)
    assert rows[str(videos / "a" / "clip.mp4")]["status"] == "skipped" and rows["long.mp4"]["status"] == "complete"
    assert json.loads(long_csv.with_name("run.json").read_text()).get("resumed")


def test_report_and_extract_over_a_batch(batch_root, tmp_path):
    assert main(["report", str(batch_root), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("<details") == 2 and "2</b> videos" in page
    assert main(["extract", str(batch_root), "-o", str(tmp_path / "x"), "--emotion", "happy", "--best", "1", "-q"]) == 0
    with open(tmp_path / "x" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len({r["folder"] for r in rows}) == 2 and all((tmp_path / "x" / r["folder"] / r["file"]).exists() for r in rows)


# -- Ray: one local instance for the module ------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_batch_with_split_and_a_bad_input(ray_local, videos, sequential, tmp_path):
    root = tmp_path / "root"
    s = run_batch([str(videos / "a" / "clip.mp4"), str(videos / "long.mp4"), str(videos / "corrupt.mp4")], root,
                  AnalyzeOptions(threads=1), engine="ray", split=2)  # fmt: skip
    st = {Path(v.input).name: v for v in s.videos}
    assert st["clip.mp4"].status == "complete" and st["corrupt.mp4"].status == "failed"
    assert st["long.mp4"].status == "complete" and st["long.mp4"].parts == 2
    assert_close(sequential, root / st["long.mp4"].folder)
    assert ray_local.is_initialized()  # the batch used the running instance and left it running


def test_unreachable_ray_address_is_one_line(videos, tmp_path, capsys):
    pytest.importorskip("ray")
    rc = main(["batch", str(videos / "a" / "clip.mp4"), "-o", str(tmp_path / "r"), "--engine", "ray", "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cannot reach the Ray cluster" in err


# -- small ones: write failures, a batch.csv of one's own, SIGTERM ---------------------------------------


def test_write_failures_are_output_errors_and_leave_no_temp_files(tmp_path, monkeypatch):
    import errno

    from emoreel.batch import runner as batch_mod
    from emoreel.analysis import resume
    from emoreel.batch.runner import Video, _merge, write_batch_csv
    from emoreel.batch.tasks import pack_dir, unpack_dir
    from emoreel.analysis.resume import write_rows

    with pytest.raises(OutputError, match="cannot write"):
        write_rows(tmp_path / "missing" / "results.csv", ["frame"], [["1"]])

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resume.os, "fsync", full)
    with pytest.raises(OutputError, match="disk full"):
        write_rows(tmp_path / "results.csv", ["frame"], [["1"]])
    assert not list(tmp_path.iterdir())  # no .results.csv.tmp left
    monkeypatch.undo()

    with pytest.raises(OutputError, match="cannot create"):
        BatchLock(tmp_path / "missing")
    with pytest.raises(OutputError, match="cannot write"):
        write_batch_csv(tmp_path / "missing", [])
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.json").write_text("{}")
    files = pack_dir(src)
    monkeypatch.setattr(batch_mod.os, "replace", full)
    with pytest.raises(OutputError, match="disk full"):
        unpack_dir(files, tmp_path / "dst")
    assert not list((tmp_path / "dst").iterdir())  # no .run.json.part left
    monkeypatch.undo()

    monkeypatch.setattr(batch_mod, "merge_parts", full)
    v = Video("x.mp4", "x-00000000", status="running")
    _merge(tmp_path, v, AnalyzeOptions())
    assert v.status == "failed" and "merging the parts" in v.reason


def test_a_batch_csv_of_ones_own_is_not_a_batch(tmp_path, capsys):
    from emoreel.batch.runner import batch_videos, is_batch_root
    from emoreel.errors import DataError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / BATCH_CSV).write_text("name,score\nann,3\n")
    assert not is_batch_root(mine)
    with pytest.raises(DataError, match="not a batch list"):
        batch_videos(mine)
    (mine / BATCH_CSV).write_bytes(b"\xff\xfe\x00garbage\n")
    assert not is_batch_root(mine)
    with pytest.raises(DataError, match="cannot read"):
        batch_videos(mine)
    assert main(["report", str(mine), "-o", str(tmp_path / "r.html")]) == 2  # one line, no traceback
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_batch_ends_with_128_plus_the_signal(tmp_path, monkeypatch, sig):
    from emoreel.batch import runner as batch_mod
    from emoreel._cli import Terminated

    def stopped(*a, **k):
        raise Terminated(sig)

    monkeypatch.setattr(batch_mod, "run_batch", stopped)
    assert main(["batch", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "root"), "-q"]) == 128 + sig


def test_runs_compare_by_the_options_that_act():
    """Resume and batch skip compare run.json params: a run recorded before --views existed used the
    mirror; the views do not matter without TTA; photo_threshold and threads never change a video's
    results; any other option missing from one side differs."""
    from emoreel.analysis.resume import differing_params

    new = AnalyzeOptions().to_dict()
    old = {k: v for k, v in new.items() if k not in ("views", "photo_threshold")}
    assert differing_params(old, new) == ["views"]
    assert differing_params(old, {**new, "views": "mirror"}) == []
    assert differing_params({**old, "tta": False}, {**new, "tta": False}) == []
    assert differing_params({**old, "tta": False}, new) == ["tta", "views"]
    assert differing_params(new, {**new, "photo_threshold": 0.5, "threads": 7}) == []
    assert differing_params({**new, "views": "jitter", "tta_margin": 0.2}, new) == []  # tta_margin: mirror only
    assert differing_params({**new, "views": "mirror", "tta_margin": 0.2}, {**new, "views": "mirror"}) == ["tta_margin"]
    assert differing_params({k: v for k, v in new.items() if k != "min_prob"}, new) == ["min_prob"]
