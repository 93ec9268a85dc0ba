"""Dataset loaders. Importing this package registers every built-in loader."""

from bench.datasets import digits  # noqa: F401  (registers loaders)
from bench.datasets.base import (
    AugmentDefaults,
    DatasetError,
    FileImages,
    LabelledImages,
    SourceData,
    TensorImages,
)
from bench.datasets.registry import DATASETS

__all__ = [
    "DATASETS",
    "AugmentDefaults",
    "DatasetError",
    "FileImages",
    "LabelledImages",
    "SourceData",
    "TensorImages",
]
