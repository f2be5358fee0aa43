"""Extract what the user asked for from a results folder, without re-running any model.

This module gathers the public names of the modules that do the work, so
``from emoreel.outputs.extract import ...`` keeps working:

* :mod:`emoreel.outputs.selection`: :func:`select` turns a :class:`Selection` ("happy faces of
  Anna, prob >= 0.6, at least 1 s in a row") into a row mask over ``results.csv``;
  :func:`find_runs` groups selected rows into continuous runs per track;
* :mod:`emoreel.outputs.segments`: :func:`segments` turns runs into padded, merged frame ranges (clips);
* :mod:`emoreel.outputs.crops`: :func:`write_crops`, :func:`contact_sheet`, :func:`best_per_track`;
* :mod:`emoreel.outputs.clips`: :func:`write_segments` (clips and the highlight reel) and :func:`annotate`;
* :mod:`emoreel.outputs.live`: :func:`live_frames` runs the real pipeline on a source and yields
  drawn frames (what ``emoreel live`` shows);
* :mod:`emoreel.outputs.source_video`: :func:`resolve_video`, the analyzed video checked against the results;
* :mod:`emoreel.outputs.output_dir`: :class:`OutputDir`, output folders written whole or not at all.
"""

from __future__ import annotations

from .clips import (SEGMENT_COLUMNS, ProgressFn, annotate, clip_name, frame_timeline, write_clips, write_reel,
                    write_segments)  # fmt: skip
from .crops import (MANIFEST_COLUMNS, SHEET_CAPTION_PX, Crop, best_per_track, contact_sheet, crop_name, training_spec,
                    write_crops)  # fmt: skip
from .live import gui_available, live_frames
from .output_dir import OUTPUT_MANIFEST, OutputDir
from .segments import DEFAULT_MIN_SHARE, Segment, fill_on_screen, recorded_cuts, segments
from .selection import (Run, Selection, confident_min_prob, continuity_gap, find_runs, other_emotion_frames, select,
                        selection_labels, stride)  # fmt: skip
from .source_video import resolve_video

__all__ = [
    "DEFAULT_MIN_SHARE", "MANIFEST_COLUMNS", "OUTPUT_MANIFEST", "SEGMENT_COLUMNS", "SHEET_CAPTION_PX",
    "Crop", "OutputDir", "ProgressFn", "Run", "Segment", "Selection",
    "annotate", "best_per_track", "clip_name", "confident_min_prob", "contact_sheet", "continuity_gap", "crop_name",
    "fill_on_screen", "find_runs", "frame_timeline", "gui_available", "live_frames", "other_emotion_frames", "recorded_cuts", "resolve_video",
    "segments", "select", "selection_labels", "stride", "training_spec", "write_clips", "write_crops", "write_reel",
    "write_segments",
]  # fmt: skip
