"""Typed errors: input errors the user can fix (shown as one line) versus bugs (shown with a traceback).

Everything the user gave or asked for that cannot be used is a :class:`PathupError`; the CLI prints
those as one line and exits with status 2. Any other exception is a bug in napari-pathup (or in a
library it uses) and the CLI lets it through with its traceback. Subclasses that callers may
already catch as built-in exceptions also derive from them (``ValueError``, ``OSError``).
"""


class PathupError(Exception):
    """Base class: something the user asked for or gave us cannot be used as it is."""


class ModelLoadError(PathupError, ValueError):
    """A model folder is missing a component or holds one that is malformed."""


class InputError(PathupError, ValueError):
    """An input file or folder is missing, unreadable or of the wrong kind."""


class SettingsError(InputError):
    """A setting is out of range, not finite, or impossible for this model (names the setting and flag)."""


class ImageTooLargeError(InputError):
    """An image declares more pixels than the configured limit (checked from its header, before decoding)."""


class RunTooLargeError(InputError):
    """The run's estimated work, memory or disk need is above the budget and was not confirmed."""


class OutputError(PathupError, OSError):
    """The output cannot be written (permissions, read-only file system, full disk, ...)."""


class OutputExistsError(PathupError, FileExistsError):
    """The output exists and ``overwrite`` was not asked for."""


class SynthesisError(PathupError):
    """A synthesis run failed in a way the user can act on (e.g. its latents became non-finite)."""
