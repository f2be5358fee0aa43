"""`emoreel extract`: crops, clips, a highlight reel and a contact sheet of the faces showing an emotion."""

from __future__ import annotations

import argparse
from pathlib import Path


def _tracks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"track ids are comma-separated integers, like 1,4 (got '{text}')") from None


def _best_gap(text: str) -> float | str:
    if text.strip().lower() == "run":
        return "run"
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"seconds >= 0 or 'run' (got '{text}')")
    return v


def register(sub) -> None:
    from ..outputs.decode import DEFAULT_SWITCH_COST
    from ..outputs.extract import DEFAULT_MIN_SHARE

    p = sub.add_parser(
        "extract",
        help="cut crops/clips/reel of an emotion from a results folder (no models run)",
        description="Select the rows of a results folder showing an emotion and cut crops (with manifest.csv), "
        "a contact sheet, clips and a highlight reel out of the analyzed video. No model is run.",
    )
    p.add_argument("results", help="results folder written by `emoreel analyze`")
    p.add_argument("-o", "--out", required=True, help="output folder (crops/, manifest.csv, sheet.png, clips/, segments.csv)")
    g = p.add_argument_group("selection")
    g.add_argument("--emotion", required=True, help="angry, disgust, fear, happy, sad, surprise or neutral (any case)")
    g.add_argument("--raw", action="store_true", help="select on the per-frame label (and its probability) instead of the decoded one")
    g.add_argument("--online", action="store_true",
                   help="select on the online smoothed label analyze wrote (emotion_smooth, smooth_prob) instead of "
                   "the offline per-track decoding (a label change must pay --switch-cost; see docs/model.md)")
    g.add_argument("--min-prob", type=float, default=None,
                   help="confidence needed: where the decoding abstains, or the least smoothed (--online) or raw (--raw) "
                   "probability of the emotion (default: the analysis' own --min-prob, as recorded in its run.json)")
    g.add_argument("--switch-cost", type=float, default=DEFAULT_SWITCH_COST, metavar="NATS",
                   help=f"decoding: evidence (log-probability) a label change needs (default {DEFAULT_SWITCH_COST}; 0 = per-frame argmax above --min-prob)")
    g.add_argument("--person", help="only this known person (any case)")
    g.add_argument("--track", type=_tracks, default=(), metavar="IDS", help="only these track ids (comma-separated)")
    g.add_argument("--start", type=float, help="from this time (s)")
    g.add_argument("--end", type=float, help="until this time (s)")
    g.add_argument("--min-duration", type=float, default=0.0, metavar="S",
                   help="keep only runs where a track holds the emotion at least S seconds in a row")  # fmt: skip
    g = p.add_argument_group("crops")
    g.add_argument("--best", type=int, metavar="K", help="only the K best crops per track (probability and sharpness)")
    g.add_argument("--best-gap", type=_best_gap, default=2.0, metavar="S|run",
                   help="--best: at least S seconds between two crops of a track (default 2; 0 = any), or 'run': "
                   "at most one crop per run of the emotion")  # fmt: skip
    g.add_argument("--margin", type=float, help="margin around the face box, as a fraction of its side (default 0.25)")
    g.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112; 0 = native)")
    g.add_argument("--grey48", action="store_true", help="eye-aligned grey 48x48 crops, like the training data")
    g.add_argument("--no-crops", action="store_true", help="write no crops")
    g.add_argument("--sheet", action="store_true", help="also write sheet.png, a contact sheet of the crops")
    g = p.add_argument_group("clips and reel")
    g.add_argument("--clips", action="store_true", help="write one video clip per segment into clips/")
    g.add_argument("--reel", metavar="MP4", help="join all segments into one highlight reel with captions")
    g.add_argument("--pad", type=float, default=0.5, help="seconds added before and after each run (default 0.5)")
    g.add_argument("--merge-gap", type=float, default=1.0,
                   help="merge segments (of any tracks) less than this many seconds apart (default 1)")
    g.add_argument("--min-share", type=float, default=DEFAULT_MIN_SHARE,
                   help=f"merge only while at least this share of the merged span (padding not counted) shows the emotion "
                   f"(default {DEFAULT_MIN_SHARE}); clips never cross a shot cut recorded by analyze")  # fmt: skip
    g.add_argument("--mute", action="store_true", help="leave out the video's sound")
    p.add_argument("--video", help="the analyzed video, if it moved since analyze")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..batch.runner import is_batch_root

    if is_batch_root(args.results):  # a folder written by `emoreel batch`: every video in turn
        from .batch import extract_over_batch

        return extract_over_batch(args, run)
    from ..media.encode import sound_note
    from ..errors import InputError, OutputError
    from ..names import resolve_name
    from ..outputs.extract import (OutputDir, Selection, best_per_track, contact_sheet, fill_on_screen, find_runs,
                                   other_emotion_frames, recorded_cuts, resolve_video, segments, select, selection_labels,
                                   stride, write_crops, write_segments)  # fmt: skip
    from .progress import Progress
    from ..results import load_results
    from ..types import EMOTIONS
    from ..media.video import probe

    res = load_results(args.results)
    from ..results import warn_incomplete

    warn_incomplete(res)
    args.emotion = resolve_name(args.emotion, EMOTIONS, "emotion")  # --emotion Happy
    if args.person is not None:
        args.person = resolve_name(args.person, res.persons(), "person",
                                   none_hint="none (analyze with --known-faces to name people)")  # fmt: skip
    sel = Selection(args.emotion, args.raw, args.min_prob, args.person, args.track, args.start, args.end, args.min_duration,
                    online=args.online, switch_cost=args.switch_cost)  # fmt: skip
    sel.check()
    if args.no_crops and not (args.clips or args.reel):
        raise InputError("nothing to write: --no-crops without --clips or --reel")
    if args.sheet and args.no_crops:
        raise InputError("--sheet shows the crops; it cannot be used with --no-crops")
    if args.best is not None and args.best < 1:
        raise InputError("--best must be at least 1")
    if args.pad < 0 or args.merge_gap < 0:
        raise InputError("--pad and --merge-gap must be >= 0")
    if not 0 <= args.min_share <= 1:
        raise InputError(f"--min-share must be between 0 and 1 (got {args.min_share})")
    if args.size < 0 or (args.margin is not None and args.margin < 0):
        raise InputError("--size and --margin must be >= 0")
    labels = selection_labels(res, sel)  # decoded once, for the selection and for where padding stops
    mask = select(res, sel, labels)
    if not mask.any():
        kind = "raw" if args.raw else "smoothed" if args.online else "confident decoded"
        what = f"{kind} '{args.emotion}'" + (f" of {args.person}" if args.person else "")
        print(f"nothing selected: no {what} rows match in {args.results}; nothing written")
        return 0
    video = resolve_video(res, args.video)
    out = Path(args.out)
    reel = Path(args.reel) if args.reel else None
    if reel is not None:
        if reel.exists() and not args.force:
            raise OutputError(f"{reel} exists; use --force to replace it")
        if reel.resolve() == video.resolve():
            raise OutputError(f"--reel {reel} is the source video")
    info = probe(video)
    runs = find_runs(res, mask, emotion=args.emotion)
    segs = segments(runs, info.fps, info.frame_count, args.pad, args.merge_gap, stride(res), recorded_cuts(res), args.min_share,
                    other_emotion_frames(res, sel, labels))  # fmt: skip
    fill_on_screen(res, segs)
    by_raw = args.raw or not args.online  # crops are scored by their own probability of the emotion unless --online
    gap, per_run = (0.0, runs) if args.best_gap == "run" else (args.best_gap, None)
    crop_mask = best_per_track(res, mask, args.best, by_raw, args.emotion, gap, per_run) if args.best else mask
    lines = [f"selected {int(mask.sum())} observations in {len(runs)} runs"]
    bar = Progress(enabled=False if args.quiet else None)
    try:
        with OutputDir(out, args.force, protect=(res.dir, video)) as tmp:
            if not args.no_crops:
                crops = write_crops(res, crop_mask, video, tmp, args.emotion, by_raw, args.margin, args.size or None, args.grey48)
                lines.append(f"{len(crops)} crops + manifest.csv")
                if args.sheet:
                    r, c = contact_sheet(crops, tmp / "sheet.png")
                    lines.append(f"sheet.png {r}x{c}")
            if args.clips or reel is not None:
                # a reel inside the output folder is written into the temporary folder with it
                inner = reel is not None and reel.resolve().parent.is_relative_to(out.resolve())
                reel_to = tmp / reel.resolve().relative_to(out.resolve()) if inner else reel
                if inner:
                    reel_to.parent.mkdir(parents=True, exist_ok=True)
                sound, note = sound_note(video, args.mute, reel or out / "clips", info.fps)
                clips, n = write_segments(video, segs, tmp / "clips" if args.clips else None, reel_to,
                                          table=tmp / "segments.csv", progress=bar, sound=sound)  # fmt: skip
                lines.append(f"{len(segs)} segments" + (f", {len(clips)} clips" if args.clips else "") + f" ({note})")
                if reel is not None:
                    lines.append(f"reel {reel} ({n} frames)")
    finally:
        bar.close()
    print("; ".join(lines) + f" -> {out}")
    return 0
