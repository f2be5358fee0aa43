"""emoreel: find the moments in a video where people show a chosen emotion.

The public API (the CLI only wraps it)::

    import emoreel
    for ob in emoreel.analyze("movie.mp4", every=2):       # Observation per face per frame
        ...
    emoreel.analyze_to_dir("movie.mp4", "out/")            # results.csv + run.json
    res = emoreel.load_results("out/")                     # read back, no models needed

Names are imported lazily so ``import emoreel`` stays cheap.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "analyze": "analysis.run",
    "analyze_to_dir": "analysis.run",
    "Analyzer": "analysis.analyzer",
    "AnalyzeOptions": "config",
    "load_results": "results",
    "Results": "results",
    "Faces": "types",
    "Frame": "types",
    "Observation": "types",
    "VideoInfo": "types",
    "EMOTIONS": "types",
    "EmotionModel": "model.emotion",
    "create_detector": "faces.detect",
    "FaceDetector": "faces.detect",
    "open_source": "media.video",
    "EmoreelError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'emoreel' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (``__all__``) along with the module's own attributes, for ``dir(emoreel)`` and completion."""
    return sorted(set(globals()) | set(__all__))
