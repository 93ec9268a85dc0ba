"""Errors the CLI turns into one line and a non-zero exit (no traceback)."""


class BenchError(Exception):
    """Base for user-facing errors: bad config, missing file, failed dataset load."""


class ConfigError(BenchError):
    """A suite or tune file (or a --set override) does not validate."""


class StorageError(BenchError):
    """The results directory cannot take a write (full disk, read-only): the run stops,
    what was written before stays intact."""
