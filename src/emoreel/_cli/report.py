"""`emoreel report`: a self-contained HTML page of who felt what, when."""

from __future__ import annotations


MAX_CARDS, MIN_TRACK_S, TIMELINE_BINS = 40, 1.0, 600  # emoreel.outputs.report's defaults (a test keeps them equal); not imported: cv2


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a results folder",
        description="Write one HTML file (images and script inline, no network needed): run summary, a card and an "
        "emotion timeline per person or track, and the best crop per emotion linked to its time.",
    )
    p.add_argument("results", metavar="RESULTS_DIR", help="results folder written by `emoreel analyze`")
    p.add_argument("-o", "--out", required=True, metavar="HTML", help="HTML file to write")
    p.add_argument("--video", help="the analyzed video, if it moved since analyze (for thumbnails and links)")
    p.add_argument("--max-cards", type=int, default=MAX_CARDS, metavar="N",
                   help=f"people/tracks with a card, timeline and gallery; the rest go to a table (default {MAX_CARDS})")
    p.add_argument("--min-track", type=float, default=MIN_TRACK_S, metavar="SECONDS",
                   help=f"unnamed tracks shorter than this are pooled into 'other faces' (default {MIN_TRACK_S:g})")
    p.add_argument("--bins", type=int, default=TIMELINE_BINS, metavar="N",
                   help=f"most bins per timeline row (default {TIMELINE_BINS})")
    p.add_argument("--online", action="store_true",
                   help="timelines and cards from the online smoothed label (emotion_smooth) instead of the offline "
                   "per-track decoding (confident labels, a label change must be worth it; see docs/model.md)")
    p.add_argument("--force", action="store_true", help="replace an existing HTML file")
    p.set_defaults(func=run)  # fmt: skip


def run(args) -> int:
    import logging

    from ..errors import InputError
    from ..outputs.report import check_output, write_report
    from ..results import load_results

    if args.max_cards < 1 or args.bins < 1 or args.min_track < 0:
        raise InputError("--max-cards and --bins must be at least 1, --min-track at least 0")
    check_output(args.out, args.force)  # before the (possibly long) read of results.csv
    from ..batch.runner import is_batch_root

    if is_batch_root(args.results):  # a folder written by `emoreel batch`: totals + one section per video
        from ..batch.report import write_batch_report

        out = write_batch_report(args.results, args.out, force=args.force, max_cards=args.max_cards,
                                 min_track_s=args.min_track, bins=args.bins, labels="online" if args.online else "decoded")
        print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
        return 0
    res = load_results(args.results)
    video = None
    if args.video or (res.meta.get("input", {}) or {}).get("kind") in ("video", "images"):
        from ..outputs.extract import resolve_video

        try:
            video = resolve_video(res, args.video)
        except InputError as e:
            if args.video:
                raise
            logging.getLogger("emoreel.outputs.report").warning("%s; the report will have no thumbnails", e)
    out = write_report(res, args.out, video, force=args.force, max_cards=args.max_cards,
                       min_track_s=args.min_track, bins=args.bins, labels="online" if args.online else "decoded")  # fmt: skip
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB)" if size >= 1e6 else f"wrote {out} ({size / 1e3:.0f} kB)")
    return 0
