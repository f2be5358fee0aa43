"""A self-contained HTML report of who felt what, when (no network needed: images and script inline).

Layout: run summary, a legend, one card per person (or per track when people are
not known), one timeline row per card, and a gallery of the best crop per emotion
per card, each linked to its time.

Scaling choices for long videos (a 2-hour movie with dozens of tracks):

* timelines are aggregated into at most ``TIMELINE_BINS`` bins per row (the
  dominant smoothed emotion of each bin), so SVG size does not grow with length;
* tracks shorter than ``min_track_s`` seconds are pooled into one "other faces" row;
* at most ``max_cards`` cards get timelines and galleries; the rest are listed in a table;
* thumbnails are cut in one ascending pass over the video (``read_frames``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .draw import emotion_hex, timecode
from .errors import OutputError
from .results import Results, atomic_write_text
from .types import EMOTIONS
from .video import read_frames

TIMELINE_BINS = 600
OTHER = "other faces"


@dataclass
class Entity:
    """A row of the report: a known person, one track, or the pooled short tracks."""

    key: str
    label: str
    rows: np.ndarray  # row indices
    tracks: list[int] = field(default_factory=list)
    thumb_row: int = -1
    best: dict[str, int] = field(default_factory=dict)  # emotion -> row


def _entities(res: Results, min_track_s: float) -> list[Entity]:
    c = res.cols
    fps = res.fps or 1.0
    step = int(res.meta.get("params", {}).get("every", 1) or 1)
    groups: dict[str, list[int]] = {}
    labels: dict[str, str] = {}
    other: list[int] = []
    for tid in np.unique(c["track_id"]):
        rows = np.flatnonzero(c["track_id"] == tid)
        person = Counter(p for p in c["person"][rows] if p and p != "unknown").most_common(1)
        if person:
            key = f"person:{person[0][0]}"
            labels[key] = person[0][0]
        elif len(rows) * step / fps < min_track_s:
            other += rows.tolist()
            continue
        else:
            key = f"track:{tid}"
            labels[key] = f"track {tid}"
        groups.setdefault(key, []).extend(rows.tolist())
    ents = [Entity(k, labels[k], np.array(sorted(v)), sorted({int(c["track_id"][i]) for i in v})) for k, v in groups.items()]
    ents.sort(key=lambda e: -len(e.rows))
    if other:
        ents.append(Entity("other", OTHER, np.array(sorted(other)), sorted({int(c["track_id"][i]) for i in other})))
    return ents


def _pick_rows(res: Results, e: Entity) -> None:
    """The thumbnail (sharpest confident accepted face) and the best row per smoothed emotion."""
    c = res.cols
    acc = e.rows[c["accepted"][e.rows] == 1]
    if not len(acc):
        e.thumb_row = int(e.rows[np.argmax(np.nan_to_num(c["w"][e.rows]))])
        return
    sharp = np.nan_to_num(c["sharpness"][acc])
    e.thumb_row = int(acc[np.argmax(np.log1p(sharp) + np.nan_to_num(c["w"][acc]) / 100)])
    for emo in EMOTIONS:
        rows = acc[c["emotion_smooth"][acc] == emo]
        if len(rows):
            score = np.nan_to_num(c["smooth_prob"][rows]) * np.minimum(1.0, np.nan_to_num(c["sharpness"][rows]) / (np.median(sharp) or 1))
            e.best[emo] = int(rows[np.argmax(score)])


def _thumbs(res: Results, video: Path | None, rows: set[int], size: int = 96) -> dict[int, str]:
    """Base64 JPEG face crops for ``rows``, cut in one pass over the video."""
    if video is None or not rows:
        return {}
    c = res.cols
    by_frame: dict[int, list[int]] = {}
    for r in rows:
        by_frame.setdefault(int(c["frame"][r]), []).append(r)
    out = {}
    for fr in read_frames(video, sorted(by_frame)):
        for r in by_frame[fr.index]:
            x, y, w, h = (float(c[k][r]) for k in "xywh")
            side = max(w, h) * 1.3
            x1, y1 = int(max(x + w / 2 - side / 2, 0)), int(max(y + h / 2 - side / 2, 0))
            crop = fr.image[y1 : int(y1 + side), x1 : int(x1 + side)]
            if crop.size:
                ok, buf = cv2.imencode(".jpg", cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 82])
                if ok:
                    out[r] = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()
    return out


def _timeline_svg(res: Results, e: Entity, duration: float, bins: int, width: int = 1000, height: int = 22) -> str:
    c = res.cols
    if duration <= 0:
        return ""
    t = c["time_s"][e.rows]
    lab = c["emotion_smooth"][e.rows]
    b = np.minimum((t / duration * bins).astype(int), bins - 1)
    rects = []
    bw = width / bins
    for k in np.unique(b):
        labels = [x for x in lab[b == k] if x]
        if not labels:
            rects.append(f'<rect x="{k * bw:.1f}" y="{height - 4}" width="{bw + 0.3:.1f}" height="4" fill="#ccc"/>')
            continue
        top = Counter(labels).most_common(1)[0][0]
        rects.append(f'<rect x="{k * bw:.1f}" y="0" width="{bw + 1:.1f}" height="{height}" fill="{emotion_hex(top)}">'
                     f"<title>{timecode(k / bins * duration)} {top}</title></rect>")  # fmt: skip
    return (f'<svg class="tl" shape-rendering="crispEdges" viewBox="0 0 {width} {height}" preserveAspectRatio="none" data-duration="{duration:.3f}">'
            f'<rect width="{width}" height="{height}" fill="#f3f3f3"/>{"".join(rects)}'
            f'<line class="marker" x1="-10" x2="-10" y1="0" y2="{height}" stroke="#000" stroke-width="3"/></svg>')  # fmt: skip


def _share_bar(counts: Counter) -> str:
    total = sum(counts.values())
    if not total:
        return '<div class="bar empty">no frontal frames</div>'
    parts = "".join(
        f'<span style="width:{100 * counts[e] / total:.2f}%;background:{emotion_hex(e)}" title="{e} {100 * counts[e] / total:.0f}%"></span>'
        for e in EMOTIONS if counts[e]
    )  # fmt: skip
    top = ", ".join(f"{e} {100 * n / total:.0f}%" for e, n in counts.most_common(3))
    return f'<div class="bar">{parts}</div><div class="small">{html.escape(top)}</div>'


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table.summary td{padding:2px 12px 2px 0;vertical-align:top} .small{font-size:12px;color:#555}
.legend span{display:inline-block;margin-right:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #ddd;border-radius:8px;padding:10px;width:260px}
.card img{float:left;margin-right:10px;border-radius:6px} .card h3{margin:0;font-size:15px}
.bar.empty{display:block;height:auto;background:none;font-size:12px;color:#777}
.bar{display:flex;height:12px;border-radius:3px;overflow:hidden;background:#eee;clear:both;margin-top:8px} .bar span{display:block;height:100%}
.tlrow{display:flex;align-items:center;margin:3px 0} .tlrow .name{width:170px;font-size:12px;overflow:hidden;white-space:nowrap}
svg.tl{flex:1;height:22px} .axis{display:flex;justify-content:space-between;margin-left:170px;font-size:11px;color:#666}
.gallery{display:flex;flex-wrap:wrap;gap:8px} .shot{text-align:center;font-size:11px;width:100px}
.shot img{border-radius:4px;border:3px solid #fff} .shot a{color:#225;cursor:pointer;text-decoration:none}
table.more td,table.more th{padding:2px 10px;text-align:left;font-size:12px}
"""

SCRIPT = """
function seek(key, t){
  document.querySelectorAll('svg.tl').forEach(function(s){ s.querySelector('.marker').setAttribute('x1',-10); s.querySelector('.marker').setAttribute('x2',-10); });
  var s = document.querySelector('[data-key="'+key+'"] svg.tl');
  if (s) { var x = 1000 * t / parseFloat(s.dataset.duration); var m = s.querySelector('.marker'); m.setAttribute('x1', x); m.setAttribute('x2', x);
           s.scrollIntoView({block:'center'}); }
  document.body.dataset.lastSeek = key + '@' + t;
}
window.addEventListener('load', function(){
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesLoaded = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.ready = '1';
});
"""


def render(res: Results, video: Path | None, max_cards: int = 40, min_track_s: float = 1.0, bins: int = TIMELINE_BINS) -> str:
    """The report page as one HTML string."""
    c, meta = res.cols, res.meta
    inp = meta.get("input", {})
    fps = res.fps or 1.0
    duration = float(inp.get("duration_s") or (inp.get("frame_count", 0) / fps) or (c["time_s"].max() + 1 / fps if len(res) else 0))
    step = int(meta.get("params", {}).get("every", 1) or 1)
    ents = _entities(res, min_track_s) if len(res) else []
    bins = max(1, min(bins, math.ceil(duration * fps / step)))  # never more bins than processed frames
    shown, more = ents[:max_cards], ents[max_cards:]
    for e in shown:
        _pick_rows(res, e)
    wanted = {e.thumb_row for e in shown if e.thumb_row >= 0} | {r for e in shown for r in e.best.values()}
    thumbs = _thumbs(res, video, wanted)
    esc = html.escape
    model = meta.get("model", {})
    summary = [
        ("input", esc(str(inp.get("path", "")))),
        ("video", f"{inp.get('width')}x{inp.get('height')}, {fps:.3f} fps, {timecode(duration)} ({inp.get('frame_count')} frames)"),
        ("processed", f"{meta.get('frames_processed', '?')} frames (every {step}), {len(res)} face observations, "
                      f"{int((c['accepted'] == 1).sum()) if len(res) else 0} frontal, {len(res.track_ids())} tracks"),
        ("people", esc(", ".join(p for p in res.persons() if p != "unknown") or "not identified")),
        ("detector / model", esc(f"{meta.get('detector', {}).get('name', '?')} / {model.get('name', '?')} (sha256 {str(model.get('sha256', ''))[:12]})")),
        ("parameters", esc(", ".join(f"{k}={v}" for k, v in meta.get("params", {}).items() if v not in (None, False)))),
        ("run", f"{esc(str(meta.get('started', '')))} &rarr; {esc(str(meta.get('finished', '')))}, "
                + ("complete" if meta.get("complete") else "<b>incomplete (interrupted)</b>")),
    ]  # fmt: skip
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>emoreel report</title><style>{CSS}</style>",
             f"<script>{SCRIPT}</script></head><body>",
             f"<h1>emoreel report</h1><div class='small'>{esc(Path(str(inp.get('path', ''))).name)}</div>",
             "<table class='summary'>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in summary) + "</table>",
             "<div class='legend'>" + "".join(f"<span><i style='background:{emotion_hex(e)}'></i>{e}</span>" for e in EMOTIONS) + "</div>"]  # fmt: skip
    if not ents:
        parts.append("<p>No faces were found.</p></body></html>")
        return "".join(parts)
    parts.append(f"<h2>People and tracks ({len(ents)})</h2><div class='cards'>")
    for e in shown:
        acc = e.rows[c["accepted"][e.rows] == 1]
        counts = Counter(x for x in c["emotion_smooth"][acc] if x)
        screen = len(e.rows) * step / fps
        img = f"<img src='{thumbs[e.thumb_row]}' width='72' height='72' alt=''>" if e.thumb_row in thumbs else ""
        tracks = f"tracks {', '.join(map(str, e.tracks[:8]))}{'…' if len(e.tracks) > 8 else ''}"
        parts.append(f"<div class='card' data-key='{esc(e.key)}'>{img}<h3>{esc(e.label)}</h3>"
                     f"<div class='small'>{timecode(screen)} on screen, {len(e.rows)} frames<br>{tracks}</div>"
                     f"{_share_bar(counts)}</div>")  # fmt: skip
    parts.append("</div>")
    parts.append("<h2>Timeline</h2>")
    for e in shown:
        parts.append(f"<div class='tlrow' data-key='{esc(e.key)}'><div class='name'>{esc(e.label)}</div>{_timeline_svg(res, e, duration, bins)}</div>")
    ticks = "".join(f"<span>{timecode(duration * k / 5)}</span>" for k in range(6))
    parts.append(f"<div class='axis'>{ticks}</div>")
    parts.append("<h2>Best moment per emotion</h2><div class='gallery'>")
    vid_href = Path(str(inp.get("path", ""))).as_uri() if inp.get("path", "").startswith("/") else ""
    for e in shown:
        for emo, r in e.best.items():
            if r not in thumbs:
                continue
            t = float(c["time_s"][r])
            link = f" <a href='{vid_href}#t={t:.2f}' title='open the video here'>&#9654;</a>" if vid_href else ""
            parts.append(f"<div class='shot'><img src='{thumbs[r]}' width='90' height='90' alt='{esc(emo)}' "
                         f"style='border-color:{emotion_hex(emo)}'><br>{esc(e.label)}<br>{emo} {float(c['smooth_prob'][r]):.2f}<br>"
                         f"<a onclick=\"seek('{esc(e.key)}',{t:.3f})\">{timecode(t)}</a>{link}</div>")  # fmt: skip
    parts.append("</div>")
    if more:
        parts.append(f"<h2>{len(more)} more</h2><table class='more'><tr><th>who</th><th>screen time</th><th>top emotion</th></tr>")
        for e in more:
            counts = Counter(x for x in c["emotion_smooth"][e.rows] if x)
            top = counts.most_common(1)[0][0] if counts else "-"
            parts.append(f"<tr class='morerow'><td>{esc(e.label)}</td><td>{timecode(len(e.rows) * step / fps)}</td><td>{top}</td></tr>")
        parts.append("</table>")
    parts.append(f"<p class='small'>emoreel {esc(str(meta.get('emoreel_version', '')))} &middot; results schema {esc(str(meta.get('schema')))}</p>")
    parts.append(f"<script type='application/json' id='emoreel-data'>{json.dumps({'cards': len(shown), 'more': len(more)})}</script>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(res: Results, out_path: str | Path, video: Path | None, force: bool = False, **kw) -> Path:
    """Render and write the report atomically."""
    out = Path(out_path)
    if out.exists() and not force:
        raise OutputError(f"{out} exists; use --force to replace it")
    if out.parent and not out.parent.exists():
        raise OutputError(f"folder {out.parent} does not exist")
    try:
        atomic_write_text(out, render(res, video, **kw))
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror}") from None
    return out

