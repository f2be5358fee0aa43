"""Command-line interface: parses arguments, then calls the public API.

Each subcommand lives in ``emoreel._cli.<name>`` with a ``register(subparsers)``
function; errors from the library (:class:`~emoreel.errors.EmoreelError`) become
one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from ._cli import COMMANDS
from .errors import EmoreelError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emoreel", description="Find the moments in a video where people show an emotion.")
    p.add_argument("--version", action="version", version=f"emoreel {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"._cli.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("emoreel._cli"):
                continue  # command not built yet
            if e.name in ("cv2", "onnxruntime", "onnx") and name != "train":
                continue  # a training-only machine (torch + numpy, e.g. a lent GPU): `train` still works
            raise
        mod.register(sub)
    for sp in sub.choices.values():  # -v also after the command: `emoreel analyze ... -v`
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
    return p


def unknown_arguments(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> str:
    """One line for arguments the command does not take: the command that takes them, or a close match."""
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = [x.split("=", 1)[0] for x in extra if x.startswith("-") and len(x) > 1]
    if not flags:
        return f"{command} does not take {' '.join(extra)} (see emoreel {command} --help)"
    flag = flags[0]
    for other, sp in sorted(sub.choices.items(), key=lambda kv: kv[0] != "batch"):  # batch first: it takes analyze's options
        action = next((a for a in sp._actions if flag in a.option_strings), None)
        if other == command or action is None:
            continue
        value = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
        if other == "batch":
            return (f"{flag} is an option of emoreel batch (many videos, or one video in parts), not {command}: "
                    f"emoreel batch INPUT... -o ROOT {flag}{value}")
        return f"{flag} is an option of emoreel {other}, not {command} (see emoreel {other} --help)"
    own = [s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith("--")]
    close = difflib.get_close_matches(flag, own, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{command} has no option {flag}{hint} (see emoreel {command} --help)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        print(f"emoreel: error: {unknown_arguments(parser, args.command, extra)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="emoreel: %(levelname)s: %(message)s")
    from ._cli import Terminated, quiet_opencv, stop_on_signals

    if not args.verbose:
        quiet_opencv()  # OpenCV's and libav's own warnings around our one-line errors
    restore = stop_on_signals()  # SIGTERM/SIGHUP end like Ctrl-C: finished frames kept, temporary files removed
    try:
        return int(args.func(args) or 0)
    except EmoreelError as e:
        print(f"emoreel: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        print("emoreel: interrupted", file=sys.stderr)
        return 128 + e.signum if isinstance(e, Terminated) else 130
    except BrokenPipeError:
        return 1
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
