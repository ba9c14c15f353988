"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""


class PathupError(Exception):
    """Base class: something the user asked for or gave us cannot be used as it is."""


class ModelLoadError(PathupError, ValueError):
    """A model folder is missing a component or holds one that is malformed."""


class InputError(PathupError, ValueError):
    """An input file or folder is missing, unreadable or of the wrong kind."""


class OutputExistsError(PathupError, FileExistsError):
    """The output exists and ``overwrite`` was not asked for."""


class SynthesisError(PathupError):
    """A synthesis run failed (wraps the engine's exception, e.g. torch's RuntimeError)."""
