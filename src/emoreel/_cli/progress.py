"""The CLI's progress line lives in :mod:`emoreel.progress` (shared: ``analyze_to_dir(..., progress=True)`` uses it too)."""

from ..progress import Progress, _hms  # noqa: F401
