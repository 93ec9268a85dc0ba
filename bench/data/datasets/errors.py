"""The loaders' one error type (lowest module of ``bench.data.datasets``: everything imports it)."""


class DatasetError(ValueError):
    """A dataset root is missing or malformed; the message names the expected layout."""
