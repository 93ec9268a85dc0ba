"""Dataset loaders. Importing this package registers every built-in loader."""

from bench.datasets import (  # noqa: F401  (registers loaders)
    cifar10,
    cub200,
    digits,
    fgvc_aircraft,
    image_folder,
    merge,
    mnist,
    stanford_cars,
    stanford_dogs,
)
from bench.datasets.base import (
    AugmentDefaults,
    FileImages,
    LabelledImages,
    LabelListing,
    NotListed,
    SourceData,
    TensorImages,
)
from bench.datasets.errors import DatasetError
from bench.datasets.mapped import MappedImages
from bench.datasets.registry import DATASETS

__all__ = [
    "DATASETS",
    "AugmentDefaults",
    "DatasetError",
    "FileImages",
    "LabelListing",
    "LabelledImages",
    "NotListed",
    "MappedImages",
    "SourceData",
    "TensorImages",
]
