"""Types of the loaders' params, precise enough for the plan-time check
(:func:`bench.experiment.preflight.params_model` reads a loader's signature, ``Annotated``
constraints included): a typo'd key or an out-of-range value fails the dry-run, naming
the key, before any data is read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

Size = Annotated[int, Field(ge=1)]  # pixels (image_size, load_size)
PerClass = Annotated[int, Field(ge=1)]  # images kept per class
Channels = Literal[1, 3]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]  # a test split's share
