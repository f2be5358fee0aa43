"""CLI subcommands: each module has ``register(subparsers)`` and keeps heavy imports inside its run function."""

COMMANDS = ("analyze", "extract", "annotate", "live", "report", "train", "evaluate", "export")


def quiet_opencv() -> None:
    """Keep OpenCV's ``[ WARN ]`` lines (a camera that cannot be opened) off the terminal: the CLI says it in one line."""
    import os

    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is first imported
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without cv2.utils.logging
        pass
