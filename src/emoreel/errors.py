"""Exceptions the CLI maps to one-line messages and exit codes."""


class EmoreelError(Exception):
    """Base class: a problem with the user's input, reported in one line."""

    exit_code = 2


class InputError(EmoreelError):
    """A video, camera, image folder or option that cannot be used."""


class VideoOpenFailure(InputError):
    """The input could not be opened or decoded as video."""


class OutputError(EmoreelError):
    """The output location cannot be written, or would overwrite results."""


class DataError(EmoreelError):
    """A data set, results file or gallery that cannot be read."""


class ModelError(EmoreelError):
    """A model file or model card that does not satisfy the card contract."""
