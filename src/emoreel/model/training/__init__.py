"""Training emoreel's facial-emotion CNN with PyTorch (``emoreel[train]``), by concern: the
training loop, checkpoints, ONNX export and int8 quantisation, and the architectures.

May import: the top-level shared modules and the rest of :mod:`emoreel.model`.
"""
