"""The dataset registry: ``@DATASETS.register("name")`` on a loader function
``(root: Path | None, **params) -> SourceData``."""

from bench.core.registry import Registry

DATASETS = Registry("dataset")
