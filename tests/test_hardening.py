"""Issue 14: every bad input, fault and concurrent run ends in one line, loses no finished frame,
and never leaves a results folder that claims to be complete when it is not."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.cli import main
from emoreel.config import AnalyzeOptions
from emoreel.errors import DataError, InputError
from emoreel.media.encode import ffmpeg_exe
from emoreel.media.sample import make_example_video
from emoreel.media.video import open_source, read_frames
from emoreel.results import (RESULTS_CSV, RUN_JSON, OutputLock, csv_safe, csv_unsafe, load_results)  # fmt: skip

from helpers import cli_err as cli, one_line

FF = ffmpeg_exe()
needs_ffmpeg = pytest.mark.skipif(FF is None, reason="needs ffmpeg (imageio-ffmpeg)")
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def ff(*args: str) -> None:
    subprocess.run([FF, "-v", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_example_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames=12, size=(320, 180), face_px=150)


@pytest.fixture(scope="module")
def analyzed(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("r") / "res"
    assert main(["analyze", str(clip), "-o", str(out), "-q", "--threads", "1"]) == 0
    return out


def copy_results(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# 1. estimated frame counts (Matroska/WebM) and damage mid-file ------------------------------------------


@needs_ffmpeg
def test_mkv_with_longer_sound_is_a_complete_run(capsys, clip, tmp_path):
    mkv = tmp_path / "obs.mkv"  # sound longer than the picture: OpenCV's count is an estimate from the duration
    ff("-i", str(clip), "-f", "lavfi", "-i", "sine=d=1.5", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "libopus", str(mkv))
    with open_source(mkv) as src:
        assert src.info.frame_count > 14 and len(list(src)) == 12 and not src.truncated
    code, err = cli(capsys, "analyze", mkv, "-o", tmp_path / "o", "-q", "--threads", "1")
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / RUN_JSON).read_text())
    assert meta["complete"] and meta["frames_processed"] == 12 and meta["frames_in_stream"] == 12


@needs_ffmpeg
def test_an_intact_file_that_over_declares_its_frames_is_complete(capsys, tmp_path):
    """An MP4 cut at a non-keyframe with stream copy (an edit list, as phones and editors write) declares
    frames it never plays: it decodes cleanly to its end, so the run is complete, not "truncated", and
    run.json records both counts; a file whose bytes are cut is still truncated (exit 2)."""
    good = tmp_path / "g.mp4"
    ff("-f", "lavfi", "-i", "testsrc=size=128x72:rate=30", "-t", "6", "-g", "60", "-c:v", "libx264", good)
    trimmed = tmp_path / "trimmed.mp4"
    ff("-ss", "1.2", "-i", str(good), "-c", "copy", str(trimmed))
    with open_source(trimmed) as src:
        declared, decoded = src.info.frame_count, len(list(src))
    assert declared - decoded > 5, "the edit list did not over-declare: the test would prove nothing"
    code, err = cli(capsys, "analyze", trimmed, "-o", tmp_path / "o", "-q", "--threads", "1")
    assert code == 0 and "truncated" not in err, err
    meta = json.loads((tmp_path / "o" / RUN_JSON).read_text())
    assert meta["complete"] and meta["frames_declared"] == declared and meta["frames_decoded"] == decoded
    cut = tmp_path / "cut.mp4"
    ff("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(cut))
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.7)])
    code, err = cli(capsys, "analyze", cut, "-o", tmp_path / "c", "-q", "--threads", "1")
    assert code == 2 and "truncated" in err
    assert not json.loads((tmp_path / "c" / RUN_JSON).read_text())["complete"]


@needs_ffmpeg
def test_damage_mid_file_is_skipped_and_recorded(tmp_path):
    good = tmp_path / "g.mp4"
    ff("-f", "lavfi", "-i", "testsrc=size=128x72:rate=30", "-t", "10", "-g", "15", "-c:v", "libx264", good)
    data = bytearray(good.read_bytes())
    a = len(data) // 2
    data[a : a + 8000] = bytes(8000)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(data)
    with open_source(bad) as src:
        frames = list(src)
    assert not src.truncated and src.gaps, "the damage is a recorded gap, not the end of the run"
    assert frames[-1].index == 299 and abs(frames[-1].time_s - 299 / 30) < 0.01
    first, last = src.gaps[0]
    assert all(not first <= f.index <= last for f in frames)
    after = [i for i in (0, last + 1, 299)]
    assert [f.index for f in read_frames(bad, after)] == after  # extract reads the same frames


# 2. huge images ---------------------------------------------------------------------------------------


def png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG that declares w x h (its data is one empty IDAT): what matters is that it is never decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))  # fmt: skip


def test_huge_image_is_skipped_by_name_and_recorded(capsys, caplog, clip, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cap = cv2.VideoCapture(str(clip))
    ok, img = cap.read()
    cap.release()
    cv2.imwrite(str(folder / "a.jpg"), img)
    png_header_only(folder / "b_huge.png", 20000, 20000)
    cv2.imwrite(str(folder / "c.jpg"), img)
    code, err = cli(capsys, "analyze", folder, "-o", tmp_path / "o", "-q", "--threads", "1")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert code == 0 and len(warned) == 1 and "b_huge.png" in warned[0] and "20000x20000" in warned[0]
    meta = json.loads((tmp_path / "o" / RUN_JSON).read_text())
    assert meta["skipped_images"] == ["b_huge.png"] and [i["name"] for i in meta["images"]] == ["a.jpg", "c.jpg"]


def tiff_header_only(path: Path, w: int, h: int, endian: str = "<") -> None:
    """A TIFF whose first IFD declares w x h (a SHORT tag and a LONG one), with no image data to decode."""
    entries = [(254, 4, 1, 0), (256, 3, 1, w if w < 65536 else 0), (257, 4, 1, h)]
    if w >= 65536:
        entries[1] = (256, 4, 1, w)
    body = struct.pack(endian + "H", len(entries))
    for tag, typ, count, value in entries:
        v = struct.pack(endian + ("H2x" if typ == 3 else "I"), value)
        body += struct.pack(endian + "HHI", tag, typ, count) + v
    magic = b"II*\x00" if endian == "<" else b"MM\x00*"
    path.write_bytes(magic + struct.pack(endian + "I", 8) + body + struct.pack(endian + "I", 0))


def test_huge_tiff_is_refused_from_its_header(tmp_path):
    from emoreel.media.images import ImageTooLarge, image_size, imread

    for endian in "<>":
        p = tmp_path / f"huge{endian == '>'}.tif"
        tiff_header_only(p, 20000, 20000, endian)
        assert image_size(str(p)) == (20000, 20000)
        with pytest.raises(ImageTooLarge, match="20000x20000"):
            imread(str(p))
    small = tmp_path / "small.tiff"
    assert cv2.imwrite(str(small), np.zeros((37, 53, 3), np.uint8))
    assert image_size(str(small)) == (53, 37)  # a real TIFF, as OpenCV writes it


def test_detection_size_is_capped():
    from emoreel.faces.detect import MAX_WORKING_SIDE, create_detector

    det = create_detector("haar", max_side=0, min_face=40)
    assert 20000 * det.working_scale(20000, 20000) <= MAX_WORKING_SIDE


# 3. paths and cameras that crashed OpenCV ------------------------------------------------------------------


def test_path_that_is_not_utf8_is_refused(clip, tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/caf\xe9.mp4"
    shutil.copy(clip, bad)
    run = subprocess.run([sys.executable, "-m", "emoreel", "analyze", bad, "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip
    assert run.returncode == 2 and "UTF-8" in one_line(run.stderr)


@pytest.mark.parametrize("n", ["-1", "99999999999"])
def test_camera_out_of_range(capsys, tmp_path, n):
    code, err = cli(capsys, "analyze", "--camera", n, "-o", tmp_path / "o")
    assert code == 2 and "--camera" in one_line(err) and not (tmp_path / "o").exists()


# 4. two runs into one folder ---------------------------------------------------------------------------------


def test_second_run_into_a_folder_in_use_is_refused(capsys, clip, analyzed, tmp_path):
    out = copy_results(analyzed, tmp_path / "busy")
    before = (out / RESULTS_CSV).read_bytes()
    with OutputLock(out):  # another run writing here
        code, err = cli(capsys, "analyze", clip, "-o", out, "--force", "-q", "--threads", "1")
    assert code == 2 and "in use" in one_line(err)
    assert (out / RESULTS_CSV).read_bytes() == before
    with OutputLock(out):  # released: can be taken again
        pass


# 5. write failures ---------------------------------------------------------------------------------------


def _fsize_limit(n: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    return pre


def test_disk_full_during_analyze_keeps_whole_frames(tmp_path):
    out = tmp_path / "o"  # run.json (~2 kB) fits under the limit, results.csv of 40 frames does not
    clip = make_example_video(tmp_path / "c.mp4", frames=40, size=(320, 180), face_px=150)
    run = subprocess.run([sys.executable, "-m", "emoreel", "analyze", str(clip), "-o", str(out), "-q", "--threads", "1"],
                         capture_output=True, text=True, env=ENV, timeout=120, preexec_fn=_fsize_limit(5000))  # fmt: skip
    assert run.returncode == 2 and "file too large" in one_line(run.stderr)
    text = (out / RESULTS_CSV).read_text()
    assert text.endswith("\n") and len(text) <= 5000
    res = load_results(out)
    assert not res.meta["complete"] and len(res) == len(text.splitlines()) - 1 > 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_at_the_start_leaves_old_results_untouched(analyzed, clip, tmp_path):
    out = copy_results(analyzed, tmp_path / "o")
    before = {n: (out / n).read_bytes() for n in (RESULTS_CSV, RUN_JSON)}
    run = subprocess.run([sys.executable, "-m", "emoreel", "analyze", str(clip), "-o", str(out), "--force", "-q"],
                         capture_output=True, text=True, env=ENV, timeout=120, preexec_fn=_fsize_limit(100))  # fmt: skip
    assert run.returncode == 2 and "cannot write" in one_line(run.stderr)
    assert {n: (out / n).read_bytes() for n in before} == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_results_with_force(capsys, analyzed, clip, tmp_path):
    out = copy_results(analyzed, tmp_path / "o")
    (out / RESULTS_CSV).chmod(0o444)
    code, err = cli(capsys, "analyze", clip, "-o", out, "--force", "-q")
    assert code == 2 and "read-only" in one_line(err)


def test_report_temp_file_is_removed_when_the_write_fails(analyzed, tmp_path):
    run = subprocess.run([sys.executable, "-m", "emoreel", "report", str(analyzed), "-o", str(tmp_path / "rep.html")],
                         capture_output=True, text=True, env=ENV, timeout=120, preexec_fn=_fsize_limit(2000))  # fmt: skip
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# 6. numeric options --------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", [("--threads", "10000"), ("--threads", "0"), ("--threads", "-2"), ("--margin", "-1"),
                                 ("--margin", "nan"), ("--max-yaw", "-1"), ("--max-yaw", "91"), ("--det-threshold", "inf"),
                                 ("--every", "0"), ("--min-prob", "1.5")])  # fmt: skip
def test_bad_numbers_are_refused_before_the_folder_is_made(capsys, clip, tmp_path, opt):
    code, err = cli(capsys, "analyze", clip, "-o", tmp_path / "o", *opt)
    assert code == 2 and opt[0] in one_line(err) and not (tmp_path / "o").exists()


def test_validate_in_the_library():
    AnalyzeOptions().validate()
    with pytest.raises(InputError, match="--margin"):
        AnalyzeOptions(margin=float("nan")).validate()


# 7. variable frame rate -----------------------------------------------------------------------------------------


@needs_ffmpeg
def test_variable_frame_rate_times_are_presentation_times(tmp_path):
    vfr = tmp_path / "vfr.mp4"  # frames 0-14 kept, 15-44 dropped, 45-89 kept: a 1 s hole at 30 fps
    ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=30", "-t", "3", "-vf", "select='lt(n,15)+gte(n,45)'",
       "-fps_mode", "vfr", "-c:v", "libx264", str(vfr))  # fmt: skip
    with open_source(vfr) as src:
        frames = list(src)
    assert len(frames) == 60
    assert abs(frames[14].time_s - 14 / 30) < 0.01 and abs(frames[15].time_s - 45 / 30) < 0.01
    assert abs(frames[-1].time_s - 89 / 30) < 0.01
    got = list(read_frames(vfr, [15]))
    assert abs(got[0].time_s - 45 / 30) < 0.01


# 8. annotate on a source that cannot be fully decoded -----------------------------------------------------------


def test_annotate_says_when_the_source_ends_early(capsys, analyzed, clip, tmp_path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 9 // 10])
    code, err = cli(capsys, "annotate", analyzed, "-o", tmp_path / "a.mp4", "--video", cut, "-q")
    if code == 2 and "does not match" in err:
        pytest.skip("this cut changed the declared frame count")
    assert code == 2 and "could not be decoded" in one_line(err)
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert 0 < cap.get(cv2.CAP_PROP_FRAME_COUNT) < 12


# 9-10. hostile or damaged results ------------------------------------------------------------------------------


def _edit_meta(out: Path, **kw) -> None:
    meta = json.loads((out / RUN_JSON).read_text())
    for k, v in kw.items():
        if "." in k:
            a, b = k.split(".")
            meta[a][b] = v
        else:
            meta[k] = v
    (out / RUN_JSON).write_text(json.dumps(meta))


@pytest.mark.parametrize("edit,where", [({"input.width": "<script>alert(1)</script>"}, "input.width"),
                                        ({"frames_processed": "<b>x</b>"}, "frames_processed"),
                                        ({"input.fps": "thirty"}, "input.fps"), ({"params": [1, 2]}, "params")])  # fmt: skip
def test_wrong_types_in_run_json_are_one_line(capsys, analyzed, tmp_path, edit, where):
    out = copy_results(analyzed, tmp_path / "o")
    _edit_meta(out, **edit)
    with pytest.raises(DataError, match=where):
        load_results(out)
    for cmd in (["report", out, "-o", tmp_path / "r.html"], ["annotate", out, "-o", tmp_path / "a.mp4"]):
        code, err = cli(capsys, *cmd)
        assert code == 2 and where in one_line(err)


def test_report_escapes_what_it_shows(analyzed, tmp_path):
    from emoreel.outputs.report import write_report

    res = load_results(analyzed)
    res.meta["input"]["width"] = "<script>alert(1)</script>"
    res.meta["frames_processed"] = "<img src=x onerror=alert(2)>"
    page = write_report(res, tmp_path / "r.html").read_text()
    assert "<script>alert(1)" not in page and "<img src=x" not in page


@pytest.mark.parametrize("column,value", [("frame", "-5"), ("x", "nan"), ("w", "1e12"), ("time_s", "inf"), ("happy", "7")])
def test_out_of_range_values_in_results_csv(capsys, analyzed, tmp_path, column, value):
    out = copy_results(analyzed, tmp_path / "o")
    lines = (out / RESULTS_CSV).read_text().splitlines()
    header = lines[0].split(",")
    row = lines[3].split(",")
    row[header.index(column)] = value
    lines[3] = ",".join(row)
    (out / RESULTS_CSV).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"line 4, column '{column}'"):
        load_results(out)
    code, err = cli(capsys, "extract", out, "-o", tmp_path / "x", "--emotion", "happy")
    assert code == 2 and f"column '{column}'" in one_line(err)


# 11. signals -----------------------------------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_like_ctrl_c(tmp_path, sig):
    short = make_example_video(tmp_path / "short.mp4", frames=400, size=(192, 108), face_px=90)
    video = tmp_path / "long.mp4"  # 100 times as long (copied, not encoded): it cannot end before the signal comes
    ff("-stream_loop", "99", "-i", str(short), "-c", "copy", str(video))
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "emoreel", "analyze", str(video), "-o", str(out), "-q", "--record",
                             "--threads", "1"], stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    deadline = time.time() + 120  # only so that a broken run fails the test instead of hanging it
    csv = out / RESULTS_CSV
    while not (csv.exists() and len(csv.read_text().splitlines()) > 10):  # rows written: the run is under way
        assert proc.poll() is None and time.time() < deadline, "the run ended before writing its rows"
        time.sleep(0.1)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + sig and "interrupted" in one_line(err)
    res = load_results(out)
    assert not res.meta["complete"] and len(res) > 0
    assert (out / "recording.mp4").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".emoreel.lock"]


def test_readers_trust_the_rows_over_a_stale_count(analyzed, tmp_path):
    from emoreel.outputs.report import _frames_processed

    out = copy_results(analyzed, tmp_path / "o")
    _edit_meta(out, frames_processed=0, complete=False)
    assert _frames_processed(load_results(out)) == 12


# 12. extract --force ---------------------------------------------------------------------------------------------


def test_extract_force_never_deletes_other_files(capsys, analyzed, tmp_path):
    emotions = [e for e in load_results(analyzed).cols["emotion"] if e]
    happy = max(set(emotions), key=emotions.count)
    dest = tmp_path / "x"
    dest.mkdir()
    (dest / "thesis.docx").write_text("mine")
    code, err = cli(capsys, "extract", analyzed, "-o", dest, "--emotion", happy, "--raw", "--force", "--min-prob", "0")
    assert code == 2 and "thesis.docx" in one_line(err) and (dest / "thesis.docx").read_text() == "mine"
    (dest / "thesis.docx").unlink()
    dest.rmdir()
    args = ["extract", analyzed, "-o", dest, "--emotion", happy, "--raw", "--min-prob", "0"]
    assert cli(capsys, *args)[0] == 0
    assert cli(capsys, *args, "--force")[0] == 0  # its own files are replaced


# 14. small ones ----------------------------------------------------------------------------------------------------


def test_formula_names_are_quoted_in_csv():
    for name in ("=HYPERLINK(1)", "+1", "-2", "@x", "Ann", "'=x", "''+1", "'-", "'", "''", "'Ann", "O'Neil", "",
                 "\t=x", "'\r", "'@'=", "=", "'a=b"):
        assert csv_unsafe(csv_safe(name)) == name, name
        assert not csv_safe(name).startswith(("=", "+", "-", "@"))


def test_start_beyond_the_end(capsys, clip, tmp_path):
    code, err = cli(capsys, "analyze", clip, "-o", tmp_path / "o", "--start", "100")
    assert code == 2 and "beyond the end" in one_line(err) and not (tmp_path / "o" / RUN_JSON).exists()


def test_existing_results_are_refused_before_models_load(capsys, analyzed, clip, monkeypatch):
    import emoreel.analysis.run

    monkeypatch.setattr(emoreel.analysis.run, "Analyzer", None)  # would fail if reached
    code, err = cli(capsys, "analyze", clip, "-o", analyzed)
    assert code == 2 and "already holds results" in one_line(err)


def test_incomplete_results_warn(capsys, caplog, analyzed, tmp_path):
    out = copy_results(analyzed, tmp_path / "o")
    _edit_meta(out, complete=False)
    code, err = cli(capsys, "annotate", out, "-o", tmp_path / "a.avi", "-q")
    assert code == 0 and "incomplete" in caplog.text
