"""The method-plugin contract (design.md "Method plugin", mdistiller-style).

A plugin is an ``nn.Module`` subclass registered by name. It receives the frozen teachers,
the class layout and its validated params; it owns its student-side modules; it returns
named loss terms for a batch of views (the shared loop sums ``weight * term``); it predicts
logits over the union label space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from bench.models import Classifier, ModelOutput
from bench.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


class NoParams(BaseModel):
    """Params of a method that has none; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class MethodContext:
    """What the harness hands a plugin."""

    teachers: list[Classifier]  # frozen, eval mode, on the device
    task_sizes: list[int]  # classes per teacher, in union order
    build_student: Callable[[], Classifier]  # a fresh student over the union label space
    channels: int
    image_size: int

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)


@dataclass
class Batch:
    """Views of one batch. ``x2`` only when the method asks for it; ``y`` only for methods
    that declare ``uses_labels`` (everything else never sees a training label)."""

    x1: torch.Tensor
    x2: torch.Tensor | None = None
    y: torch.Tensor | None = None


class Method(nn.Module):
    name: ClassVar[str]
    display: ClassVar[str | None] = None  # row label in tables (default: the name)
    Params: ClassVar[type[BaseModel]] = NoParams
    trains: ClassVar[bool] = True  # False: teacher rows / ensemble, evaluation only
    uses_labels: ClassVar[bool] = False

    def __init__(self, ctx: MethodContext, params: BaseModel) -> None:
        super().__init__()
        self.params = params
        # A plain list: teachers are not submodules, so they are neither optimised nor saved.
        self.teachers: list[Classifier] = list(ctx.teachers)
        self.task_sizes = list(ctx.task_sizes)

    @property
    def needs_second_view(self) -> bool:
        return False

    def weights(self) -> dict[str, float]:
        """Weight of each named loss term; terms with weight 0 are never computed."""
        return {}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor | None:
        """Pooled student features (B x D) for the per-epoch health figures
        (:mod:`bench.health`); None for methods without a student."""
        student = getattr(self, "student", None)
        return None if student is None else student(x).feat

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[ModelOutput]:
        return [t(x) for t in self.teachers]


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register("vanilla_kd") class VanillaKD(Method): ...``."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return add
