"""`emoreel live`: a camera window with the same overlays as `annotate`, analyzed as it streams."""

from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("live", help="show a camera with faces and emotions drawn live (needs a display)")
    p.add_argument("--camera", type=int, default=0, help="camera index (default 0)")
    p.add_argument("--known-faces", help="folder of reference photos of known people")
    p.add_argument("--detector", default="centerface", choices=("centerface", "haar"))
    p.set_defaults(func=run)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def run(args) -> int:
    import cv2

    from ..config import AnalyzeOptions
    from ..draw import draw_frame, timecode
    from ..errors import InputError
    from ..pipeline import Analyzer
    from ..video import open_source

    if not has_display():
        raise InputError("no display for a live window; record instead: emoreel analyze --camera N -o OUT, then emoreel annotate OUT")
    with open_source(args.camera) as src:
        analyzer = Analyzer(AnalyzeOptions(detector=args.detector, known_faces=args.known_faces, threads=1))
        try:
            for frame in src:
                obs = analyzer.process(frame)
                try:
                    cv2.imshow("emoreel live (q to quit)", draw_frame(frame.image, obs, timecode(frame.time_s)))
                    key = cv2.waitKey(1) & 0xFF
                except cv2.error:
                    raise InputError("this OpenCV build has no GUI (opencv-python-headless); "
                                     "pip install opencv-python for `live`, or use analyze --camera + annotate") from None  # fmt: skip
                if key in (ord("q"), 27):
                    break
        finally:
            analyzer.close()
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    return 0
