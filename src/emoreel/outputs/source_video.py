"""The analyzed video of a results folder: :func:`resolve_video` finds it (run.json, a
``--record`` recording or ``--video PATH``) and refuses one that does not match the results."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from ..errors import InputError
from ..media.images import check_image_names
from ..media.video import exact_fps, probe
from ..results import Results


def resolve_video(res: Results, video: str | Path | None = None) -> Path:
    """The analyzed video: from run.json, or ``video`` if it moved; refused if it doesn't match.

    Width and height must be equal, the frame count within 2 (containers round), and the
    frame rate equal (times in results.csv are ``frame / fps``).
    """
    inp = res.meta.get("input", {}) or {}
    kind = inp.get("kind")
    recording = res.dir / inp["recording"] if inp.get("recording") else None
    use_recording = False
    if video:
        path = Path(video)
    elif recording is not None and (kind == "camera" or not Path(inp.get("path") or "").is_file()):
        path, use_recording = recording, True  # the frames analyze read, kept by --record
    elif kind == "camera":
        raise InputError("these results come from a camera run without --record: there is no video file "
                         "(give a recording with --video PATH)")
    elif inp.get("path"):
        path = Path(inp["path"])
    else:
        raise InputError(f"{res.dir / 'run.json'} names no input video; give it with --video PATH")
    if not path.exists():
        hint = "" if video else " (use --video PATH if it moved)"
        raise InputError(f"source video {path} not found{hint}")
    if kind == "images" and len(res):  # each image must still be the one analyzed at its position
        check_image_names(path, dict(zip(res.cols["frame"].tolist(), res.cols["source"].tolist())))
    info = probe(path)
    diffs = []
    if (info.width, info.height) != (inp.get("width"), inp.get("height")):
        diffs.append(f"size {info.width}x{info.height}, results say {inp.get('width')}x{inp.get('height')}")
    n = inp.get("frame_count") or 0
    if kind != "camera" and not use_recording and n and abs(info.frame_count - n) > 2:
        diffs.append(f"{info.frame_count} frames, results say {n}")
    want_fps = _results_fps(res)
    if kind == "video" and want_fps and info.fps and abs(float(info.fps) - float(want_fps)) > 0.01:
        diffs.append(f"{float(info.fps):.3f} fps, results say {float(want_fps):.3f}")
    if diffs:
        raise InputError(f"{path} does not match these results: {'; '.join(diffs)}")
    return path


def _results_fps(res: Results) -> Fraction:
    inp = res.meta.get("input", {}) or {}
    try:
        return Fraction(str(inp["fps_fraction"]))
    except (KeyError, ValueError, ZeroDivisionError):
        return exact_fps(res.fps)
