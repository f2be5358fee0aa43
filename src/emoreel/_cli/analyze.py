"""`emoreel analyze`: video/camera/images -> results.csv + run.json.

The options are generated from :class:`emoreel.config.AnalyzeOptions`, so the
library defaults, the CLI defaults and the help text cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from ..config import AnalyzeOptions

_TYPES = {"int": int, "float": float, "str": str}


def add_option_arguments(p: argparse.ArgumentParser, cls=AnalyzeOptions, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field, typed and documented from the field itself."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_ = f.metadata.get("help", "")
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction if default else "store_true"  # --tta / --no-tta
            p.add_argument(flag, dest=f.name, action=action, default=default, help=help_)
            continue
        base = str(f.type).split("|")[0].strip()
        kw = {"type": _TYPES.get(base, str), "default": default, "dest": f.name}
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        p.add_argument(flag, help=f"{help_} (default: {default})" if default is not None else help_, **kw)


def options_from_args(args, cls=AnalyzeOptions):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="find faces, classify emotions, track them: write results.csv",
        description="Analyze a video file, a camera, or a folder/glob of images into OUT_DIR/results.csv and run.json.",
    )
    p.add_argument("input", nargs="?", help="video file, image folder, or quoted glob like 'shots/*.jpg'")
    p.add_argument("more_inputs", nargs="*", help=argparse.SUPPRESS)  # an unquoted glob the shell expanded
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="results folder")
    p.add_argument("--camera", type=int, metavar="N", help="read webcam N instead of INPUT")
    p.add_argument("--example", action="store_true", help="analyze the built-in example video (written to OUT_DIR)")
    p.add_argument("--force", action="store_true", help="overwrite existing results in OUT_DIR")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in OUT_DIR after its last finished frame (same options and model)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    add_option_arguments(p)
    p.set_defaults(func=run)


def expanded_glob_hint(paths: list[str]) -> str:
    """The error for several inputs: most likely a glob the shell expanded; suggest the quoted pattern."""
    ps = [Path(p) for p in paths]
    parents = {str(p.parent) for p in ps}
    suffixes = {p.suffix.lower() for p in ps}
    folder = parents.pop() if len(parents) == 1 else "FOLDER"
    pattern = ("*" + ps[0].suffix if len(suffixes) == 1 else "*")
    glob = pattern if folder == "." else f"{folder}/{pattern}"
    shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
    return (f"analyze takes one input, got {len(paths)} ({shown}): if the shell expanded a glob, quote it, "
            f"e.g. emoreel analyze '{glob}' -o OUT_DIR (or give the folder)")


def run(args) -> int:
    from ..errors import InputError, OutputError
    from ..analysis.run import analyze_to_dir
    from .progress import Progress

    if args.more_inputs:
        raise InputError(expanded_glob_hint([args.input, *args.more_inputs]))
    chosen = [x for x in (args.input is not None, args.camera is not None, args.example) if x]
    if len(chosen) != 1:
        raise InputError("give exactly one of INPUT, --camera N or --example")
    opts = options_from_args(args).validate()  # before the output folder is made
    from ..results import check_output_dir

    check_output_dir(args.out, args.force or args.example or args.resume)  # before models load
    if args.example:
        from ..results import prepare_output_dir
        from ..media.sample import make_example_video

        out = prepare_output_dir(args.out, args.force)
        source = out / "example.mp4"
        try:
            make_example_video(source)
        except OSError as e:
            raise OutputError(f"cannot write {source}: {e.strerror}") from None
    else:
        source = args.camera if args.camera is not None else args.input
        if args.camera is not None and not getattr(args, "verbose", False):
            from . import quiet_opencv

            quiet_opencv()  # a missing camera: our one line, not OpenCV's [ WARN ] lines
        if isinstance(source, str) and not any(c in source for c in "*?[") and not Path(source).exists():
            raise InputError(f"no such file: {source}")
    bar = Progress(enabled=None if not args.quiet else False)
    try:
        summary = analyze_to_dir(source, args.out, opts, force=args.force or args.example, progress=bar,
                                 resume=getattr(args, "resume", False))
    except KeyboardInterrupt as e:
        bar.close()
        print(f"emoreel: interrupted; finished frames are kept in {Path(args.out) / 'results.csv'}", file=sys.stderr)
        return 128 + e.signum if hasattr(e, "signum") else 130
    finally:
        bar.close()
    if not args.quiet:
        print(summary.line())
    return 0
