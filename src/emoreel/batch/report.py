"""The report of a whole batch: totals, then one section per video holding that video's own report.

One self-contained HTML file, like the single-video report: each video's section is
its :func:`emoreel.outputs.report.render` page, embedded (``<iframe srcdoc>``) inside a
collapsible ``<details>``, so the per-video pages keep their own styles and scripts.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np

from ..errors import DataError, EmoreelError, InputError
from ..results import load_results
from ..types import EMOTIONS
from .runner import BATCH_CSV, batch_videos

log = logging.getLogger(__name__)

_STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
details{margin:12px 0;border:1px solid #ccc;border-radius:6px;padding:6px 10px}summary{cursor:pointer;font-weight:600}
iframe{width:100%;height:900px;border:0}.bar{display:flex;height:12px;width:320px;background:#eee}.small{color:#666;font-size:12px}"""


def _shares(res) -> np.ndarray:
    """Frames per emotion of the online smoothed label (accepted rows)."""
    lab = res.cols["emotion_smooth"]
    return np.array([int(np.sum(lab == e)) for e in EMOTIONS])


def _bar(counts: np.ndarray) -> str:
    total = int(counts.sum())
    if not total:
        return '<span class="small">no labelled faces</span>'
    palette = ["#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#7f7f7f"]
    cells = "".join(f'<span title="{e} {c / total:.0%}" style="width:{100 * c / total:.2f}%;background:{palette[i % 7]}"></span>'
                    for i, (e, c) in enumerate(zip(EMOTIONS, counts)) if c)  # fmt: skip
    return f'<div class="bar">{cells}</div>'


def render_batch(root: str | Path, out_path: Path | None = None, **kw) -> str:
    """The batch report page of ``root`` (a folder written by ``emoreel batch``)."""
    from ..outputs.extract import resolve_video
    from ..outputs.report import render, video_link

    root = Path(root)
    videos = batch_videos(root)
    if not videos:
        raise InputError(f"{root / BATCH_CSV} lists no complete video")
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
        name = Path(v["input"]).name
        anchor = esc(v["folder"])
        rows.append(f'<tr><td><a href="#{anchor}">{esc(name)}</a></td><td>{dur:.1f}</td><td>{frames}</td><td>{len(res)}</td>'
                    f"<td>{tracks}</td><td>{_bar(counts)}</td></tr>")  # fmt: skip
        sections.append(f'<details id="{anchor}"><summary>{esc(name)} &middot; {dur:.1f} s &middot; {len(res)} faces in '
                        f'{tracks} tracks <span class="small">{esc(v["input"])} &rarr; {esc(v["folder"])}/</span></summary>'
                        f'<iframe loading="lazy" srcdoc="{esc(page, quote=True)}"></iframe></details>')  # fmt: skip
    shares = ", ".join(f"{e} {c / max(1, all_counts.sum()):.0%}" for e, c in zip(EMOTIONS, all_counts) if c)
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>emoreel batch report: {esc(root.name)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>emoreel batch: {esc(str(root))}</h1>"
            f"<p><b>{shown}</b> videos, <b>{tot['duration'] / 60:.1f}</b> minutes, <b>{tot['frames']}</b> frames, "
            f"<b>{tot['faces']}</b> faces in <b>{tot['tracks']}</b> tracks.</p><p>Smoothed labels over all videos: "
            f"{esc(shares) or 'none'}</p>{_bar(all_counts)}"
            "<h2>Videos</h2><table><tr><th>video</th><th>seconds</th><th>frames</th><th>faces</th><th>tracks</th>"
            f"<th>emotions</th></tr>{''.join(rows)}</table><h2>Per video</h2>")  # fmt: skip
    if not shown:
        raise DataError(f"no results folder listed in {root / BATCH_CSV} can be read")
    return head + "".join(sections) + "</body></html>"


def write_batch_report(root: str | Path, out_path: str | Path, force: bool = False, **kw) -> Path:
    """Write :func:`render_batch` of ``root`` to ``out_path`` (atomically)."""
    from ..outputs.report import check_output, write_page

    out = check_output(out_path, force)
    return write_page(out, render_batch(root, out, **kw))
