"""Exceptions with messages that name the problem; the CLI turns them into exit code 2."""


class DosmatgenError(Exception):
    """Base class: anything the user can fix (bad input, missing file, missing key)."""


class DataError(DosmatgenError, ValueError):
    """A structure or DOS record is malformed (wrong shape, NaN, unknown element, ...)."""


class ConfigError(DosmatgenError, ValueError):
    """A configuration file or command-line option is invalid."""


class CheckpointError(DosmatgenError, RuntimeError):
    """A checkpoint is missing, truncated or from an incompatible version."""
