"""Types of the loaders' params, precise enough for the plan-time check
(:mod:`bench.experiment.preflight` validates a suite's ``params:`` against a loader's
:class:`Params` model, ``Annotated`` constraints included): a typo'd key or an
out-of-range value fails the dry-run, naming the key, before any data is read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Size = Annotated[int, Field(ge=1)]  # pixels (image_size, load_size)
PerClass = Annotated[int, Field(ge=1)]  # images kept per class
Channels = Literal[1, 3]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]  # a test split's share


class Params(BaseModel):
    """A loader's ``params:`` (none by default): strict, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)


class FileParams(Params):
    """The params every image-file loader takes (:class:`bench.data.datasets.loader.FileDataset`)."""

    image_size: Size = 224
    load_size: Size | None = None
    channels: Channels = 3
    in_memory: bool | None = None
    skip_corrupt: bool = False
    split_seed: int = 0
    train_per_class: PerClass | None = None
    test_per_class: PerClass | None = None
