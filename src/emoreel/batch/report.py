"""The report of a whole batch: totals, then one section per video holding that video's own report.

One self-contained HTML file, like the single-video report: each video's section is
its :func:`emoreel.outputs.report.render` page, embedded (``<iframe srcdoc>``) inside a
collapsible ``<details>``, so the per-video pages keep their own styles and scripts. Each
embedded page tells the batch page its height (``postMessage``), and its frame grows to fit it:
one scroll bar for the whole page, never one inside each video. The bars use the colours of
the per-video reports (:func:`emoreel.outputs.draw.emotion_hex`) under one legend; the inputs
that failed, or are not finished, are listed with their reasons.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import DataError, EmoreelError, InputError
from ..outputs.draw import emotion_hex
from ..results import load_results
from ..types import EMOTIONS
from .runner import BATCH_CSV, _read_batch_csv, batch_videos

log = logging.getLogger(__name__)

_STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
details{margin:12px 0;border:1px solid #ccc;border-radius:6px;padding:6px 10px}summary{cursor:pointer;font-weight:600}
iframe{width:100%;height:600px;border:0;display:block}.bar{display:flex;height:12px;width:320px;background:#eee}
.bar span{display:block;height:100%}.small{color:#666;font-size:12px}
.legend{margin:8px 0;font-size:13px}.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
table.failed td,table.failed th{text-align:left;vertical-align:top}"""

# in each embedded page: tell the batch page how tall it is (on load and whenever it changes size)
_CHILD_SCRIPT = """<script>(function(){var id=%s;function h(){var d=document.documentElement;
parent.postMessage({emoreelFrame:id,height:Math.ceil(d.getBoundingClientRect().height),view:window.innerHeight},'*')}
addEventListener('load',h);addEventListener('resize',h);if(window.ResizeObserver)new ResizeObserver(h).observe(document.body)})();</script>"""
# on the batch page: each frame takes its page's height, so only the batch page scrolls
_PARENT_SCRIPT = """<script>addEventListener('message',function(e){var d=e.data;if(!d||!d.emoreelFrame)return;
var f=document.getElementById('frame-'+d.emoreelFrame);if(!f||f.contentWindow!==e.source)return;
f.style.height=d.height+'px';f.dataset.height=d.height;f.dataset.view=d.view;});</script>"""


def _shares(res) -> np.ndarray:
    """Frames per emotion of the online smoothed label (accepted rows)."""
    lab = res.cols["emotion_smooth"]
    return np.array([int(np.sum(lab == e)) for e in EMOTIONS])


def _bar(counts: np.ndarray) -> str:
    total = int(counts.sum())
    if not total:
        return '<span class="small">no labelled faces</span>'
    cells = "".join(f'<span title="{e} {c / total:.0%}" style="width:{100 * c / total:.2f}%;background:{emotion_hex(e)}"></span>'
                    for e, c in zip(EMOTIONS, counts) if c)  # fmt: skip
    return f'<div class="bar">{cells}</div>'


def _legend() -> str:
    """The colours of the bars: the same as the per-video reports'."""
    items = "".join(f'<span><i style="background:{emotion_hex(e)}"></i>{e}</span>' for e in EMOTIONS)
    return f'<div class="legend">{items}<span class="small">bars: share of the frames with a smoothed label</span></div>'


def _not_reported(root: Path, reported: set[str]) -> tuple[str, dict[str, int]]:
    """The inputs of batch.csv without a complete run: failed ones with their reasons, unfinished ones."""
    esc = html.escape
    rows = [r for r in (_read_batch_csv(root) or []) if r["folder"] not in reported]
    out, counts = [], {}
    for title, keep, note in (
        ("Failed", lambda r: r["status"] == "failed", "the same emoreel batch command tries them again"),
        ("Not finished", lambda r: r["status"] != "failed", "the same emoreel batch command resumes them"),
    ):
        picked = [r for r in rows if keep(r)]
        if not picked:
            continue
        anchor = "failed" if title == "Failed" else "unfinished"
        counts[anchor] = len(picked)
        body = "".join(f'<tr><td>{esc(Path(r["input"]).name)}</td><td>{esc(r["status"])}</td><td>{esc(r["reason"] or "-")}</td>'
                       f'<td class="small">{esc(r["input"])}</td></tr>' for r in picked)  # fmt: skip
        out.append(f'<h2 id="{anchor}">{title} ({len(picked)})</h2><p class="small">{note}</p><table class="failed">'
                   f"<tr><th>video</th><th>status</th><th>reason</th><th>input</th></tr>{body}</table>")
    return "".join(out), counts


def render_batch(root: str | Path, out_path: Path | None = None, **kw) -> str:
    """The batch report page of ``root`` (a folder written by ``emoreel batch``)."""
    from ..outputs.extract import resolve_video
    from ..outputs.report import render, video_link

    root = Path(root)
    videos = batch_videos(root)
    if not videos and not _read_batch_csv(root):
        raise InputError(f"{root / BATCH_CSV} lists no video")
    esc = html.escape
    sections, rows = [], []
    tot = {"duration": 0.0, "frames": 0, "faces": 0, "tracks": 0}
    all_counts = np.zeros(len(EMOTIONS), int)
    shown = 0
    for v in videos:
        try:
            res = load_results(v["dir"])
        except EmoreelError as e:  # one damaged folder is left out, not the whole report
            log.warning("%s; left out of the report", e)
            continue
        shown += 1
        counts = _shares(res)
        all_counts += counts
        dur = float((res.meta.get("input") or {}).get("duration_s") or 0)
        frames = int(res.meta.get("frames_processed") or 0)
        tracks = len(res.track_ids())
        tot["duration"] += dur
        tot["frames"] += frames
        tot["faces"] += len(res)
        tot["tracks"] += tracks
        try:
            video = resolve_video(res)
        except EmoreelError as e:
            log.warning("%s; its section has no thumbnails", e)
            video = None
        page = render(res, video, video_href=video_link(video, out_path) if video is not None else "", **kw)
        page = page.replace("</body>", _CHILD_SCRIPT % json.dumps(v["folder"]) + "</body>", 1)
        name = Path(v["input"]).name
        anchor = esc(v["folder"])
        rows.append(f'<tr><td><a href="#{anchor}">{esc(name)}</a></td><td>{dur:.1f}</td><td>{frames}</td><td>{len(res)}</td>'
                    f"<td>{tracks}</td><td>{_bar(counts)}</td></tr>")  # fmt: skip
        sections.append(f'<details id="{anchor}"><summary>{esc(name)} &middot; {dur:.1f} s &middot; {len(res)} faces in '
                        f'{tracks} tracks <span class="small">{esc(v["input"])} &rarr; {esc(v["folder"])}/</span></summary>'
                        f'<iframe id="frame-{anchor}" loading="lazy" srcdoc="{esc(page, quote=True)}"></iframe></details>')  # fmt: skip
    shares = ", ".join(f"{e} {c / max(1, all_counts.sum()):.0%}" for e, c in zip(EMOTIONS, all_counts) if c)
    missing, n_missing = _not_reported(root, {v["folder"] for v in videos})
    also = "".join(f', <a href="#{k}"><b>{n}</b> {k}</a>' for k, n in n_missing.items())
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>emoreel batch report: {esc(root.name)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>emoreel batch: {esc(str(root))}</h1>"
            f"<p><b>{shown}</b> videos, <b>{tot['duration'] / 60:.1f}</b> minutes, <b>{tot['frames']}</b> frames, "
            f"<b>{tot['faces']}</b> faces in <b>{tot['tracks']}</b> tracks{also}.</p><p>Smoothed labels over all videos: "
            f"{esc(shares) or 'none'}</p>{_bar(all_counts)}{_legend()}"
            "<h2>Videos</h2><table><tr><th>video</th><th>seconds</th><th>frames</th><th>faces</th><th>tracks</th>"
            f"<th>emotions</th></tr>{''.join(rows)}</table>{missing}"
            f"{'<h2>Per video</h2>' if sections else ''}")  # fmt: skip
    if not shown and not n_missing:
        raise DataError(f"no results folder listed in {root / BATCH_CSV} can be read")
    return head + "".join(sections) + _PARENT_SCRIPT + "</body></html>"


def write_batch_report(root: str | Path, out_path: str | Path, force: bool = False, **kw) -> Path:
    """Write :func:`render_batch` of ``root`` to ``out_path`` (atomically)."""
    from ..outputs.report import check_output, write_page

    out = check_output(out_path, force)
    return write_page(out, render_batch(root, out, **kw))
