"""Face crops of selected rows: :func:`best_per_track` picks the best few of each track,
:func:`write_crops` writes one PNG each (colour around the box, or grey 48x48 aligned like the
training data) with ``manifest.csv``, and :func:`contact_sheet` tiles them into one image."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from ..errors import DataError, InputError, ModelError, OutputError
from ..faces.align import align_face
from ..media.video import read_frames
from ..model.emotion import DEFAULT_EYES, InputSpec, default_model_path, read_card
from ..results import Results, csv_safe
from ..types import EMOTIONS, Observation
from .draw import timecode
from .selection import Run


def best_per_track(res: Results, mask: np.ndarray, k: int, raw: bool = False, emotion: str = "",
                   gap_s: float = 0.0, runs: list[Run] | None = None) -> np.ndarray:  # fmt: skip
    """The ``k`` best selected rows of each track, spread over time.

    Score = probability of the selected emotion (smoothed, or raw with ``raw``) times
    ``min(1, sharpness / the track's median sharpness)``: blurrier-than-usual crops are
    discounted, sharper ones are not boosted past their probability. Ties go to the sharper.
    Rows are taken best first, skipping any less than ``gap_s`` seconds from one already
    taken of its track, and with ``runs`` (:func:`find_runs`) any from a run already
    represented: neighbouring frames are near-duplicates. A track may so give fewer than ``k``.
    """
    if k < 1:
        raise InputError("--best must be at least 1")
    if not gap_s >= 0:
        raise InputError(f"--best-gap must be >= 0 seconds (got {gap_s})")
    c = res.cols
    out = np.zeros_like(mask)
    prob = np.nan_to_num(c[emotion] if raw and emotion else c["smooth_prob"])
    run_of = np.full(len(mask), -1)
    for i, r in enumerate(runs or []):
        run_of[r.rows] = i
    for tid in np.unique(c["track_id"][mask]):
        rows = np.flatnonzero(mask & (c["track_id"] == tid))
        sharp = np.nan_to_num(c["sharpness"][rows])
        med = float(np.median(sharp)) or 1.0
        score = prob[rows] * np.minimum(1.0, sharp / med)
        taken_t: list[float] = []
        taken_runs: set[int] = set()
        for i in rows[np.lexsort((-sharp, -score))]:
            t, run = float(c["time_s"][i]), int(run_of[i])
            if any(abs(t - u) < gap_s for u in taken_t) or (run >= 0 and run in taken_runs):
                continue
            out[i] = True
            taken_t.append(t)
            if run >= 0:
                taken_runs.add(run)
            if len(taken_t) == k:
                break
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "unknown"


NAME_BYTES = 240  # file systems allow 255 bytes per name; leaves room for the writer's temporary suffix


def _fit(part: str, budget: int) -> str:
    """``part`` whole when its UTF-8 fits ``budget`` bytes, else its start and 8 hex digits of its hash (unique)."""
    if len(part.encode("utf-8")) <= budget:
        return part
    tag = "~" + hashlib.sha1(part.encode("utf-8")).hexdigest()[:8]
    head = part.encode("utf-8")[: max(0, budget - len(tag))].decode("utf-8", "ignore")
    return head + tag


def crop_name(o: Observation, emotion: str, prob: float, photo: bool = False) -> str:
    """``t0001.233_f000037_track003_anna_happy_0.92.png``: sorts by time, says who and what.

    Without ``--known-faces`` (no person) the track alone names the face: ``..._track003_happy_0.92.png``;
    ``unknown`` (no reference matched) and ``unidentified`` (never tried: too small) are kept.
    A face of a photo (``photo``: an image folder's results) is named after the photo instead of a time:
    ``holiday_beach_face003_anna_happy_0.92.png`` for ``holiday/beach.jpg``.
    """
    who = f"_{_fit(_safe(o.person), 60)}" if o.person else ""
    tail = f"{who}_{_safe(emotion)}_{prob:.2f}.png"
    if photo and o.source:  # a deep folder of long (non-ASCII) names still gives a name the file system takes
        face = f"_face{o.track_id:03d}{tail}"
        stem = _safe(str(PurePosixPath(o.source).with_suffix("")))
        return _fit(stem, NAME_BYTES - len(face.encode("utf-8"))) + face
    return f"t{o.time_s:08.3f}_f{o.frame:06d}_track{o.track_id:03d}{tail}"


def _box_crop(img: np.ndarray, o: Observation, margin: float, size: int | None) -> np.ndarray:
    """A square around the face box, ``margin`` (fraction of the box side) added each side."""
    cx, cy = o.x + o.w / 2, o.y + o.h / 2
    s = max(1, int(round(max(o.w, o.h) * (1 + 2 * margin))))
    x1, y1 = int(round(cx - s / 2)), int(round(cy - s / 2))
    pad = max(0, -x1, -y1, x1 + s - img.shape[1], y1 + s - img.shape[0])
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1 = x1 + pad, y1 + pad
    crop = img[y1 : y1 + s, x1 : x1 + s]
    if size:
        interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop


def training_spec(res: Results | None = None, size: int = 48) -> InputSpec:
    """A grey ``size`` x ``size`` spec with the eye template of the model that made ``res``.

    The card beside run.json's model path is used when it is still there, else the
    shipped model's card, else the generic template.
    """
    candidates = []
    path = ((res.meta.get("model") or {}).get("path") if res is not None else None) or None
    if path:
        candidates.append(Path(path))
    candidates.append(default_model_path())
    for p in candidates:
        try:
            spec = InputSpec.from_card(read_card(p))
            return dataclasses.replace(spec, width=size, height=size, colour="grey")
        except (ModelError, OSError, KeyError, TypeError, ValueError):
            continue
    return InputSpec(size, size, "grey", "NCHW", 1 / 255, (0.0,), (1.0,), DEFAULT_EYES)


@dataclass
class Crop:
    """One written crop: its file, the source row and a thumbnail for the contact sheet."""

    path: Path
    row: int
    obs: Observation
    prob: float
    thumb: np.ndarray


MANIFEST_COLUMNS = ("file", "row", "source", "frame", "time_s", "track_id", "person", "emotion", "prob",
                    "x", "y", "w", "h", "sharpness")  # fmt: skip


def write_crops(
    res: Results, mask: np.ndarray, video: Path, out_dir: Path, emotion: str, raw: bool = False,
    margin: float | None = None, size: int | None = 112, grey48: bool = False, thumb: int = 112,
) -> list[Crop]:  # fmt: skip
    """One PNG per selected row in ``out_dir/crops``, plus ``out_dir/manifest.csv``.

    Colour crops are squares around the face box (``margin`` default 0.25 of the box
    side each way), resized to ``size`` (None = native). ``grey48`` crops are aligned
    by the eyes to the model's eye template at 48x48 grey, like the training data
    (``margin`` default: the analysis' own ``--margin``). The manifest's ``row`` is the
    0-based data row of results.csv. Frames are read in one ascending pass.
    """
    if margin is not None and not margin >= 0:
        raise InputError(f"--margin must be >= 0 (got {margin})")
    if size is not None and size < 0:
        raise InputError(f"--size must be >= 0 (got {size})")
    spec = training_spec(res) if grey48 else None
    if margin is None:
        margin = float(res.meta.get("params", {}).get("margin", 0.0) or 0.0) if grey48 else 0.25
    by_frame: dict[int, list[tuple[int, Observation]]] = {}
    for i, o in zip(np.flatnonzero(mask), res.rows(mask)):
        by_frame.setdefault(o.frame, []).append((int(i), o))
    photos = (res.meta.get("input") or {}).get("kind") == "images"
    crops_dir = out_dir / "crops"
    crops_dir.mkdir(parents=True, exist_ok=True)
    written: list[Crop] = []
    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for frame in read_frames(video, sorted(by_frame)):
            for i, o in sorted(by_frame[frame.index], key=lambda t: t[1].track_id):
                prob = o.probs[EMOTIONS.index(emotion)] if raw else o.smooth_prob
                if grey48:
                    if not any(math.isnan(v) for v in o.eyes):
                        img = align_face(frame.image, o.eyes[:2], o.eyes[2:], spec, margin=margin)
                    else:
                        img = _box_crop(frame.image, o, margin, 48)
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                else:
                    img = _box_crop(frame.image, o, margin, size or None)
                path = crops_dir / crop_name(o, emotion, prob, photos)
                if not cv2.imwrite(str(path), img):
                    raise OutputError(f"cannot write {path}")
                w.writerow([f"crops/{path.name}", i, csv_safe(o.source), o.frame, f"{o.time_s:.6f}", o.track_id, csv_safe(o.person), emotion,
                            f"{prob:.4f}", f"{o.x:.1f}", f"{o.y:.1f}", f"{o.w:.1f}", f"{o.h:.1f}",
                            "" if math.isnan(o.sharpness) else f"{o.sharpness:.1f}"])  # fmt: skip
                small = cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA)
                written.append(Crop(path, i, o, float(prob), small))
    missing = int(mask.sum()) - len(written)
    if missing:
        raise DataError(f"{video} ended before frame {max(by_frame)}; {missing} crops could not be cut")
    return written


SHEET_CAPTION_PX = 18


def contact_sheet(crops: list[Crop], path: Path, cols: int = 8, tile: int = 112) -> tuple[int, int]:
    """A grid PNG of the crops (time order), a caption under each; returns ``(rows, cols)``.

    ``cols`` is at most ``cols`` and at most the number of crops; ``rows = ceil(n / cols)``;
    the image is ``rows * (tile + 18)`` by ``cols * tile`` pixels.
    """
    n = len(crops)
    if n == 0:
        raise InputError("no crops for a contact sheet")
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    cap = SHEET_CAPTION_PX
    sheet = np.full((rows * (tile + cap), cols * tile, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for k, cr in enumerate(crops):
        r, c = divmod(k, cols)
        img = cr.thumb if cr.thumb.shape[:2] == (tile, tile) else cv2.resize(cr.thumb, (tile, tile), interpolation=cv2.INTER_AREA)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
        y0 = r * (tile + cap)
        sheet[y0 : y0 + tile, c * tile : (c + 1) * tile] = img
        text = f"{timecode(cr.obs.time_s)} #{cr.obs.track_id} {cr.prob:.2f}"
        scale = 0.38
        while scale > 0.2 and cv2.getTextSize(text, font, scale, 1)[0][0] > tile - 4:
            scale -= 0.02
        cv2.putText(sheet, text, (c * tile + 2, y0 + tile + 13), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), sheet):
        raise OutputError(f"cannot write {path}")
    return rows, cols
