"""How closely two results folders of the same video agree (the fast default against ``--exact``).

Rows are paired per frame by box overlap (track ids differ between runs). Reported:

* ``faces``: share of the reference's faces (rows) that the other run found in the same frame (IoU >= 0.5);
* ``frames``: share of frames where both runs found the same number of faces;
* ``label``: share of the reference's rows whose paired row has the same smoothed label
  (``emotion_smooth``, "" included: both abstaining agrees); an unpaired row disagrees;
* ``segments``: share of the reference's extract segments (every emotion, the default
  selection) that the other run has with the same start and end within ``tolerance_s``;
  ``segments_back``: the same the other way round (segments the reference does not have);
* ``new_face_delay``: for each reference track that starts after the first frame, frames
  until the other run has a face there (median and max), the latency of finding new faces.
"""

from __future__ import annotations

import numpy as np

from ..faces.track import iou_matrix
from ..results import Results, load_results
from ..types import EMOTIONS


def _by_frame(res: Results) -> dict[int, np.ndarray]:
    frames = res.cols["frame"]
    order = np.argsort(frames, kind="stable")
    out: dict[int, np.ndarray] = {}
    if not len(order):
        return out
    splits = np.flatnonzero(np.diff(frames[order])) + 1
    for part in np.split(order, splits):
        out[int(frames[part[0]])] = part
    return out


def _boxes(res: Results, rows: np.ndarray) -> np.ndarray:
    c = res.cols
    x, y, w, h = (c[k][rows].astype(np.float64) for k in ("x", "y", "w", "h"))
    return np.stack([x, y, x + w, y + h], 1)


def pair_rows(ref: Results, other: Results, min_iou: float = 0.5) -> np.ndarray:
    """For every row of ``ref``, the index of its row in ``other`` (greedy by IoU per frame), -1 when none."""
    pair = np.full(len(ref), -1, np.int64)
    theirs = _by_frame(other)
    for f, rows in _by_frame(ref).items():
        cand = theirs.get(f)
        if cand is None:
            continue
        iou = iou_matrix(_boxes(ref, rows), _boxes(other, cand))
        while iou.size and iou.max() >= min_iou:
            r, c = np.unravel_index(int(np.argmax(iou)), iou.shape)
            pair[rows[r]] = cand[c]
            iou[r, :], iou[:, c] = -1, -1
    return pair


def extract_segments(res: Results) -> list[tuple[str, float, float]]:
    """(emotion, start s, end s) of every segment ``emoreel extract`` finds with its default selection."""
    from .extract import Selection, find_runs, recorded_cuts, segments, select, stride

    fps = float(res.fps or 1.0)
    count = int(res.meta.get("input", {}).get("frame_count") or 0)
    out = []
    for emo in EMOTIONS:
        sel = Selection(emo)
        sel.check()
        mask = select(res, sel)
        if not mask.any():
            continue
        runs = find_runs(res, mask, emotion=emo)
        for s in segments(runs, fps, count, step=stride(res), cuts=recorded_cuts(res)):
            out.append((emo, s.first / fps, (s.last + 1) / fps))
    return out


def _matched_share(a: list, b: list, tol: float) -> float:
    if not a:
        return 1.0
    hit = sum(any(e == e2 and abs(s - s2) <= tol and abs(t - t2) <= tol for e2, s2, t2 in b) for e, s, t in a)
    return hit / len(a)


def new_face_delays(ref: Results, other: Results, pair: np.ndarray) -> list[int]:
    """Frames from each reference track's first row (after the video's first frame) to its first paired row."""
    c = ref.cols
    first_frame = int(c["frame"].min()) if len(ref) else 0
    out = []
    for tid in np.unique(c["track_id"]):
        rows = np.flatnonzero(c["track_id"] == tid)
        rows = rows[np.argsort(c["frame"][rows])]
        start = int(c["frame"][rows[0]])
        if start == first_frame:
            continue
        found = rows[pair[rows] >= 0]
        out.append(int(c["frame"][found[0]]) - start if len(found) else int(c["frame"][rows[-1]]) - start + 1)
    return out


def compare(reference, other, tolerance_s: float = 0.2) -> dict:
    """Agreement of ``other`` with ``reference`` (results folders or :class:`Results`); see the module doc."""
    ref = reference if isinstance(reference, Results) else load_results(reference)
    oth = other if isinstance(other, Results) else load_results(other)
    pair = pair_rows(ref, oth)
    found = pair >= 0
    same = np.zeros(len(ref), bool)
    same[found] = ref.cols["emotion_smooth"][found] == oth.cols["emotion_smooth"][pair[found]]
    fa, fb = _by_frame(ref), _by_frame(oth)
    frames = sorted(set(fa) | set(fb))
    same_count = sum(len(fa.get(f, ())) == len(fb.get(f, ())) for f in frames)
    sa, sb = extract_segments(ref), extract_segments(oth)
    delays = new_face_delays(ref, oth, pair)
    return {
        "rows": int(len(ref)), "rows_other": int(len(oth)),
        "faces": float(found.mean()) if len(ref) else 1.0,
        "frames": same_count / len(frames) if frames else 1.0,
        "label": float(same.mean()) if len(ref) else 1.0,
        "segments": _matched_share(sa, sb, tolerance_s), "segments_back": _matched_share(sb, sa, tolerance_s),
        "n_segments": len(sa), "n_segments_other": len(sb),
        "new_faces": len(delays),
        "new_face_delay_median": float(np.median(delays)) if delays else 0.0,
        "new_face_delay_max": int(max(delays)) if delays else 0,
    }  # fmt: skip
