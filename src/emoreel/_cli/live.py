"""`emoreel live`: a camera window with the same overlays as `annotate`, analyzed as it streams."""

from __future__ import annotations

from ..config import AnalyzeOptions

NO_WINDOW_HINT = (
    "record instead: `emoreel analyze --camera N -o OUT --record` writes the results and the camera's "
    "frames, and `emoreel annotate OUT -o annotated.mp4` draws them "
    "(or install opencv-python, which has a GUI, and run live on a machine with a display)"
)


def register(sub) -> None:
    p = sub.add_parser(
        "live",
        help="show a camera with faces and emotions drawn live (needs a display)",
        description="Run the full pipeline on a camera and show the overlays of `annotate` in a window (q or Esc quits).",
    )
    p.add_argument("--camera", type=int, default=0, help="camera index (default 0)")
    p.add_argument("--known-faces", help="folder of reference photos of known people")
    p.add_argument("--detector", default=AnalyzeOptions.detector, choices=("centerface", "haar", "hog"), help="face detector backend")
    p.add_argument("--model", help="emotion model ONNX file with its card beside it (default: the shipped one)")
    p.add_argument("--views", default=AnalyzeOptions.views, choices=("mirror", "jitter"),
                   help=f"test-time views per face (default {AnalyzeOptions.views}; mirror runs 7-28%% more frames/s)")
    p.set_defaults(func=run)


def run(args) -> int:
    import cv2

    from ..errors import InputError
    from ..outputs.extract import gui_available, live_frames
    from ..analysis.analyzer import Analyzer
    from ..media.video import open_source

    ok, why = gui_available()
    if not ok:
        raise InputError(f"cannot open a live window: {why}; {NO_WINDOW_HINT.replace('camera N', f'camera {args.camera}')}")
    opts = AnalyzeOptions(detector=args.detector, known_faces=args.known_faces, model=args.model, views=args.views, threads=1)
    title = f"emoreel live: camera {args.camera} (q to quit)"
    if not getattr(args, "verbose", False):
        from . import quiet_opencv

        quiet_opencv()  # a missing camera: our one line, not OpenCV's [ WARN ] lines
    with open_source(args.camera) as src:  # a missing camera: VideoOpenFailure from open_source
        analyzer = Analyzer(opts)
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
            analyzer.close()
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    return 0
