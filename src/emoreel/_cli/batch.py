"""`emoreel batch`: many videos (or long videos in parts) into one folder, on this machine or a Ray cluster."""

from __future__ import annotations

import sys
import time

from .analyze import add_option_arguments, options_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="analyze many videos into ROOT/<video>/ (resumable; local processes or Ray)",
        description="Analyze every input video into its own results folder under ROOT and list them in ROOT/batch.csv. "
        "Running the same command again skips finished videos, resumes interrupted ones and retries failed ones.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders of videos, or quoted globs like 'shows/*.mp4'")
    p.add_argument("-o", "--out", required=True, metavar="ROOT", help="batch folder: one results folder per video + batch.csv")
    p.add_argument("--recursive", action="store_true", help="also take videos in subfolders of folder inputs (and ** in globs)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: one Ray task per video or part")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local engine: videos analysed at once (default: cores / 2, at least 1); each gets cores / N threads")
    g.add_argument("--address", default=None,
                   help="ray engine: 'auto' (a running cluster), HOST:PORT or ray://HOST:PORT (default: start Ray here)")
    g.add_argument("--start-timeout", type=float, default=600.0, metavar="S",
                   help="ray engine: end the batch when its tasks have waited S seconds for CPUs and none runs "
                        "(default 600; 0: wait for ever, e.g. for an autoscaler)")
    g.add_argument("--retries", type=int, default=1, metavar="N",
                   help="more tries for a video whose worker died or failed unexpectedly (default 1)")
    g.add_argument("--split", type=int, default=None, metavar="N",
                   help="analyse each video in N time ranges in parallel and merge them into one results folder")
    g.add_argument("--chunk-minutes", type=float, default=None, metavar="M",
                   help="like --split, in parts of about M minutes of video")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_option_arguments(p)
    p.set_defaults(func=run)


def _hms(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(max(s, 0))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


class BatchLine:
    """The batch's one progress line: videos done/total, frames, frames/s and ETA."""

    def __init__(self, enabled: bool):
        self.enabled, self.drawn = enabled and sys.stderr.isatty(), False
        self.width = 0

    def __call__(self, st: dict) -> None:
        if not self.enabled:
            return
        line = (f"videos {st['videos_done']}/{st['videos']}  frames {st['frames']}/{st['frames_total']}  "
                f"{st['fps']:6.1f} frames/s  ETA {_hms(st['eta_s'])}  running {st['running']}  ")  # fmt: skip
        if st.get("waiting"):
            line += f"waiting for cluster CPUs {st['waiting']}"
            if st.get("waited_s"):  # none runs
                line += f" (none running for {_hms(st['waited_s'])})"
            line += "  "
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line.ljust(self.width))  # a shorter line covers the longer one before it
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def no_videos_hint(inputs: list[str], recursive: bool) -> str:
    """Why the inputs hold no video: an empty folder, videos only in subfolders, or images (for analyze)."""
    from pathlib import Path

    from ..media.images import IMAGE_SUFFIXES
    from ..media.video import VIDEO_SUFFIXES

    folders = [Path(i) for i in inputs if Path(i).is_dir()]
    where = ", ".join(str(f) for f in folders[:3]) + (", ..." if len(folders) > 3 else "")
    kinds = "/".join(sorted(s.lstrip(".") for s in VIDEO_SUFFIXES if s in (".mp4", ".mov", ".mkv", ".avi", ".webm")))
    msg = f"no videos ({kinds}, ...) in {where}"
    files = [f for d in folders for f in d.rglob("*") if f.is_file()]
    nested = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    images = [f for d in folders for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if nested and not recursive:
        return f"{msg}; {len(nested)} in subfolders: add --recursive"
    if images:
        return f"{msg}; it holds {len(images)} images: analyze them with emoreel analyze {folders[0]} -o OUT_DIR"
    return msg


def run(args) -> int:
    from ..batch.runner import collect_inputs, run_batch, shown
    from ..batch.engines import cpu_count
    from ..errors import InputError
    from pathlib import Path

    opts = options_from_args(args)
    workers = args.workers if args.workers is not None else max(1, cpu_count() // 2)
    if args.split is not None and args.chunk_minutes is not None:
        raise InputError("give --split or --chunk-minutes, not both")
    if not collect_inputs(args.inputs, args.recursive, exclude=Path(args.out)):
        raise InputError(no_videos_hint(args.inputs, args.recursive))
    bar = BatchLine(not args.quiet)
    t0 = time.perf_counter()
    try:
        summary = run_batch(args.inputs, args.out, opts, engine=args.engine, workers=workers, address=args.address,
                            retries=args.retries, split=args.split, chunk_minutes=args.chunk_minutes,
                            recursive=args.recursive, progress=bar, start_timeout=args.start_timeout)  # fmt: skip
    except KeyboardInterrupt as e:
        bar.close()
        print(f"emoreel: interrupted after {time.perf_counter() - t0:.0f} s; finished videos are kept, the rest are marked "
              f"incomplete in {args.out}/batch.csv; run the same command to resume", file=sys.stderr)  # fmt: skip
        return 128 + e.signum if hasattr(e, "signum") else 130  # SIGTERM/SIGHUP: 143/129, like analyze
    finally:
        bar.close()
    print(summary.line())
    for v in summary.videos:
        if v.status == "failed":
            print(f"failed: {shown(v.input)}: {shown(v.reason)}", file=sys.stderr)
    return 0 if summary.ok else 1


def _concat_quote(path: str) -> str:
    """``path`` quoted for an ffmpeg concat list: in single quotes, each ``'`` written as ``'\\''``."""
    return "'" + path.replace("'", "'\\''") + "'"


def extract_over_batch(args, run_one) -> int:
    """`emoreel extract ROOT`: run the extraction over every complete video of a batch.

    Each video's crops, clips and segments go to OUT/<video folder>/ (so every file names its
    video); OUT/manifest.csv and OUT/segments.csv list them all with a ``video`` column; a
    ``--reel`` joins the videos' reels in batch order.
    """
    import copy
    import csv
    import subprocess
    from pathlib import Path

    from ..batch.runner import batch_videos
    from ..errors import InputError, OutputError
    from ..media.video import probe
    from ..results import csv_safe

    root, out = Path(args.results), Path(args.out)
    videos = batch_videos(root)
    if not videos:
        raise InputError(f"{root}/batch.csv lists no complete video")
    if args.video:
        raise InputError("--video names one video; a batch's videos are found from each results folder")
    reel = Path(args.reel) if args.reel else None
    if reel is not None and reel.exists() and not args.force:
        raise OutputError(f"{reel} exists; use --force to replace it")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise OutputError(f"{out} is not empty; use --force to replace what is in it")
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[list[str]]] = {"manifest.csv": [], "segments.csv": []}
    headers: dict[str, list[str]] = {}
    reels = []
    for v in videos:
        name = Path(v["input"]).name
        sub = copy.copy(args)
        sub.results, sub.out = str(v["dir"]), str(out / v["folder"])
        sub.reel = str(out / v["folder"] / "reel.mp4") if reel is not None else None
        try:
            run_one(sub)
        except InputError as e:  # e.g. --person not in this video
            print(f"{name}: skipped: {e}")
            continue
        for table in tables:
            path = out / v["folder"] / table
            if path.exists():
                with open(path, newline="", encoding="utf-8") as fh:
                    rows = list(csv.reader(fh))
                if rows:
                    headers[table] = ["video", "folder", *rows[0]]
                    tables[table] += [[csv_safe(v["input"]), csv_safe(v["folder"]), *r] for r in rows[1:]]
        if sub.reel and Path(sub.reel).exists():
            reels.append(Path(sub.reel))
    for table, rows in tables.items():
        if table in headers:
            with open(out / table, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(headers[table])
                w.writerows(rows)
    if reel is not None:
        if not reels:
            print("no segments in any video: no reel written")
        elif len({(probe(r).width, probe(r).height, probe(r).fps) for r in reels}) > 1:
            print(f"the videos differ in size or frame rate; their reels are in {out}/<video>/reel.mp4")
        else:
            import imageio_ffmpeg

            lst = out / ".reels.txt"
            lst.write_text("".join(f"file {_concat_quote(str(r.resolve()))}\n" for r in reels), encoding="utf-8")
            tmp = reel.with_name(f".{reel.name}.part.mp4")
            proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "concat", "-safe", "0",
                                   "-i", str(lst), "-c", "copy", str(tmp)], capture_output=True, text=True)  # fmt: skip
            lst.unlink(missing_ok=True)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise OutputError(f"cannot join the reels: {(proc.stderr.strip().splitlines() or ['ffmpeg failed'])[-1]}")
            tmp.replace(reel)
            print(f"reel {reel}: {len(reels)} videos")
    print(f"{len(videos)} videos -> {out} (manifest.csv, segments.csv list every video's files)")
    return 0
