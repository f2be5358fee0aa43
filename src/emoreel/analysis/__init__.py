"""From a video to results.csv: the :class:`~.analyzer.Analyzer` (one frame's faces through
detect, gate, align, classify, track, identify, smooth), its fast work schedule, the frame
loop, ``analyze``/``analyze_to_dir``, resuming an interrupted run and stitching a video analysed in parts.

May import: the top-level shared modules (the results table in :mod:`emoreel.results` is
the contract with outputs), :mod:`emoreel.media`, :mod:`emoreel.model`, :mod:`emoreel.faces`.
Never imports outputs or batch.
"""
