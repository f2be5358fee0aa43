"""`emoreel report`: a self-contained HTML page of who felt what, when."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a results folder")
    p.add_argument("results", help="results folder written by `emoreel analyze`")
    p.add_argument("-o", "--out", required=True, help="HTML file to write")
    p.add_argument("--video", help="the analyzed video, if it moved since analyze (for thumbnails)")
    p.add_argument("--max-cards", type=int, default=40, help="people/tracks with cards and timelines (default 40)")
    p.add_argument("--min-track", type=float, default=1.0, help="tracks shorter than this (s) are pooled (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from ..errors import InputError
    from ..extract import resolve_video
    from ..report import write_report
    from ..results import load_results

    res = load_results(args.results)
    try:
        video = resolve_video(res, args.video)
    except InputError as e:
        if args.video:
            raise
        logging.getLogger("emoreel").warning("%s; the report will have no thumbnails", e)
        video = None
    out = write_report(res, args.out, video, force=args.force, max_cards=args.max_cards, min_track_s=args.min_track)
    print(f"wrote {out}")
    return 0
