"""User-facing errors.

Every error that a user can cause (a bad config value, a missing or malformed file) is raised as a
:class:`GnnddmError`. The command line prints its message alone (no traceback unless ``verbose=true``)
and exits with status 2.
"""


class GnnddmError(Exception):
    """An error caused by the user's input; its message names the key or file and what would be valid."""


class ConfigError(GnnddmError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(GnnddmError):
    """An input file is missing, unreadable or lacks what is needed."""


class OutputError(GnnddmError):
    """A file of the run cannot be written (a full disk, a read-only folder); the message names it."""


class TrainingDivergedError(GnnddmError):
    """The loss became NaN or exploded."""
