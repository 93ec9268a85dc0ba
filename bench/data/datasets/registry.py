"""The dataset registry: name -> the loader (a :class:`bench.data.datasets.loader.Dataset`
instance, registered by its class line ``class X(Dataset, name="x")``)."""

from bench.core.registry import Registry

DATASETS = Registry("dataset")
