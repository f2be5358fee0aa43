"""`emoreel annotate`: the source video with boxes, eyes, track ids, persons and smoothed emotions drawn."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "annotate",
        help="draw the results onto the source video",
        description="Write a copy of the analyzed video with every face drawn: box coloured by the smoothed emotion "
        "(grey with the reason when rejected), eye points, track id, person, smoothed emotion and probability. "
        "With an --every N analysis each analyzed frame's overlays are held over the N-1 frames after it; "
        "frames without results are copied unchanged.",
    )
    p.add_argument("results", help="results folder written by `emoreel analyze`")
    p.add_argument("-o", "--out", required=True, help="video file to write (.mp4: H.264 with the sound; .mkv, .mov or .avi)")
    p.add_argument("--video", help="the analyzed video, if it moved since analyze")
    p.add_argument("--timecode", action="store_true", help="also burn a timecode into every frame")
    p.add_argument("--mute", action="store_true", help="leave out the video's sound")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..media.encode import sound_note
    from ..errors import OutputError
    from ..outputs.extract import annotate, resolve_video
    from .progress import Progress
    from ..results import load_results
    from ..media.video import probe

    res = load_results(args.results)
    from ..results import warn_incomplete

    warn_incomplete(res)
    video = resolve_video(res, args.video)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise OutputError(f"{out} exists; use --force to replace it")
    if out.exists() and out.is_dir():
        raise OutputError(f"{out} is a folder; give a video file name like annotated.mp4")
    if out.resolve() == video.resolve():
        raise OutputError(f"{out} is the source video; write the annotated copy elsewhere")
    if out.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
        raise OutputError(f"{out}: give a video file name ending in .mp4 or .avi")
    sound, note = sound_note(video, args.mute, out, probe(video).fps)
    bar = Progress(enabled=False if args.quiet else None)
    try:
        n = annotate(res, video, out, bar, show_time=args.timecode, sound=sound)
    finally:
        bar.close()
    print(f"wrote {out} ({n} frames, {note})")
    return 0
