"""CLI subcommands: each module has ``register(subparsers)`` and keeps heavy imports inside its run function."""

COMMANDS = ("analyze", "extract", "annotate", "live", "report", "train", "evaluate", "export", "batch")


def quiet_opencv() -> None:
    """Keep OpenCV's ``[ WARN ]`` lines (a camera that cannot be opened) off the terminal: the CLI says it in one line."""
    import os

    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is first imported
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # libav's own lines about damaged frames: quiet
    try:
        import cv2
    except ImportError:  # a training-only machine (torch and numpy): nothing to quieten
        return

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without cv2.utils.logging
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``timeout``, ``docker stop``, a closed terminal): stops like Ctrl-C, files are finished."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_on_signals():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (a KeyboardInterrupt), so every command cleans up as on Ctrl-C."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Terminated(signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            old[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    return restore
