"""Dataset loaders. Importing this package registers every built-in loader."""

from bench.data.datasets import (  # noqa: F401  (registers loaders)
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
from bench.data.datasets.base import (
    AugmentDefaults,
    FileImages,
    LabelledImages,
    LabelListing,
    NotListed,
    SourceData,
    TensorImages,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.mapped import MappedImages
from bench.data.datasets.registry import DATASETS

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
