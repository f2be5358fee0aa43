"""`emoreel live` in the browser (issue 25, item 2): a server on 127.0.0.1 with the annotated frames as they come,
the current emotion per face and a running timeline; checked by plain HTTP requests to 127.0.0.1 and in headless
Chromium, with the real pipeline on a real (generated) video."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.analysis.analyzer import Analyzer
from emoreel.cli import main
from emoreel.config import AnalyzeOptions
from emoreel.media.sample import make_example_video
from emoreel.media.video import open_source
from emoreel.outputs.draw import EMOTION_BGR, REJECTED_BGR, UNSURE_BGR, emotion_hex
from emoreel.outputs.live import live_frames
from emoreel.outputs.live_view import LiveView, face_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_example_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames=20, size=(320, 180), face_px=150)


@pytest.fixture(scope="module")
def shown(clip) -> list:
    """(frame, observations, drawn image) of every frame, from the real pipeline as `emoreel live` runs it."""
    with open_source(str(clip)) as src:
        analyzer = Analyzer(AnalyzeOptions(threads=1))
        try:
            return list(live_frames(src, analyzer))
        finally:
            analyzer.close()


def get(view: LiveView, path: str, host: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=30)
    conn.request("GET", path, headers={"Host": host} if host else {})
    return conn.getresponse()


def test_frames_and_faces_as_they_come_over_http(shown):
    assert any(o.emotion_smooth for _, obs, _ in shown for o in obs), "the clip must show held emotions"
    with LiveView(title="clip") as view:
        assert view.server.server_address[0] == "127.0.0.1" and view.url == f"http://127.0.0.1:{view.port}/"
        r = get(view, "/frame.jpg?after=-1")  # nothing analysed yet: no frame (after a short wait), not an error
        assert r.status == 204 and r.read() == b""
        page = get(view, "/")
        assert page.status == 200 and "emoreel live: clip" in page.read().decode()
        for frame, obs, img in shown:
            view.publish(frame, obs, img, fps=30)
            r = get(view, f"/frame.jpg?after={frame.index - 1}")
            assert r.status == 200 and r.getheader("Content-Type") == "image/jpeg" and int(r.getheader("X-Frame")) == frame.index
            got = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
            assert got.shape == img.shape and np.abs(got.astype(int) - img).mean() < 6  # the annotated frame, as JPEG
            st = json.loads(get(view, "/state.json").read())
            assert st["frame"] == frame.index and st["faces"] == [face_state(o) for o in sorted(obs, key=lambda o: o.track_id)]
            assert get(view, f"/frame.jpg?after={frame.index}").status == 204  # nothing newer yet
        last, obs, _ = shown[-1]
        held = [o for o in obs if o.emotion_smooth]
        assert held and all(f"{o.emotion_smooth} {o.smooth_prob:.2f}" in [f["label"] for f in st["faces"]] for o in held)
        tracks = {o.track_id for _, obs, _ in shown for o in obs}
        assert {t["track"] for t in st["timeline"]} == tracks
        for t in st["timeline"]:  # a running timeline: segments in time order, up to the newest frame
            ends = [s[1] for s in t["segments"]]
            assert ends == sorted(ends) and max(ends) <= last.time_s + 1 / 30 + 1e-3
        for host in ("attacker.example:80", "127.0.0.1.attacker.example", "[attacker]:80"):  # DNS rebinding: refused
            assert get(view, "/state.json", host=host).status == 403
        assert get(view, "/state.json", host="localhost:9000").status == 200  # e.g. through ssh -L 9000:127.0.0.1:PORT
        view.finish()
        r = get(view, f"/frame.jpg?after={last.index}")
        assert r.status == 204 and r.getheader("X-Done") == "1" and json.loads(get(view, "/state.json").read())["done"]


def test_mjpeg_stream_sends_each_new_frame(shown):
    with LiveView() as view:
        view.publish(*shown[0], fps=30)
        sock = socket.create_connection(("127.0.0.1", view.port), timeout=30)
        sock.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{view.port}\r\n\r\n".encode())
        fh = sock.makefile("rb")
        assert b"200" in fh.readline()
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += fh.readline()
        assert b"multipart/x-mixed-replace; boundary=frame" in head

        def part() -> tuple[int, bytes]:
            assert fh.readline() == b"--frame\r\n"
            headers = {}
            while (line := fh.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            data = fh.read(int(headers["content-length"]))
            fh.readline()
            return int(headers["x-frame"]), data

        first = part()
        view.publish(*shown[1], fps=30)
        second = part()
        assert (first[0], second[0]) == (shown[0][0].index, shown[1][0].index)
        assert cv2.imdecode(np.frombuffer(second[1], np.uint8), cv2.IMREAD_COLOR).shape == shown[1][2].shape
        sock.close()


CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed at /usr/bin/chromium (`make chromium` installs Debian's)")
def test_chromium_shows_the_frame_the_faces_and_the_timeline(shown, tmp_path):
    from test_report import chromium

    palette = {emotion_hex(e) for e in EMOTION_BGR} | {"#%02x%02x%02x" % c[::-1] for c in (UNSURE_BGR, REJECTED_BGR)}
    with LiveView(title="clip") as view:
        for frame, obs, img in shown:
            view.publish(frame, obs, img, fps=30)
        view.finish()
        proc = chromium(tmp_path, "--dump-dom", view.url)
    dom = proc.stdout
    last, obs, img = shown[-1]
    assert f'data-frame="{last.index}"' in dom, proc.stderr[-2000:]  # the newest annotated frame is on the page
    assert int(re.search(r'data-shown="(\d+)"', dom).group(1)) >= 1
    assert f'data-image-width="{img.shape[1]}"' in dom  # ... decoded by the browser, at the video's size
    faces = re.findall(r'<div class="face" data-track="(\d+)" data-emotion="(\w*)"', dom)
    assert faces == [(str(o.track_id), o.emotion_smooth) for o in sorted(obs, key=lambda o: o.track_id)]
    assert any(e for _, e in faces) and "the video ended" in dom
    rows = re.findall(r'<div class="row" data-track="(\d+)">', dom)
    assert sorted(map(int, rows)) == sorted({o.track_id for _, obs_, _ in shown for o in obs_})
    fills = set(re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', dom))
    assert fills <= palette and {emotion_hex(o.emotion_smooth) for o in obs if o.emotion_smooth} <= fills


def test_cli_serves_a_video_until_ctrl_c(clip, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "EMOREEL_CACHE": str(tmp_path / "cache")}
    p = subprocess.Popen([sys.executable, "-m", "emoreel", "live", str(clip), "--no-browser"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        line = p.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:(\d+)/) ", line)
        assert url, line + p.stderr.read() if p.poll() is not None else line
        port = int(url.group(2))
        st = {}
        for _ in range(600):  # until the video has played (a bound, not a timing check)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/state.json")
            st = json.loads(conn.getresponse().read())
            if st["done"]:
                break
            time.sleep(0.1)
        assert st["done"] and st["frame"] == 19 and st["faces"]
        assert "the video ended" in p.stdout.readline()
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and err.strip().splitlines() == ["emoreel live: stopped"], err


def test_live_refuses_a_missing_file_and_two_sources(clip, tmp_path, capsys):
    assert main(["live", str(tmp_path / "nope.mp4")]) == 2
    assert capsys.readouterr().err.strip() == f"emoreel: error: no such file: {tmp_path / 'nope.mp4'}"
    assert main(["live", str(clip), "--camera", "0"]) == 2
    assert "not both" in capsys.readouterr().err
