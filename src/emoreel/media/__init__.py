"""Frames in and videos out: frame sources (video file, camera, image folder/glob), probing and
reading chosen frames, shot cuts, video encoding with the source's sound, and the built-in example video.

May import: the top-level shared modules only (``types``, ``errors``, ``config``).
Knows nothing about faces, emotions or results.
"""
