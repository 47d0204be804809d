"""Errors a user can cause and fix.

The CLI prints these as one line (no traceback): the message names the file or
value at fault and says what to do about it.
"""


class CxrsslError(Exception):
    """An error caused by input or settings, with a message fit for the user."""


class ManifestError(CxrsslError):
    """The manifest table is malformed or points at files that are not there."""


class ConfigError(CxrsslError):
    """A configuration value is invalid."""


class TrainingDiverged(CxrsslError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ProbeError(CxrsslError):
    """A task the linear probe cannot be fitted or judged on (one class, no fold with both, ...)."""
