"""A self-contained HTML report of who felt what, when: one file, images and script inline, no network.

The page holds the run summary, a colour legend, one card per known person (or
per track when people are not known), one timeline row per card across the
whole video, and a gallery of the best crop per emotion per card; each gallery
timecode moves a marker on that card's timeline, and opens the video at that
time when the video file is known.

Choices that keep the page fast and readable for a 2-hour movie with dozens of tracks:

* **Binned timelines.** Each row has at most ``bins`` (default :data:`TIMELINE_BINS`, 600)
  bins over the whole video, never more than processed frames. A bin shows the
  most frequent smoothed label among its faces (thin grey when the face was there
  but had no label: not frontal, or not settled yet), and a line shows the mean
  smoothed probability of that label. Consecutive equal bins are drawn as one
  rectangle, so a row costs a few kB whatever the length of the video.
* **Pooling.** Tracks with no known person that are shorter than ``min_track_s``
  (default 1 s) or never carry an emotion label (rejected or unsure throughout) are pooled into
  one "other faces" row, shown last.
* **Capping.** Only the ``max_cards`` (default 40) people/tracks with the most
  labelled frames get cards, timelines and gallery shots; the rest are listed
  in a table (screen time, frames, top emotion).
* **One pass over the video.** Thumbnails are cut from frames read in one
  ascending pass with :func:`emoreel.media.video.read_frames`; gaps are crossed with a seek.
* Binning, grouping and shares are vectorised NumPy over the columns of
  :class:`~emoreel.results.Results`, so the cost is dominated by reading
  results.csv and the thumbnail frames.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from ..errors import InputError, OutputError
from ..media.video import read_frames
from ..results import Results, atomic_write_text
from ..types import EMOTIONS
from .draw import emotion_hex
from .timeline import (EMO_CODE, MIN_TRACK_S, NO_LABEL, NO_LABEL_HEX, TIMELINE_BINS, Clock, Entity, axis_html, clock_of,
                       find_entities, pick_rows, share_bar, tc, timeline_svg)  # fmt: skip

MAX_CARDS = 40
"""Most people/tracks with a card, a timeline and gallery shots."""
MAX_PHOTOS = 500
"""Most images listed, with their faces, in the report of an image folder."""


def _crops(res: Results, video: Path | None, rows: set[int], size: int = 96) -> dict[int, str]:
    """Square face crops for ``rows`` as base64 JPEG data URIs, cut in one ascending pass over the video."""
    if video is None or not rows:
        return {}
    c = res.cols
    by_frame: dict[int, list[int]] = {}
    for r in rows:
        by_frame.setdefault(int(c["frame"][r]), []).append(r)
    out: dict[int, str] = {}
    for fr in read_frames(video, sorted(by_frame)):
        ih, iw = fr.image.shape[:2]
        for r in by_frame.get(fr.index, ()):
            x, y, w, h = (float(c[k][r]) for k in "xywh")
            if not all(map(math.isfinite, (x, y, w, h))) or w <= 0 or h <= 0:
                continue
            side = max(w, h) * 1.3
            x1, y1 = int(max(x + w / 2 - side / 2, 0)), int(max(y + h / 2 - side / 2, 0))
            crop = fr.image[y1 : min(int(y1 + side), ih), x1 : min(int(x1 + side), iw)]
            if crop.size == 0:
                continue
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 82])
            if ok:
                out[r] = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
    return out


def _link_note(video_href: str) -> str:
    """What the video links need to work, said in the page; a script says when they cannot (a ``file://``
    link in a page served over http)."""
    if video_href.startswith("file:"):
        note = ("the &#9654;/open links point to this file on the machine that wrote the page: they break if the "
                "video moves or the page is opened elsewhere (write the report beside the video for relative links)")
    else:
        note = "the &#9654;/open links are relative to this page: they work while the video stays beside it"
    script = ('<script>(function(){var n=document.getElementById("vnote");'
              'if(n&&location.protocol!=="file:"&&n.getAttribute("data-abs")){n.textContent='
              '"(the \u25B6/open links cannot work here: they point to a file on the machine that wrote this page)";'
              'n.style.color="#a33";}})();</script>')
    absolute = ' data-abs="1"' if video_href.startswith("file:") else ""
    return f'<span id="vnote" class="vnote"{absolute} style="color:#666;font-size:12px">({note})</span>{script}'


def video_link(video: Path | str | None, report_path: Path | str | None) -> str:
    """The href of the video for links from a report at ``report_path``: relative when it sits
    beside or below the report, else an absolute ``file://`` URI; "" when unknown."""
    if not video or not Path(video).is_file():  # an image folder has no time to link to
        return ""
    v = Path(video).resolve()
    if report_path is not None:
        base = Path(report_path).resolve().parent
        if base in v.parents:
            return html.escape(quote(v.relative_to(base).as_posix()), quote=True)
    return html.escape(v.as_uri(), quote=True)


CSS = """
*{box-sizing:border-box} body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;color:#222;max-width:1200px;padding:0 16px}
h1{font-size:22px;margin:0 0 2px} h2{font-size:17px;margin:28px 0 8px} a{color:#1a4a8a}
table.summary td{padding:2px 14px 2px 0;vertical-align:top} table.summary td:first-child{color:#666;white-space:nowrap}
.small{font-size:12px;color:#555} .warn{color:#a40;font-weight:600}
.legend{margin:12px 0;font-size:13px} .legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.legend i.nl{height:4px;vertical-align:2px} .legend i.pl{height:2px;background:#000;opacity:.6;vertical-align:3px}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #ddd;border-radius:8px;padding:10px;width:278px;display:grid;grid-template-columns:72px 1fr;gap:4px 10px}
.card .ph{width:72px;height:72px;border-radius:6px;background:#eee;display:flex;align-items:center;justify-content:center;color:#999;font-size:26px}
.card img{border-radius:6px} .card h3{margin:0;font-size:15px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap} .card .share{grid-column:1/3}
.card.hl,.tlrow.hl .name{outline:2px solid #222;outline-offset:1px}
.bar{display:flex;height:12px;border-radius:3px;overflow:hidden;background:#eee;margin-top:4px} .bar span{display:block;height:100%}
.bar.empty{display:block;height:auto;background:none;font-size:12px;color:#777}
.tlrow{display:flex;align-items:center;margin:3px 0} .name{width:170px;flex:none;font-size:12px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding-right:6px}
svg.tl{flex:1;height:24px;display:block;min-width:0;cursor:crosshair} svg.tl .p{fill:none;stroke:#000;stroke-opacity:.55;stroke-width:1.2;vector-effect:non-scaling-stroke}
svg.tl .marker{stroke:#000;stroke-width:3;vector-effect:non-scaling-stroke}
.axis{margin-left:170px;height:18px;position:relative;font-size:11px;color:#666} .ticks span{position:absolute;transform:translateX(-50%)} .ticks span.end{right:0;transform:none}
.ticks span:first-child{transform:none}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:2px 6px;border-radius:4px;display:none;z-index:9}
.galleries{display:flex;flex-wrap:wrap;gap:10px} .grow{border:1px solid #eee;border-radius:8px;padding:6px 8px}
.grow .name{width:auto;font-weight:600;padding-bottom:4px} .gallery{display:flex;flex-wrap:wrap;gap:6px} .shot{text-align:center;font-size:11px;width:98px;line-height:1.3}
.shot img{border-radius:4px;border:4px solid #fff;display:block;margin:0 auto} .shot a{text-decoration:none}
table.more td,table.more th{padding:2px 12px 2px 0;text-align:left;font-size:12px}
.photos{display:flex;flex-wrap:wrap;gap:10px} .photo{border:1px solid #eee;border-radius:8px;padding:6px 8px}
.photo .name{width:auto;font-weight:600;padding-bottom:4px;max-width:420px}
"""

SCRIPT = """
(function(){
  function fmt(t){ var s=Math.max(0,t), h=Math.floor(s/3600), m=Math.floor(s%3600/60), x=(s%60).toFixed(1);
    if (x.length<4) x='0'+x; return (h? h+':'+(m<10?'0':'')+m : m)+':'+x; }
  var EMO = JSON.parse(document.getElementById('emoreel-data').textContent).emotions;
  var DUR = parseFloat(document.body.dataset.duration);
  window.emoreelSeek = function(key, t){
    document.querySelectorAll('svg.tl .marker').forEach(function(m){ m.setAttribute('x1',-1); m.setAttribute('x2',-1); });
    document.querySelectorAll('.hl').forEach(function(n){ n.classList.remove('hl'); });
    var s = document.getElementById('tl-'+key); if (!s) return;
    var x = parseInt(s.dataset.bins) * t / DUR, m = s.querySelector('.marker');
    m.setAttribute('x1', x); m.setAttribute('x2', x);
    s.parentNode.classList.add('hl');
    var card = document.getElementById('card-'+key); if (card) card.classList.add('hl');
    s.parentNode.scrollIntoView({block:'center'});
    document.body.dataset.lastSeek = key + '@' + t.toFixed(3) + '@' + x.toFixed(2);
  };
  document.addEventListener('click', function(ev){
    var a = ev.target.closest && ev.target.closest('a.tc'); if (!a) return;
    ev.preventDefault(); window.emoreelSeek(a.dataset.key, parseFloat(a.dataset.t));
  });
  var tip = document.getElementById('tip');
  document.querySelectorAll('svg.tl').forEach(function(s){
    s.addEventListener('mousemove', function(ev){
      var r = s.getBoundingClientRect(), f = (ev.clientX - r.left) / r.width, n = parseInt(s.dataset.bins);
      var k = Math.min(n-1, Math.max(0, Math.floor(f*n))), c = s.dataset.states.charAt(k);
      var what = c === '.' ? 'not on screen' : c === '-' ? 'on screen, no label' : EMO[parseInt(c)];
      tip.textContent = fmt(f*DUR) + '  ' + what; tip.style.display='block';
      tip.style.left = (ev.clientX+12)+'px'; tip.style.top = (ev.clientY+14)+'px';
    });
    s.addEventListener('mouseleave', function(){ tip.style.display='none'; });
  });
  window.addEventListener('load', function(){
    var imgs = Array.prototype.slice.call(document.images);
    document.body.dataset.imagesLoaded = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
    document.body.dataset.ready = '1';
  });
})();
"""


def _summary(res: Results, clock: Clock, ents: list[Entity], video_href: str, extra: list[tuple[str, str]] = ()) -> str:
    esc = html.escape
    meta, c = res.meta, res.cols
    inp = meta.get("input", {}) or {}
    model = meta.get("model", {}) or {}
    det = meta.get("detector", {}) or {}
    params = meta.get("params", {}) or {}
    path = str(inp.get("path", "") or "")
    n_acc = int((c["accepted"] == 1).sum()) if len(res) else 0
    n_tracks = len(np.unique(c["track_id"][c["track_id"] >= 0])) if len(res) else 0
    persons = sorted({e.label for e in ents if e.kind == "person"})
    if inp.get("kind") == "images" and len(res):  # no cards: the people named on any face
        persons = sorted({p for p in c["person"] if p and p not in ("unknown", "unidentified")})
    rng = ""
    if params.get("start") is not None or params.get("end") is not None:
        rng = f", from {tc(float(params.get('start') or 0))} to {tc(float(params['end'])) if params.get('end') is not None else 'the end'}"
    link = f' <a href="{video_href}">open</a> {_link_note(video_href)}' if video_href else ""
    if inp.get("kind") == "images":
        skipped = len(meta.get("skipped_images") or [])
        source = ("images", f"{esc(str(inp.get('frame_count', '?')))} images" + (f", {skipped} unreadable skipped" if skipped else ""))
    else:
        source = ("video", f"{esc(str(inp.get('width', '?')))}&times;{esc(str(inp.get('height', '?')))}, {clock.fps:.3f} fps, "
                           f"{tc(clock.duration)} ({clock.total_frames} frames)")  # fmt: skip
    rows = [
        ("input", f"{esc(path)}{link}"),
        source,
        ("processed", f"{esc(str(_frames_processed(res)))} frames (every {clock.step}{esc(rng)}), "
                      f"{len(res)} faces, {n_acc} frontal, {n_tracks} tracks"),
        ("people", esc(", ".join(persons)) if persons else "not identified (cards are per track)"),
        ("detector", esc(str(det.get("name") or params.get("detector") or "?"))),
        ("model", esc(f"{model.get('name', '?')} (sha256 {str(model.get('sha256') or '?')[:12]})")),
        ("parameters", esc(", ".join(f"{k}={v}" for k, v in params.items() if v is not None and v is not False))),
        ("run", (f"{esc(str(meta['started']))} &rarr; {esc(str(meta.get('finished') or '…'))}, " if meta.get("started") else "")
                + ("complete" if meta.get("complete") else '<span class="warn">incomplete (interrupted or still running)</span>')),
        *extra,
    ]  # fmt: skip
    return '<table class="summary">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _frames_processed(res: Results):
    """Frames processed: run.json's count is refreshed every few seconds, so after a crash the rows know better."""
    seen = len(np.unique(res.cols["frame"])) if len(res) else 0
    n = res.meta.get("frames_processed")
    return max(int(n), seen) if isinstance(n, (int, float)) and not isinstance(n, bool) else (seen or "?")


def _legend() -> str:
    items = "".join(f'<span><i style="background:{emotion_hex(e)}"></i>{e}</span>' for e in EMOTIONS)
    return (f'<div class="legend">{items}<span><i class="nl" style="background:{NO_LABEL_HEX}"></i>on screen, no label</span>'
            '<span><i class="pl"></i>probability of the shown emotion</span></div>')  # fmt: skip


def _card(e: Entity, codes: np.ndarray, crops: dict[int, str]) -> str:
    esc = html.escape
    if e.thumb_row in crops:
        img = f'<img src="{crops[e.thumb_row]}" width="72" height="72" alt="{esc(e.label)}">'
    else:
        img = f'<div class="ph">{"&hellip;" if e.kind == "other" else "?"}</div>'
    if e.kind == "other":
        what = f"{len(e.tracks)} tracks shorter than the minimum or without a label (rejected or unsure throughout)"
    else:
        shown = ", ".join(map(str, e.tracks[:6])) + ("&hellip;" if len(e.tracks) > 6 else "")
        what = f"track{'s' if len(e.tracks) > 1 else ''} {shown}"
    return (
        f'<div class="card" id="card-{e.key}" data-kind="{e.kind}">{img}<div><h3 title="{esc(e.label)}">{esc(e.label)}</h3>'
        f'<div class="small">{tc(e.screen_s)} on screen<br>{e.frames} frames, {e.labelled} labelled<br>{what}</div></div>'
        f'<div class="share">{share_bar(codes[e.rows])}</div></div>'
    )


def _gallery_row(res: Results, e: Entity, crops: dict[int, str], video_href: str) -> str:
    esc, c = html.escape, res.cols
    shots = []
    for emo in EMOTIONS:
        r = e.best.get(emo)
        if r is None or r not in crops:
            continue
        t = float(c["time_s"][r])
        play = f' <a class="play" href="{video_href}#t={t:.2f}" title="play the video from here">&#9654;</a>' if video_href else ""
        p = float(c["smooth_prob"][r])
        shots.append(
            f'<div class="shot" data-emotion="{emo}"><img src="{crops[r]}" width="90" height="90" alt="{esc(e.label)} {emo}" '
            f'style="border-color:{emotion_hex(emo)}">{emo} {p:.2f}<br>'
            f'<a class="tc" href="#tl-{e.key}" data-key="{e.key}" data-t="{t:.3f}" title="show on the timeline">{tc(t)}</a>{play}</div>'
        )
    if not shots:
        return ""
    return f'<div class="grow" id="g-{e.key}"><div class="name">{esc(e.label)}</div><div class="gallery">{"".join(shots)}</div></div>'


def _photo_sections(res: Results, video: Path | None, codes: np.ndarray, max_photos: int = MAX_PHOTOS) -> list[str]:
    """An image folder's report body: per image (by name), each face with its crop, label and person."""
    esc, c = html.escape, res.cols
    frames = np.unique(c["frame"])
    shown = frames[:max_photos]
    rows = np.flatnonzero(np.isin(c["frame"], shown))
    crops = _crops(res, video, set(rows.tolist()))
    counts = np.bincount(codes[codes < NO_LABEL], minlength=NO_LABEL)
    parts = [f"<h2>Photos ({len(frames)} with faces)</h2>", f'<div class="small">{share_bar(codes)}</div>',
             '<div class="photos">']  # fmt: skip
    for f in shown.tolist():
        mine = rows[c["frame"][rows] == f]
        name = str(c["source"][mine[0]]) or f"image {f}"
        shots = []
        for r in mine.tolist():
            code = int(codes[r])
            if code < NO_LABEL:
                emo = EMOTIONS[code]
                what, colour = f"{emo} {float(c['smooth_prob'][r]):.2f}", emotion_hex(emo)
            else:
                emo, what, colour = "", esc(str(c["reject_reason"][r]) or "? unsure"), NO_LABEL_HEX
            who = esc(str(c["person"][r]))
            img = (f'<img src="{crops[r]}" width="90" height="90" alt="{esc(name)} {emo}" style="border-color:{colour}">'
                   if r in crops else '<div class="ph">?</div>')  # fmt: skip
            shots.append(f'<div class="shot" data-emotion="{emo}">{img}{what}' + (f"<br>{who}" if who else "") + "</div>")
        parts.append(f'<div class="photo" data-name="{esc(name)}"><div class="name" title="{esc(name)}">{esc(name)}</div>'
                     f'<div class="gallery">{"".join(shots)}</div></div>')  # fmt: skip
    parts.append("</div>")
    if len(frames) > len(shown):
        parts.append(f'<p class="small">{len(frames) - len(shown)} more images with faces are not shown.</p>')
    if not counts.sum():
        parts.append('<p class="small">No labelled frontal faces.</p>')
    return parts


def render(
    res: Results,
    video: Path | str | None = None,
    *,
    max_cards: int = MAX_CARDS,
    min_track_s: float = MIN_TRACK_S,
    bins: int = TIMELINE_BINS,
    probability_line: bool = True,
    video_href: str = "",
    labels: str = "decoded",
) -> str:
    """The report page for ``res`` as one HTML string.

    ``video`` is the analyzed video for thumbnails (None: no images); ``video_href``
    the (already escaped) link to it for "play from here" links ("" for none).
    ``labels``: "decoded" (the offline per-track decoding of :mod:`emoreel.outputs.decode`,
    confident labels only) or "online" (``emotion_smooth`` as analyze wrote it).
    """
    if labels not in ("decoded", "online"):
        raise InputError(f"report: unknown labels '{labels}'; valid: decoded, online")
    if max_cards < 1 or bins < 1 or min_track_s < 0:
        raise InputError("report: max_cards and bins must be at least 1, min_track_s at least 0")
    esc = html.escape
    clock = clock_of(res)
    c = res.cols
    codes = np.array([EMO_CODE.get(x, NO_LABEL) for x in c["emotion_smooth"]], dtype=np.int64) if len(res) else np.zeros(0, np.int64)
    if len(res):
        codes[c["accepted"] != 1] = NO_LABEL
    if (res.meta.get("input", {}) or {}).get("kind") == "images":
        return _render_photos(res, Path(video) if video else None, clock, codes)
    from .decode import DEFAULT_SWITCH_COST, decode_results, flicker, with_labels
    from .extract import confident_min_prob

    if labels == "decoded" and len(res):  # the rest of the page reads emotion_smooth/smooth_prob: give it the decoding
        min_prob = confident_min_prob(res)
        res = with_labels(res, decode_results(res, min_prob, DEFAULT_SWITCH_COST))
        c = res.cols
        codes = np.array([EMO_CODE.get(x, NO_LABEL) for x in c["emotion_smooth"]], dtype=np.int64)
        codes[c["accepted"] != 1] = NO_LABEL
    kind_of = "decoded" if labels == "decoded" else "smoothed"
    changes, secs, rate = flicker(res, c["emotion_smooth"]) if len(res) else (0, 0.0, float("nan"))
    label_row = ("labels", f"{kind_of} per track" + (f" (abstaining below probability {min_prob:g})" if labels == "decoded" and len(res) else "")
                 + (f"; {changes} changes of emotion in {secs:.1f} track-seconds ({rate:.2f}/s)" if secs else ""))  # fmt: skip
    ents = find_entities(res, clock, min_track_s, codes)
    bins = max(1, min(bins, clock.steps))
    named = [e for e in ents if e.kind != "other"]
    shown, more = named[:max_cards], named[max_cards:]
    shown += [e for e in ents if e.kind == "other"]
    for e in shown:
        if e.kind != "other":
            pick_rows(res, e, codes)
    wanted = {e.thumb_row for e in shown if e.thumb_row >= 0} | {r for e in shown for r in e.best.values()}
    crops = _crops(res, Path(video) if video else None, wanted)
    name = Path(str((res.meta.get("input", {}) or {}).get("path", "") or "")).name
    data = {"emotions": list(EMOTIONS), "cards": len(shown), "more": len(more), "bins": bins, "duration": round(clock.duration, 3)}
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">',
        f"<title>emoreel report: {esc(name)}</title><style>{CSS}</style></head>",
        f'<body data-duration="{clock.duration:.3f}"><div id="tip"></div><h1>emoreel report</h1><div class="small">{esc(name)}</div>',
        _summary(res, clock, ents, video_href, [label_row]),
        _legend(),
    ]
    if not ents:
        parts.append("<p>No faces were found.</p>")
    else:
        title = f"People ({len(named)})" if named and all(e.kind == "person" for e in named) else f"People and tracks ({len(named)})"
        parts.append(f'<h2>{title}</h2><div class="cards">')
        parts += [_card(e, codes, crops) for e in shown]
        parts.append("</div><h2>Timeline</h2>")
        for e in shown:
            parts.append(
                f'<div class="tlrow" data-key="{e.key}"><div class="name" title="{esc(e.label)}">{esc(e.label)}</div>'
                f"{timeline_svg(res, e, clock, bins, codes, probability_line)}</div>"
            )
        bin_s = clock.duration / bins
        parts.append(axis_html(clock.duration))
        parts.append(f'<div class="small">{bins} bins of {tc(bin_s, 2 if bin_s < 1 else 1)} each: a bin shows the most frequent {kind_of} label. '
                     "Click a timecode in the gallery to mark it here.</div>")  # fmt: skip
        gallery = [_gallery_row(res, e, crops, video_href) for e in shown if e.kind != "other"]
        gallery = [g for g in gallery if g]
        parts.append("<h2>Best moment per emotion</h2>")
        if gallery:
            parts.append(f'<div class="galleries">{"".join(gallery)}</div>')
        else:
            parts.append('<p class="small">No labelled frontal faces' + ("" if video else " (or no video to cut them from)") + ".</p>")
        if more:
            parts.append(f'<h2>{len(more)} more</h2><table class="more"><tr><th>who</th><th>screen time</th><th>frames</th><th>top emotion</th></tr>')
            for e in more:
                counts = np.bincount(codes[e.rows][codes[e.rows] < NO_LABEL], minlength=NO_LABEL)
                top = EMOTIONS[int(counts.argmax())] if counts.sum() else "-"
                parts.append(f'<tr class="morerow"><td>{esc(e.label)}</td><td>{tc(e.screen_s)}</td><td>{e.frames}</td><td>{top}</td></tr>')
            parts.append("</table>")
    meta = res.meta
    parts.append(f'<p class="small">emoreel {esc(str(meta.get("emoreel_version", "")))} &middot; results schema {esc(str(meta.get("schema")))}</p>')
    parts.append(f'<script type="application/json" id="emoreel-data">{json.dumps(data)}</script>')
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def _render_photos(res: Results, video: Path | None, clock: Clock, codes: np.ndarray) -> str:
    """The page for an image folder: no timelines (images are not a timeline), one entry per image."""
    esc = html.escape
    name = Path(str((res.meta.get("input", {}) or {}).get("path", "") or "")).name
    data = {"emotions": list(EMOTIONS), "kind": "images", "images": len(np.unique(res.cols["frame"])) if len(res) else 0}
    items = "".join(f'<span><i style="background:{emotion_hex(e)}"></i>{e}</span>' for e in EMOTIONS)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">',
        f"<title>emoreel report: {esc(name)}</title><style>{CSS}</style></head>",
        f'<body data-duration="{clock.duration:.3f}"><div id="tip"></div><h1>emoreel report</h1><div class="small">{esc(name)}</div>',
        _summary(res, clock, [], ""),
        f'<div class="legend">{items}</div>',
    ]
    if not len(res):
        parts.append("<p>No faces were found.</p>")
    else:
        parts += _photo_sections(res, video, codes)
    meta = res.meta
    parts.append(f'<p class="small">emoreel {esc(str(meta.get("emoreel_version", "")))} &middot; results schema {esc(str(meta.get("schema")))}</p>')
    parts.append(f'<script type="application/json" id="emoreel-data">{json.dumps(data)}</script>')
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def check_output(out_path: str | Path, force: bool = False) -> Path:
    """Refuse an output that exists (without ``force``), is a folder, or sits in a missing folder."""
    out = Path(out_path)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name like {out / 'report.html'}")
    if out.exists() and not force:
        raise OutputError(f"{out} exists; use --force to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"folder {out.parent} is not writable")
    return out


def write_report(res: Results, out_path: str | Path, video: Path | str | None = None, force: bool = False, **kw) -> Path:
    """Render the report of ``res`` and write it to ``out_path`` atomically; returns the path.

    ``video`` (the analyzed video, for thumbnails and "play from here" links) may be None.
    Keyword arguments go to :func:`render`.
    """
    out = check_output(out_path, force)
    kw.setdefault("video_href", video_link(video, out))
    return write_page(out, render(res, video, **kw))


def write_page(out: Path, page: str) -> Path:
    """Write a rendered page atomically; a failure is one line."""
    try:
        atomic_write_text(out, page)
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror}") from None
    return out
