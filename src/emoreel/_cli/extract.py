"""`emoreel extract`: crops, clips, a highlight reel and a contact sheet of the faces showing an emotion."""

from __future__ import annotations

from pathlib import Path


def _tracks(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def register(sub) -> None:
    p = sub.add_parser("extract", help="cut crops/clips/reel of an emotion from a results folder (no models run)")
    p.add_argument("results", help="results folder written by `emoreel analyze`")
    p.add_argument("-o", "--out", required=True, help="output folder (crops/, manifest.csv, clips/, sheet.png)")
    p.add_argument("--emotion", required=True, help="angry, disgust, fear, happy, sad, surprise or neutral")
    p.add_argument("--person", help="only this known person")
    p.add_argument("--track", type=_tracks, default=(), help="only these track ids (comma-separated)")
    p.add_argument("--raw", action="store_true", help="select on the per-frame label instead of the smoothed one")
    p.add_argument("--min-prob", type=float, default=0.0, help="minimum probability of the emotion (default 0)")
    p.add_argument("--start", type=float, help="from this time (s)")
    p.add_argument("--end", type=float, help="until this time (s)")
    p.add_argument("--min-duration", type=float, default=0.0, help="the track must hold the emotion this long in a row (s)")
    p.add_argument("--best", type=int, metavar="K", help="only the K best crops per track (probability and sharpness)")
    p.add_argument("--margin", type=float, default=0.25, help="crop margin around the face box, as a fraction (default 0.25)")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112; 0 = native)")
    p.add_argument("--grey48", action="store_true", help="eye-aligned grey 48x48 crops, like the training data")
    p.add_argument("--no-crops", action="store_true", help="write no crops")
    p.add_argument("--clips", action="store_true", help="write one video clip per segment")
    p.add_argument("--reel", metavar="MP4", help="join all segments into one highlight reel with captions")
    p.add_argument("--pad", type=float, default=0.5, help="seconds added before and after each segment (default 0.5)")
    p.add_argument("--merge-gap", type=float, default=1.0, help="merge segments closer than this (s, default 1)")
    p.add_argument("--sheet", action="store_true", help="write a contact sheet PNG of the crops")
    p.add_argument("--video", help="the analyzed video, if it moved since analyze")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import InputError, OutputError
    from ..extract import (OutputDir, Selection, best_per_track, contact_sheet, find_runs, resolve_video, segments,
                           select, write_clips, write_crops, write_reel)  # fmt: skip
    from ..results import load_results

    res = load_results(args.results)
    sel = Selection(args.emotion, args.raw, args.min_prob, args.person, args.track, args.start, args.end, args.min_duration)
    mask = select(res, sel)
    if not mask.any():
        print(f"nothing selected: no {'raw' if args.raw else 'smoothed'} '{args.emotion}' rows match in {args.results}")
        return 0
    video = resolve_video(res, args.video)
    reel = Path(args.reel) if args.reel else None
    if reel is not None and reel.exists() and not args.force:
        raise OutputError(f"{reel} exists; use --force to replace it")
    if args.best is not None and args.best < 1:
        raise InputError("--best must be at least 1")
    crop_mask = best_per_track(res, mask, args.best, args.raw, args.emotion) if args.best else mask
    runs = find_runs(res, mask)
    fps = res.fps or 1.0
    segs = segments(runs, fps, res.meta.get("input", {}).get("frame_count", 0), args.pad, args.merge_gap)
    lines = [f"selected {int(mask.sum())} observations in {len(runs)} runs ({len(segs)} segments)"]
    with OutputDir(args.out, args.force) as tmp:
        if not args.no_crops:
            crops = write_crops(res, crop_mask, video, tmp, args.emotion, args.raw, args.margin, args.size or None, args.grey48)
            lines.append(f"{len(crops)} crops + manifest.csv")
            if args.sheet and crops:
                r, c = contact_sheet(crops, tmp / "sheet.png")
                lines.append(f"contact sheet {r}x{c}")
        if args.clips:
            lines.append(f"{len(write_clips(video, segs, tmp, fps))} clips")
    if reel is not None:
        n = write_reel(video, segs, reel)
        lines.append(f"reel {reel} ({n} frames)")
    print("; ".join(lines) + f" -> {args.out}")
    return 0
