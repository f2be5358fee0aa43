"""From a video to results.csv: the stages of one frame (:mod:`.stages`: detect, gate, align,
classify, track, identify, smooth, each a frame and its faces in, faces out), the
:class:`~.analyzer.Analyzer` that composes them for each mode, the fast work schedule, the frame loop,
``analyze``/``analyze_to_dir``, resuming an interrupted run and stitching a video analysed in parts.

May import: the top-level shared modules (the results table in :mod:`emoreel.results` is
the contract with outputs), :mod:`emoreel.media`, :mod:`emoreel.model`, :mod:`emoreel.faces`.
Never imports outputs or batch.
"""
