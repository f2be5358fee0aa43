"""Faces in a frame: detectors behind one interface (:mod:`.detect`), the frontal gate and
alignment (:mod:`.align`), the tracker (:mod:`.track`) and known people (:mod:`.identify`).

May import: the top-level shared modules, :mod:`emoreel.media` and :mod:`emoreel.model`
(alignment crops faces to the model card's input geometry). Never imports analysis, outputs or batch.
"""
