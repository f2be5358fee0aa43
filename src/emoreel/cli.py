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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
