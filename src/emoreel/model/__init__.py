"""The emotion network and everything about it: the ONNX runtime wrapper and its test-time views
(:mod:`.emotion`), which shipped copy runs by default (:mod:`.choice`), smoothing its
probabilities over a track (:mod:`.smooth`), labelled datasets, degradations, evaluation on
labelled crops, and training/export (:mod:`.training`).

May import: the top-level shared modules and :mod:`emoreel.media`. Never imports faces
(the model sees crops, not frames), analysis, outputs or batch.
"""
