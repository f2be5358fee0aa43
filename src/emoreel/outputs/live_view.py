"""``emoreel live`` in the browser: a small HTTP server on 127.0.0.1 that shows the annotated frames as they
come, the current emotion of each face and a running timeline. No GUI build of OpenCV is needed.

:class:`LiveView` is fed by the caller (``publish(frame, observations, drawn image)``, from
:func:`emoreel.outputs.live.live_frames`) and serves, to this machine only:

* ``/``: the page (plain HTML and script, no files from elsewhere);
* ``/frame.jpg?after=N``: the newest annotated frame as JPEG once one newer than frame ``N`` exists
  (waits up to a second, then ``204``); its frame index in the ``X-Frame`` header. The page asks for
  one after another, so it shows frames as fast as they are analysed and as the browser can take them;
* ``/stream.mjpg``: the same frames as an MJPEG stream (for players such as VLC, or an ``<img>``);
* ``/state.json``: the frame, each face's current label (track, person, held emotion and probability, or
  why it is not classified) and the timeline of the last ``window_s`` seconds per track.

Requests whose ``Host`` is not a name of this machine (127.0.0.1, localhost) are refused: a web page elsewhere
cannot read the camera through DNS rebinding.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from ..errors import OutputError
from ..types import EMOTIONS, Frame, Observation
from .draw import REJECTED_BGR, UNSURE_BGR, emotion_hex, face_colour, timecode

log = logging.getLogger(__name__)

WINDOW_S = 60.0  # the running timeline: this many seconds back from the newest frame
ROWS = 16  # ... of the tracks seen most recently
WAIT_S = 1.0  # a request for a newer frame waits at most this long
GAP_S = 1.0  # a track unseen this long starts a new timeline segment


def _hex(bgr: tuple[int, int, int]) -> str:
    return f"#{bgr[2]:02x}{bgr[1]:02x}{bgr[0]:02x}"


def face_state(o: Observation) -> dict:
    """What the page shows of one face now."""
    if not o.accepted:
        label = f"not classified ({o.reject_reason})"
    elif o.emotion_smooth:
        label = f"{o.emotion_smooth} {o.smooth_prob:.2f}"
    else:
        label = "unsure"
    return {"track": int(o.track_id), "person": o.person, "emotion": o.emotion_smooth if o.accepted else "",
            "prob": round(float(o.smooth_prob), 3) if o.accepted and o.emotion_smooth else None,
            "label": label, "colour": _hex(face_colour(o))}  # fmt: skip


class Timeline:
    """Per track, segments ``[start_s, end_s, emotion]`` of its held label ("" unsure, "-" not classified)."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self.tracks: dict[int, dict] = {}

    def add(self, time_s: float, observations: list[Observation], frame_s: float) -> None:
        for o in observations:
            label = (o.emotion_smooth or "") if o.accepted else "-"
            t = self.tracks.setdefault(int(o.track_id), {"person": o.person, "segments": []})
            t["person"] = o.person or t["person"]
            seg = t["segments"][-1] if t["segments"] else None
            if seg is not None and seg[2] == label and time_s - seg[1] <= GAP_S:
                seg[1] = time_s + frame_s
            else:
                t["segments"].append([time_s, time_s + frame_s, label])
        start = time_s - self.window_s
        for tid in list(self.tracks):
            segs = [s for s in self.tracks[tid]["segments"] if s[1] >= start]
            if segs:
                self.tracks[tid]["segments"] = segs
            else:
                del self.tracks[tid]

    def to_json(self, rows: int = ROWS) -> list[dict]:
        recent = sorted(self.tracks, key=lambda tid: self.tracks[tid]["segments"][-1][1], reverse=True)[:rows]
        return [{"track": tid, "person": self.tracks[tid]["person"],
                 "segments": [[round(a, 3), round(b, 3), e] for a, b, e in self.tracks[tid]["segments"]]}
                for tid in sorted(recent)]  # fmt: skip


class LiveView:
    """The server: ``start()``, then ``publish`` each frame; ``finish()`` when the source ended; ``close()``."""

    def __init__(self, title: str = "", port: int = 0, window_s: float = WINDOW_S, quality: int = 80):
        self.title, self.quality = title, int(quality)
        self.timeline = Timeline(window_s)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] | None = None  # (frame, bytes) of the newest frame, encoded on first request
        self._frame = -1
        self._state: dict = {"frame": -1, "time": "", "time_s": 0.0, "faces": [], "timeline": [], "done": False}
        self.done = False
        view = self

        class Handler(_Handler):
            live = view

        try:
            self.server = _Server(("127.0.0.1", int(port)), Handler)
        except OSError as e:
            raise OutputError(f"cannot serve the live view on 127.0.0.1:{port}: {e.strerror}") from None
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread: threading.Thread | None = None

    def start(self) -> "LiveView":
        self._thread = threading.Thread(target=self.server.serve_forever, name="emoreel-live-view", daemon=True)
        self._thread.start()
        return self

    def publish(self, frame: Frame, observations: list[Observation], image: np.ndarray, fps: float = 30.0) -> None:
        """The newest frame: its annotated image and its faces (what ``live_frames`` yields)."""
        self.timeline.add(frame.time_s, observations, 1.0 / fps if fps else 0.0)
        state = {"frame": int(frame.index), "time": timecode(frame.time_s), "time_s": round(frame.time_s, 3),
                 "faces": [face_state(o) for o in sorted(observations, key=lambda o: o.track_id)],
                 "timeline": self.timeline.to_json(), "window_s": self.timeline.window_s, "done": False}  # fmt: skip
        with self._cond:
            self._image, self._jpeg, self._frame = image, None, int(frame.index)
            self._state = state
            self._cond.notify_all()

    def finish(self) -> None:
        """The source ended: the page keeps the last frame and says so."""
        with self._cond:
            self.done = True
            self._state = {**self._state, "done": True}
            self._cond.notify_all()

    def close(self) -> None:
        self.finish()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LiveView":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the handler asks for ------------------------------------------------------------------
    def state(self) -> dict:
        with self._cond:
            return self._state

    def jpeg_after(self, after: int, wait_s: float = WAIT_S) -> tuple[int, bytes] | None:
        """The newest frame as JPEG once it is newer than ``after``; None after ``wait_s`` (or at once when done)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self._frame <= after and not self.done:
                left = deadline - time.monotonic()
                if left <= 0 or self.server_closed:
                    return None
                self._cond.wait(left)
            if self._frame <= after or self._image is None:
                return None
            if self._jpeg is None or self._jpeg[0] != self._frame:
                ok, buf = cv2.imencode(".jpg", self._image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                self._jpeg = (self._frame, buf.tobytes() if ok else b"")
            return self._jpeg

    @property
    def server_closed(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def page(self) -> str:
        colours = {e: emotion_hex(e) for e in EMOTIONS}
        colours.update({"": _hex(UNSURE_BGR), "-": _hex(REJECTED_BGR)})
        legend = "".join(f'<span><i style="background:{emotion_hex(e)}"></i>{e}</span>' for e in EMOTIONS)
        legend += f'<span><i style="background:{_hex(UNSURE_BGR)}"></i>unsure</span>'
        legend += f'<span><i style="background:{_hex(REJECTED_BGR)}"></i>not classified</span>'
        title = self.title.replace("&", "&amp;").replace("<", "&lt;")
        return (PAGE.replace("%TITLE%", title).replace("%LEGEND%", legend)
                .replace("%COLOURS%", json.dumps(colours)))  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a request gone wrong is a debug line, not a traceback
        log.debug("live view: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    live: LiveView
    server_version = "emoreel-live"

    def log_message(self, fmt, *args) -> None:  # requests are not worth a line on the terminal
        log.debug("live view: " + fmt, *args)

    def _send(self, code: int, body: bytes = b"", ctype: str = "", headers: dict | None = None) -> None:
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            host = urlsplit("//" + self.headers.get("Host", "")).hostname
        except ValueError:  # e.g. a bracketed name that is no address
            host = None
        if host not in ("127.0.0.1", "localhost", "::1"):
            # any port (`ssh -L 9000:127.0.0.1:PORT` arrives as localhost:9000), never another name
            self._send(403, b"only this machine's own address may ask\n", "text/plain")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/":
                self._send(200, self.live.page().encode("utf-8"), "text/html; charset=utf-8")
            elif url.path == "/state.json":
                self._send(200, json.dumps(self.live.state()).encode("utf-8"), "application/json")
            elif url.path == "/frame.jpg":
                after = int((query.get("after") or ["-1"])[0])
                got = self.live.jpeg_after(after)
                if got is None:
                    self._send(204, headers={"X-Done": "1" if self.live.done else "0"})
                else:
                    self._send(200, got[1], "image/jpeg", {"X-Frame": str(got[0])})
            elif url.path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except ValueError:
            self._send(400, b"bad request\n", "text/plain")

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        last = -1
        while not self.live.server_closed:
            got = self.live.jpeg_after(last)
            if got is None:
                if self.live.done:
                    return
                continue
            last, data = got
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame: %d\r\n\r\n" % (len(data), last))
            self.wfile.write(data + b"\r\n")
            self.wfile.flush()


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>emoreel live: %TITLE%</title><style>
*{box-sizing:border-box} body{font:14px/1.4 system-ui,sans-serif;margin:16px auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:20px;margin:0 0 8px} .small{font-size:12px;color:#555} .main{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
#view{max-width:100%;width:760px;background:#111;display:block;min-height:120px} #faces{min-width:240px;flex:1}
.face{border-left:8px solid #999;padding:4px 8px;margin:4px 0;background:#f6f6f6} .face b{font-size:15px}
.legend{margin:8px 0;font-size:13px} .legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.row{display:flex;align-items:center;margin:2px 0} .row .name{width:150px;flex:none;font-size:12px;overflow:hidden;white-space:nowrap}
.row svg{flex:1;height:18px;background:#eee;display:block} #status{font-weight:600}
</style></head><body data-frame="-1" data-shown="0"><h1>emoreel live: %TITLE%</h1>
<div class="small"><span id="status">waiting for the first frame</span> &middot; <span id="time"></span>
&middot; Ctrl-C in the terminal stops it</div><div class="legend">%LEGEND%</div>
<div class="main"><img id="view" alt="the annotated frame"><div id="faces"><h2 style="font-size:16px;margin:0">Faces now</h2><div id="list"></div></div></div>
<h2 style="font-size:16px">Timeline <span class="small" id="span"></span></h2><div id="timeline"></div>
<script>
var COLOURS = %COLOURS%, body = document.body, view = document.getElementById('view'), last = -1;
function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]; }); }
async function frames() {  // one annotated frame after another, each newer than the one shown
  for (;;) {
    try {
      var r = await fetch('frame.jpg?after=' + last, {cache: 'no-store'});
      if (r.status === 200) {
        last = +r.headers.get('X-Frame');
        var url = URL.createObjectURL(await r.blob()), old = view.src;
        await new Promise(function (ok) { view.onload = view.onerror = ok; view.src = url; });
        if (old) URL.revokeObjectURL(old);
        body.dataset.shown = +body.dataset.shown + 1; body.dataset.frame = last;
        body.dataset.imageWidth = view.naturalWidth;
      } else { await sleep(r.headers.get('X-Done') === '1' ? 1000 : 100); }
    } catch (e) { await sleep(1000); }
  }
}
function draw(st) {
  document.getElementById('status').textContent = st.done ? 'the video ended: the last frame stays' : (st.frame < 0 ? 'waiting for the first frame' : 'live');
  document.getElementById('time').textContent = st.time ? 'frame ' + st.frame + ' at ' + st.time : '';
  document.getElementById('list').innerHTML = st.faces.length ? st.faces.map(function (f) {
    return '<div class="face" data-track="' + f.track + '" data-emotion="' + esc(f.emotion) + '" style="border-color:' + f.colour + '"><b>#' + f.track +
      (f.person ? ' ' + esc(f.person) : '') + '</b> ' + esc(f.label) + '</div>';
  }).join('') : '<div class="small">no face in this frame</div>';
  var end = st.time_s, start = Math.max(0, end - st.window_s), w = Math.max(end - start, 1e-6);
  document.getElementById('span').textContent = st.timeline.length ? '(the last ' + Math.round(end - start) + ' s)' : '';
  document.getElementById('timeline').innerHTML = st.timeline.map(function (t) {
    var rects = t.segments.map(function (s) {
      var a = Math.max(s[0], start), b = Math.min(s[1], end + 1e-3);
      if (b <= a) return '';
      return '<rect x="' + ((a - start) / w * 1000).toFixed(1) + '" width="' + Math.max((b - a) / w * 1000, 1).toFixed(1) +
        '" y="0" height="18" fill="' + COLOURS[s[2]] + '" data-emotion="' + esc(s[2]) + '"><title>' + esc(s[2] || 'unsure') + '</title></rect>';
    }).join('');
    return '<div class="row" data-track="' + t.track + '"><div class="name">#' + t.track + (t.person ? ' ' + esc(t.person) : '') +
      '</div><svg viewBox="0 0 1000 18" preserveAspectRatio="none">' + rects + '</svg></div>';
  }).join('');
  body.dataset.state = st.frame; body.dataset.done = st.done ? '1' : '0';
}
async function states() {
  for (;;) {
    try { draw(await (await fetch('state.json', {cache: 'no-store'})).json()); } catch (e) {}
    await sleep(250);
  }
}
frames(); states();
</script></body></html>"""
