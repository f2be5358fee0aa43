"""`emoreel live`: a camera (or a video) analysed as it streams, shown in the browser with faces, emotions and a timeline."""

from __future__ import annotations

import sys

from ..config import AnalyzeOptions

NO_WINDOW_HINT = (
    "the browser view needs no window: run without --window; or record: `emoreel analyze --camera N -o OUT --record` "
    "writes the results and the camera's frames, and `emoreel annotate OUT -o annotated.mp4` draws them"
)


def register(sub) -> None:
    p = sub.add_parser(
        "live",
        help="show a camera (or a video) with faces and emotions live, in the browser",
        description="Run the full pipeline on a camera or a video and show the annotated frames, the current emotion of each "
        "face and a running timeline on a page served on 127.0.0.1 and opened in your browser (Ctrl-C stops). "
        "--window shows an OpenCV window instead (needs opencv-python with a GUI and a display).",
    )
    p.add_argument("input", nargs="?", help="a video file instead of the camera")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="camera index (default 0 when no INPUT is given)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port; the address is printed)")
    p.add_argument("--no-browser", action="store_true", help="print the address only; do not open a browser")
    p.add_argument("--window", action="store_true", help="an OpenCV window instead of the browser (q or Esc quits)")
    p.add_argument("--known-faces", help="folder of reference photos of known people")
    p.add_argument("--detector", default=AnalyzeOptions.detector, choices=("centerface", "haar", "hog"), help="face detector backend")
    p.add_argument("--model", help="emotion model ONNX file with its card beside it (default: the shipped one)")
    p.add_argument("--views", default=AnalyzeOptions.views, choices=("mirror", "jitter"),
                   help=f"test-time views per face (default {AnalyzeOptions.views}; mirror runs 7-28%% more frames/s)")
    p.set_defaults(func=run)


def can_open_browser() -> bool:
    """A graphical browser can be opened here (never a console one: it would take over the terminal)."""
    import os
    import platform

    return platform.system() in ("Darwin", "Windows") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args) -> int:
    from pathlib import Path

    from ..errors import InputError

    if args.input is not None and args.camera is not None:
        raise InputError("give a video file or --camera N, not both")
    if args.input is not None and not Path(args.input).is_file():
        raise InputError(f"no such file: {args.input}")
    source = args.input if args.input is not None else (args.camera if args.camera is not None else 0)
    if args.window:
        from ..outputs.extract import gui_available

        ok, why = gui_available()
        if not ok:
            hint = NO_WINDOW_HINT.replace("camera N", f"camera {source if isinstance(source, int) else 'N'}")
            raise InputError(f"cannot open a live window: {why}; {hint}")
    opts = AnalyzeOptions(detector=args.detector, known_faces=args.known_faces, model=args.model, views=args.views, threads=1)
    if not getattr(args, "verbose", False):
        from . import quiet_opencv

        quiet_opencv()  # a missing camera: our one line, not OpenCV's [ WARN ] lines
    from ..analysis.analyzer import Analyzer
    from ..media.video import open_source

    with open_source(source) as src:  # a missing camera or a bad file: one line from open_source
        analyzer = Analyzer(opts)
        try:
            return (_window if args.window else _browser)(args, src, analyzer)
        finally:
            analyzer.close()


def _browser(args, src, analyzer) -> int:
    import threading
    import time
    import webbrowser

    from . import Terminated
    from ..outputs.live import live_frames
    from ..outputs.live_view import LiveView

    name = f"camera {src.info.path.split(':')[-1]}" if src.info.kind == "camera" else src.info.path
    view = LiveView(title=name, port=args.port).start()
    print(f"emoreel live: {name} at {view.url} (Ctrl-C stops)", flush=True)
    if not args.no_browser:
        if can_open_browser():
            threading.Thread(target=webbrowser.open, args=(view.url,), daemon=True).start()
        else:
            print(f"no display here: open {view.url} in a browser on this machine, or from another one through "
                  f"ssh -L {view.port}:127.0.0.1:{view.port} THIS_HOST", flush=True)  # fmt: skip
    fps = float(src.info.fps) or 30.0
    start = None
    try:
        for frame, obs, img in live_frames(src, analyzer):
            if src.info.kind == "video":  # a file plays at its own speed when the analysis is faster
                start = start if start is not None else time.monotonic() - frame.time_s
                time.sleep(max(0.0, start + frame.time_s - time.monotonic()))
            view.publish(frame, obs, img, fps)
        view.finish()
        print(f"the video ended; its last frame and timeline stay at {view.url} until Ctrl-C", flush=True)
        threading.Event().wait()  # until Ctrl-C (or SIGTERM)
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated):
            raise
        print("emoreel live: stopped", file=sys.stderr)
        return 0
    finally:
        view.close()
    return 0


def _window(args, src, analyzer) -> int:
    import cv2

    from ..errors import InputError
    from ..outputs.live import live_frames

    title = f"emoreel live: {src.info.path} (q to quit)"
    try:
        for _, _, img in live_frames(src, analyzer):
            try:
                cv2.imshow(title, img)
                key = cv2.waitKey(1) & 0xFF
            except cv2.error:
                raise InputError(f"cannot open a live window: this OpenCV build has no GUI; {NO_WINDOW_HINT}") from None
            if key in (ord("q"), 27):
                break
    finally:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass
    return 0
