"""Issue 23 (hardening, round 3): batches, resume, split and extract under hostile input. Each test names its item."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.cli import main
from emoreel.media.sample import make_example_video
from emoreel.results import RESULTS_CSV, RUN_JSON, csv_unsafe, load_results

from helpers import cli_err as cli, one_line


def read_batch(root: Path) -> list[dict]:
    with open(root / "batch.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def make_incomplete(out: Path, keep_below: int) -> None:
    """What a kill leaves: rows of the frames before ``keep_below``, run.json not complete and not finished."""
    meta = json.loads((out / RUN_JSON).read_text())
    meta.update(complete=False, finished=None, last_frame=None)
    (out / RUN_JSON).write_text(json.dumps(meta))
    with open(out / RESULTS_CSV, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    with open(out / RESULTS_CSV, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([rows[0], *(r for r in rows[1:] if int(r[0]) < keep_below)])


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("v3")
    make_example_video(d / "clip.mp4", frames=12, size=(320, 180), face_px=150)
    make_example_video(d / "-1+2.mp4", frames=12, size=(320, 180), face_px=150)  # its folder name starts with '-'
    make_example_video(d / "other.mp4", frames=12, size=(320, 180), face_px=100)  # same length, another video
    return d


@pytest.fixture(scope="module")
def analyzed(vids, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("r3") / "res"
    assert main(["analyze", str(vids / "clip.mp4"), "-o", str(out), "-q", "--threads", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def batch_root(vids, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("b3") / "root"
    main(["batch", str(vids / "clip.mp4"), str(vids / "-1+2.mp4"), "-o", str(root), "-q", "--threads", "1", "--workers", "1"])
    assert [r["status"] for r in read_batch(root)] == ["complete", "complete"]
    return root


def copy_root(root: Path, dst: Path) -> Path:
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns(".batch.lock"))
    return dst


# 2. a file name that is not UTF-8 fails alone ----------------------------------------------------------------


def test_item2_batch_with_a_name_that_is_not_utf8(capsys, vids, tmp_path):
    bad = tmp_path / os.fsdecode(b"bad\xff.mp4")
    shutil.copy(vids / "clip.mp4", bad)
    root = tmp_path / "root"
    code, err = cli(capsys, "batch", str(bad), str(vids / "clip.mp4"), "-o", root, "-q", "--threads", "1", "--workers", "1")
    assert code != 0 and "Traceback" not in err
    rows = read_batch(root)
    assert [r["status"] for r in rows] == ["failed", "complete"]
    assert "UTF-8" in rows[0]["reason"]
    code, err = cli(capsys, "batch", str(bad), str(vids / "clip.mp4"), "-o", root, "-q", "--threads", "1")
    assert [r["status"] for r in read_batch(root)] == ["failed", "skipped"]


# 3. a run stopped before its first row is resumed afresh ---------------------------------------------------


def test_item3_resume_of_a_run_stopped_before_its_first_row(capsys, vids, analyzed, tmp_path):
    out = shutil.copytree(analyzed, tmp_path / "res")
    make_incomplete(out, keep_below=0)
    code, err = cli(capsys, "analyze", vids / "clip.mp4", "-o", out, "-q", "--threads", "1", "--resume")
    assert code == 0, err
    res, ref = load_results(out), load_results(analyzed)
    assert res.meta["complete"] and len(res) == len(ref)


# 4. a replaced input is noticed ----------------------------------------------------------------------------


def test_item4_batch_redoes_a_replaced_input(capsys, vids, batch_root, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    video = src / "v.mp4"
    shutil.copy(vids / "clip.mp4", video)
    root = tmp_path / "root"
    assert main(["batch", str(video), "-o", str(root), "-q", "--threads", "1"]) == 0
    rows_a = len(load_results(root / read_batch(root)[0]["folder"]))
    shutil.copy(vids / "other.mp4", video)  # same path, another video
    assert main(["batch", str(video), "-o", str(root), "-q", "--threads", "1"]) == 0
    row = read_batch(root)[0]
    assert row["status"] == "complete"
    res = load_results(root / row["folder"])
    assert res.meta["input"]["size"] == video.stat().st_size
    assert rows_a > 0 and len(res) > 0


def test_item4_resume_refuses_a_replaced_input(capsys, vids, analyzed, tmp_path):
    video = tmp_path / "v.mp4"
    shutil.copy(vids / "clip.mp4", video)
    out = tmp_path / "res"
    assert main(["analyze", str(video), "-o", str(out), "-q", "--threads", "1"]) == 0
    make_incomplete(out, keep_below=6)
    shutil.copy(vids / "other.mp4", video)
    code, err = cli(capsys, "analyze", video, "-o", out, "-q", "--threads", "1", "--resume")
    assert code == 2 and "changed" in one_line(err)
    assert not load_results(out).meta["complete"]


# 5. batch.csv's folder column stays inside the root ----------------------------------------------------------


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_item5_folders_outside_the_root_are_not_followed(capsys, batch_root, tmp_path, how):
    root = copy_root(batch_root, tmp_path / "b" / "deep" / "root")
    rows = read_batch(root)
    victim = tmp_path / "b" / "victim"
    shutil.copytree(root / rows[0]["folder"], victim)
    if how == "dotdot":
        rows[0]["folder"] = "../../victim"
    else:
        os.symlink(victim, root / "link")
        rows[0]["folder"] = "link"
    with open(root / "batch.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "o" / "a" / "x"
    code, err = cli(capsys, "extract", root, "-o", out, "--emotion", "happy", "--best", "1", "-q")
    assert code == 0, err
    assert not (tmp_path / "o" / "victim").exists()
    with open(out / "manifest.csv", newline="") as fh:
        assert {r["folder"] for r in csv.DictReader(fh)} == {rows[1]["folder"]}
    assert main(["report", str(root), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().count("<details") == 1


# 7. damaged results folders -----------------------------------------------------------------------------------


def _damage_csv(out: Path, column: str, value: str) -> None:
    with open(out / RESULTS_CSV, newline="") as fh:
        rows = list(csv.reader(fh))
    rows[1][rows[0].index(column)] = value
    with open(out / RESULTS_CSV, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


@pytest.mark.parametrize("damage", ["frame", "nan_box", "columns", "run_json_type"])
def test_item7_resume_of_a_damaged_folder_is_one_line(capsys, vids, analyzed, tmp_path, damage):
    out = shutil.copytree(analyzed, tmp_path / "res")
    make_incomplete(out, keep_below=8)
    if damage == "frame":
        _damage_csv(out, "frame", "abc")
    elif damage == "nan_box":
        _damage_csv(out, "x", "nan")
    elif damage == "columns":
        text = (out / RESULTS_CSV).read_text().splitlines()
        (out / RESULTS_CSV).write_text("".join(",".join(ln.split(",")[:5]) + "\n" for ln in text))
    else:
        meta = json.loads((out / RUN_JSON).read_text())
        meta["input"] = "clip.mp4"
        (out / RUN_JSON).write_text(json.dumps(meta))
    code, err = cli(capsys, "analyze", vids / "clip.mp4", "-o", out, "-q", "--threads", "1", "--resume")
    assert code == 2 and str(out) in one_line(err)


def test_item7_one_bad_folder_fails_alone_in_a_batch(capsys, caplog, vids, batch_root, tmp_path):
    root = copy_root(batch_root, tmp_path / "root")
    rows = read_batch(root)
    _damage_csv(root / csv_unsafe(rows[1]["folder"]), "x", "nan")
    # the report leaves out what it cannot read
    code, err = cli(capsys, "report", root, "-o", tmp_path / "r.html")
    assert code == 0 and "Traceback" not in err and "left out of the report" in caplog.text
    assert (tmp_path / "r.html").read_text().count("<details") == 1
    # a rerun redoes the folder whose run.json has entries of the wrong type
    meta_path = root / csv_unsafe(rows[0]["folder"]) / RUN_JSON
    meta = json.loads(meta_path.read_text())
    meta["params"] = [1, 2]
    meta_path.write_text(json.dumps(meta))
    code, err = cli(capsys, "batch", vids / "clip.mp4", vids / "-1+2.mp4", "-o", root, "-q", "--threads", "1")
    assert "Traceback" not in err
    assert read_batch(root)[0]["status"] == "complete"
    assert load_results(root / rows[0]["folder"]).meta["complete"]


# 8. resume after the input got shorter -------------------------------------------------------------------------


def test_item8_resume_after_the_input_got_shorter(capsys, vids, tmp_path):
    video = tmp_path / "v.mp4"
    make_example_video(video, frames=30, size=(320, 180), face_px=150)
    out = tmp_path / "res"
    assert main(["analyze", str(video), "-o", str(out), "-q", "--threads", "1"]) == 0
    make_incomplete(out, keep_below=28)
    shutil.copy(vids / "clip.mp4", video)  # 12 frames now
    code, err = cli(capsys, "analyze", video, "-o", out, "-q", "--threads", "1", "--resume")
    assert code == 2 and "--force" in one_line(err)


# 13. formula injection in batch.csv and in the manifests of extract ROOT ---------------------------------


def test_item13_batch_csv_cells_are_quoted(capsys, vids, batch_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    code, _ = cli(capsys, "batch", "=2+3.mp4", "@SUM(1).mp4", "-o", root, "-q")
    assert code != 0
    with open(root / "batch.csv", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    rows = read_batch(root)
    assert rows[0]["input"] == "'=2+3.mp4" and rows[1]["input"] == "'@SUM(1).mp4"
    # a second run naming another input keeps the earlier rows as they were (quoted once)
    cli(capsys, "batch", "+x.mp4", "-o", root, "-q")
    assert {r["input"] for r in read_batch(root)} == {"'+x.mp4", "'=2+3.mp4", "'@SUM(1).mp4"}


def test_item13_extract_root_manifests_are_quoted(capsys, batch_root, tmp_path):
    out = tmp_path / "x"
    assert main(["extract", str(batch_root), "-o", str(out), "--emotion", "happy", "--best", "1", "-q"]) == 0
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len({r[1] for r in rows[1:]}) == 2  # crops of both videos
    assert not [c for row in rows for c in row if c[:1] in ("=", "+", "-", "@")]


# 14. --chunk-minutes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
def test_item14_bad_chunk_minutes_are_refused_before_the_root_is_made(capsys, vids, tmp_path, value):
    root = tmp_path / "root"
    code, err = cli(capsys, "batch", vids / "clip.mp4", "-o", root, "-q", "--chunk-minutes", value)
    assert code == 2 and "--chunk-minutes" in one_line(err)
    assert not root.exists()


# 15. a results.csv with a byte-order mark -------------------------------------------------------------------


def test_item15_results_with_a_byte_order_mark(capsys, vids, analyzed, tmp_path):
    out = shutil.copytree(analyzed, tmp_path / "res")
    (out / RESULTS_CSV).write_bytes(b"\xef\xbb\xbf" + (out / RESULTS_CSV).read_bytes())
    assert len(load_results(out)) == len(load_results(analyzed))
    make_incomplete(out, keep_below=6)
    (out / RESULTS_CSV).write_bytes(b"\xef\xbb\xbf" + (out / RESULTS_CSV).read_bytes())
    code, err = cli(capsys, "analyze", vids / "clip.mp4", "-o", out, "-q", "--threads", "1", "--resume")
    assert code == 0, err
    assert load_results(out).meta["complete"] and len(load_results(out)) == len(load_results(analyzed))


# 16. two extracts into one -o at once ------------------------------------------------------------------------


def test_item16_a_second_extract_into_a_folder_in_use_is_refused(capsys, analyzed, tmp_path):
    from emoreel.outputs.output_dir import OutputDir

    out = tmp_path / "x"
    with OutputDir(out) as tmp:  # a first extract, still writing
        (tmp / "mine.txt").write_text("first")
        code, err = cli(capsys, "extract", analyzed, "-o", out, "--emotion", "happy", "--best", "1", "-q")
        assert code == 2 and "in use" in one_line(err)
        assert (tmp / "mine.txt").exists()
    assert (out / "mine.txt").read_text() == "first"



# 11. ** globs and symlink loops: one input per real file -----------------------------------------------------


def test_item11_globs_through_symlink_loops_find_each_file_once(vids, tmp_path):
    from emoreel.batch.runner import collect_inputs

    d = tmp_path / "shows"
    (d / "sub").mkdir(parents=True)
    shutil.copy(vids / "clip.mp4", d / "sub" / "clip.mp4")
    os.symlink(d, d / "sub" / "loop")  # a link back up: ** would walk it again and again
    os.symlink(d / "sub" / "clip.mp4", d / "alias.mp4")  # the same file under another name
    assert len(collect_inputs([f"{d}/**/*.mp4"], recursive=True)) == 1
    assert len(collect_inputs([str(d)], recursive=True)) == 1
    assert len(collect_inputs([str(d / "alias.mp4"), str(d / "sub" / "clip.mp4")])) == 1


# --workers bounds, and a failed start leaves no root behind ------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "1000"])
def test_workers_out_of_range_are_refused_before_the_root_is_made(capsys, vids, tmp_path, workers):
    root = tmp_path / "root"
    code, err = cli(capsys, "batch", vids / "clip.mp4", "-o", root, "-q", "--workers", workers)
    assert code == 2 and "--workers" in one_line(err)
    assert not root.exists()


def test_a_failed_start_leaves_no_empty_root(capsys, vids, tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "root"
    code, err = cli(capsys, "batch", vids / "clip.mp4", "-o", root, "-q", "--engine", "ray", "--address", "127.0.0.1:1")
    assert code == 2 and "Ray" in one_line(err)
    assert not root.exists()


# 10. the reels of extract ROOT joined in a folder whose name has an apostrophe ----------------------------


def test_item10_reel_in_a_path_with_an_apostrophe(capsys, batch_root, tmp_path):
    out = tmp_path / "it's here" / "x"
    reel = tmp_path / "it's here" / "reel.mp4"
    code, err = cli(capsys, "extract", batch_root, "-o", out, "--emotion", "happy", "--reel", reel, "-q")
    assert code == 0, err
    from emoreel.media.video import probe

    assert probe(reel).frame_count > 0


# 9. FIFOs are not read ---------------------------------------------------------------------------------------------

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def _emoreel(*args, timeout=120) -> subprocess.CompletedProcess:
    # the timeout only keeps a hanging run from hanging the test suite; it measures nothing
    return subprocess.run([sys.executable, "-m", "emoreel", *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def test_item9_fifo_video_is_refused_in_one_line(tmp_path):
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    p = _emoreel("analyze", fifo, "-o", tmp_path / "o", "-q")
    assert p.returncode == 2 and "not a regular file" in one_line(p.stderr)


def test_item9_fifo_in_a_photo_glob_is_skipped(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    os.mkfifo(d / "b.jpg")
    p = _emoreel("analyze", f"{d}/*.jpg", "-o", tmp_path / "o", "-q")
    assert p.returncode == 0, p.stderr
    assert [i["name"] for i in load_results(tmp_path / "o").meta["images"]] == ["a.jpg"]


# 12. workers die with their driver -------------------------------------------------------------------------------


def test_item12_workers_end_when_the_driver_is_killed(vids, tmp_path):
    import time

    from emoreel.batch.runner import folder_name
    from emoreel.errors import OutputError
    from emoreel.media.encode import ffmpeg_exe
    from emoreel.results import OutputLock

    if ffmpeg_exe() is None:
        pytest.skip("needs ffmpeg")
    short = make_example_video(tmp_path / "short.mp4", frames=100, size=(192, 108), face_px=90)
    video = tmp_path / "long.mp4"  # 100000 frames: the worker is still at work when its driver is killed
    subprocess.run([ffmpeg_exe(), "-v", "error", "-stream_loop", "999", "-i", str(short), "-c", "copy", str(video)], check=True)
    root = tmp_path / "root"
    proc = subprocess.Popen([sys.executable, "-m", "emoreel", "batch", str(video), "-o", str(root), "-q", "--threads", "1",
                             "--workers", "1"], env=ENV, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    csv_path = root / folder_name(video) / RESULTS_CSV
    deadline = time.time() + 120  # a safety net against a hang, not a measurement
    while not (csv_path.exists() and len(csv_path.read_text().splitlines()) > 3):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.kill()  # kill -9: the driver cleans nothing up
    proc.wait()
    deadline = time.time() + 60
    while True:  # the worker holds the results folder's lock until it ends
        try:
            OutputLock(csv_path.parent).close()
            break
        except OutputError:
            assert time.time() < deadline, "the worker outlived its driver"
            time.sleep(0.2)
    assert not load_results(csv_path.parent).meta["complete"]


# GIFs in a photo folder are named, not silently ignored -------------------------------------------------------


def test_gifs_in_a_photo_folder_are_named(capsys, caplog, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    (d / "wave.gif").write_bytes(b"GIF89a" + b"\x10\x00\x10\x00" + b"\x00" * 20)
    code, err = cli(capsys, "analyze", d, "-o", tmp_path / "o", "-q")
    assert code == 0, err
    assert "wave.gif" in caplog.text and "GIF" in caplog.text


# 6. image bombs are refused by their declared size, before any decoder allocates -------------------------------


def _jpeg_bomb(side: int = 30000) -> bytes:
    """A small real JPEG whose frame header declares ``side`` x ``side``, with one stray byte before its tables."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    data = bytearray(buf.tobytes())
    k = data.index(b"\xff\xc0")
    data[k + 5 : k + 9] = side.to_bytes(2, "big") + side.to_bytes(2, "big")
    return bytes(data[:2] + b"\x00" + data[2:])  # the stray byte: decoders skip it


def test_item6_a_jpeg_bomb_with_a_stray_byte_is_sized_from_its_header(tmp_path):
    from emoreel.media.images import image_size, image_size_of

    (tmp_path / "bomb.jpg").write_bytes(_jpeg_bomb())
    assert image_size(str(tmp_path / "bomb.jpg")) == (30000, 30000)
    assert image_size_of(_jpeg_bomb(20000)) == (20000, 20000)


def test_item6_a_jpeg_bomb_among_photos_is_skipped_undecoded(capsys, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    (d / "b.jpg").write_bytes(_jpeg_bomb())
    code, err = cli(capsys, "analyze", d, "-o", tmp_path / "o", "-q")
    assert code == 0, err
    meta = load_results(tmp_path / "o").meta
    assert [i["name"] for i in meta["images"]] == ["a.jpg"] and "b.jpg" in json.dumps(meta["skipped_images"])


def test_item6_data_sets_refuse_bombs_by_declared_size(caplog, tmp_path):
    import zipfile

    from emoreel.model.datasets import MAX_FILE_BYTES, load_image_folder

    good = cv2.imencode(".png", np.full((48, 48), 100, np.uint8))[1].tobytes()
    z = tmp_path / "faces.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/happy/good.png", good)
        zf.writestr("train/happy/bomb.jpg", _jpeg_bomb())
        zf.writestr("train/happy/huge.png", b"\0" * (MAX_FILE_BYTES + 1))  # inflates past the limit
    data = load_image_folder(z, "train")
    assert len(data) == 1 and "2 images too large" in caplog.text
    folder = tmp_path / "crops" / "happy"
    folder.mkdir(parents=True)
    (folder / "good.png").write_bytes(good)
    (folder / "bomb.jpg").write_bytes(_jpeg_bomb())
    assert len(load_image_folder(tmp_path / "crops", "train")) == 1


# 1. variable frame rate: split, resume and seek are exact or refused --------------------------------------------


@pytest.fixture(scope="module")
def vfr(vids, tmp_path_factory) -> Path:
    from emoreel.media.encode import ffmpeg_exe

    if ffmpeg_exe() is None:
        pytest.skip("needs ffmpeg")
    d = tmp_path_factory.mktemp("vfr")
    cfr = make_example_video(d / "cfr.mp4", frames=90, size=(320, 180), face_px=150)
    out = d / "vfr.mp4"  # frames 30-59 dropped, the others keep their times: a 1 s hole
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(cfr), "-vf", "select='lt(n,30)+gte(n,60)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", str(out)], check=True)  # fmt: skip
    return out


def _table(d: Path) -> list[list[str]]:
    with open(d / RESULTS_CSV, newline="") as fh:
        return list(csv.reader(fh))


def test_item1_seek_into_a_variable_frame_rate_video_is_refused(capsys, vfr, vids, tmp_path):
    from emoreel.media.video import variable_frame_rate

    assert variable_frame_rate(str(vfr)) and not variable_frame_rate(str(vids / "clip.mp4"))
    code, err = cli(capsys, "analyze", vfr, "-o", tmp_path / "o", "-q", "--start", "1.0")
    assert code == 2 and "variable frame rate" in one_line(err)
    assert not (tmp_path / "o").exists()


def test_item1_resume_and_split_of_a_variable_frame_rate_video(capsys, vfr, tmp_path):
    seq = tmp_path / "seq"
    assert main(["analyze", str(vfr), "-o", str(seq), "-q", "--threads", "1"]) == 0
    res = shutil.copytree(seq, tmp_path / "res")
    make_incomplete(res, keep_below=45)
    code, err = cli(capsys, "analyze", vfr, "-o", res, "-q", "--threads", "1", "--resume")
    assert code == 2 and "variable frame rate" in one_line(err)
    root = tmp_path / "root"  # a split batch is the sequential run
    code, err = cli(capsys, "batch", vfr, "-o", root, "-q", "--threads", "1", "--split", "2")
    assert code == 0, err
    row = read_batch(root)[0]
    assert row["status"] == "complete"
    assert _table(root / row["folder"]) == _table(seq)
    make_incomplete(root / row["folder"], keep_below=45)  # and so is a batch's resume
    code, err = cli(capsys, "batch", vfr, "-o", root, "-q", "--threads", "1")
    assert code == 0, err
    assert _table(root / row["folder"]) == _table(seq)


# 17. Ctrl-C of a Ray batch keeps what the nodes finished ---------------------------------------------------------


def test_item17_ray_ctrl_c_keeps_the_frames_its_nodes_finished(vids, tmp_path):
    ray = pytest.importorskip("ray")
    import _thread
    import glob
    import logging
    import tempfile
    import threading
    import time

    from emoreel.batch.runner import folder_name, run_batch
    from emoreel.config import AnalyzeOptions
    from emoreel.media.encode import ffmpeg_exe

    if ffmpeg_exe() is None:
        pytest.skip("needs ffmpeg")
    short = make_example_video(tmp_path / "short.mp4", frames=100, size=(192, 108), face_px=90)
    video = tmp_path / "long.mp4"  # 100000 frames: still at work on its node when Ctrl-C comes
    subprocess.run([ffmpeg_exe(), "-v", "error", "-stream_loop", "999", "-i", str(short), "-c", "copy", str(video)], check=True)
    root = tmp_path / "root"
    started = time.time()

    def ctrl_c_once_rows_are_written() -> None:  # the node's run folder (same machine here) has rows: Ctrl-C
        deadline = time.time() + 300  # a safety net against a hang, not a measurement
        while time.time() < deadline:
            for f in glob.glob(os.path.join(tempfile.gettempdir(), "emoreel-ray-*", "out", RESULTS_CSV)):
                try:
                    if os.path.getmtime(f) >= started and len(Path(f).read_text().splitlines()) > 3:
                        _thread.interrupt_main()
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        _thread.interrupt_main()

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        threading.Thread(target=ctrl_c_once_rows_are_written, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_batch([str(video)], root, AnalyzeOptions(threads=1), engine="ray")
    finally:
        ray.shutdown()
    assert read_batch(root)[0]["status"] == "incomplete"
    res = load_results(root / folder_name(video))
    assert not res.meta["complete"] and len(res) > 0
