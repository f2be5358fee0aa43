"""emoreel: find the moments in a video where people show a chosen emotion."""

__version__ = "0.1.0"
