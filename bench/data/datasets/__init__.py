"""Dataset loaders, one class per dataset (:mod:`bench.data.datasets.loader` says how to
add one). Importing this package registers every built-in loader."""

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
from bench.data.datasets.image_folder import FolderDataset, FolderParams
from bench.data.datasets.loader import Dataset, FileDataset
from bench.data.datasets.mapped import MappedImages
from bench.data.datasets.params import FileParams, Params
from bench.data.datasets.registry import DATASETS

__all__ = [
    "DATASETS",
    "AugmentDefaults",
    "Dataset",
    "DatasetError",
    "FileDataset",
    "FileImages",
    "FileParams",
    "FolderDataset",
    "FolderParams",
    "LabelListing",
    "LabelledImages",
    "NotListed",
    "MappedImages",
    "Params",
    "SourceData",
    "TensorImages",
]
