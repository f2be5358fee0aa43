"""Everything made from a finished results table, without re-running a model: label decoding
and flicker, selection, segments, crops, clips and the reel, the annotated video, overlays, the
HTML report, the live view's drawing, and output folders written whole.

May import: the top-level shared modules (the results table is read through
:mod:`emoreel.results`), :mod:`emoreel.media`, :mod:`emoreel.model`, :mod:`emoreel.faces`.
Never imports analysis (the table is the contract between them) or batch.
"""
