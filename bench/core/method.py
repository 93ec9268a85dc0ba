"""The method contract (mdistiller-style): what the training loop gives a method, and what a
method gives back. Plugins live in ``methods/``, one file each, registered by name; how to
write one: docs/methods.md "Writing a method".

A method is an ``nn.Module`` built from a :class:`MethodContext` (the frozen teachers, the
class layout, a student factory, the training set's size and the run's length) and its
validated params. The base builds its student (``self.student``, unless
``builds_student = False``) and predicts with it; the method owns its other student-side
modules and returns named loss terms for a :class:`Batch`, each as a function that the base
calls only when the term's weight is not 0 (:meth:`Method.compute_terms`; the loop sums
``weight * term``). Beyond that, a method may

* read intermediate stages of any model (``Classifier.forward_intermediates``,
  ``Classifier.stage_channels``; :meth:`Method.teacher_stages` for the frozen teachers);
* use the batch's sample indices, epoch and global step (memory banks, warm-ups);
* declare its own optimiser parameter groups (:meth:`Method.param_groups`) and learning-rate
  schedule (:meth:`Method.lr_schedule`);
* act after every optimiser step (:meth:`Method.on_step_end`: EMA, memory-bank updates).

The defaults of all four leave the loop exactly as the suite's recipe says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bench.core.models import Classifier, ModelOutput
from bench.core.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

#: A loss weight in a method's params: a float >= 0 (0 turns the term off).
Weight = Annotated[float, Field(ge=0)]

#: What :meth:`Method.loss_terms` gives for one term: a function of no arguments that computes
#: it (called only when the term's weight is not 0), or the tensor itself.
Term = Callable[[], torch.Tensor] | torch.Tensor


class NoParams(BaseModel):
    """Params of a method that has none; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class MethodContext:
    """What the harness hands a method when it builds it."""

    teachers: list[Classifier]  # frozen, eval mode, on the device
    task_sizes: list[int]  # classes per teacher, in union order
    build_student: Callable[[], Classifier]  # a fresh student over the union label space
    channels: int
    image_size: int
    train_size: int = 0  # images in the training set (Batch.index < train_size)
    epochs: int = 0  # epochs the run trains
    steps_per_epoch: int = 0  # optimiser steps per epoch

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)


@dataclass
class Batch:
    """One training batch. ``x2`` only when the method asks for it; ``y`` only for methods
    that declare ``uses_labels`` (everything else never sees a training label).
    ``index``: the samples' indices in the training set (on the device); ``epoch``:
    1-based; ``step``: the global optimiser step this batch is for, 0-based."""

    x1: torch.Tensor
    x2: torch.Tensor | None = None
    y: torch.Tensor | None = None
    index: torch.Tensor | None = None
    epoch: int = 1
    step: int = 0


class Method(nn.Module):
    name: ClassVar[str]
    display: ClassVar[str | None] = None  # row label in tables (default: the name)
    Params: ClassVar[type[BaseModel]] = NoParams
    trains: ClassVar[bool] = True  # False: teacher rows / ensemble, evaluation only
    uses_labels: ClassVar[bool] = False
    # False: the method has no student (teacher rows, ensemble) and defines its own predict.
    builds_student: ClassVar[bool] = True
    # Each loss term's weight: the name of the Params field that holds it, or a fixed
    # number. :meth:`objective` reads it, so the weights are known without a model.
    term_weights: ClassVar[dict[str, str | float]] = {}

    def __init__(self, ctx: MethodContext, params: BaseModel) -> None:
        super().__init__()
        self.params = params
        # A plain list: teachers are not submodules, so they are neither optimised nor saved.
        self.teachers: list[Classifier] = list(ctx.teachers)
        self.task_sizes = list(ctx.task_sizes)
        if self.builds_student:
            # Built here, before anything a subclass builds: the student's parameters are
            # always the first the run's seed draws.
            self.student: Classifier = ctx.build_student()

    @property
    def needs_second_view(self) -> bool:
        return False

    def weights(self) -> dict[str, float]:
        """Weight of each named loss term; terms with weight 0 are never computed.
        Default: :meth:`objective` of the method's params. Fixed for the run: read once,
        by :attr:`active_weights`."""
        return self.objective(self.params)

    @cached_property
    def active_weights(self) -> dict[str, float]:
        """The terms that are on, with their weights (every non-zero one of
        :meth:`weights`, in its order); computed once. ``"name" in self.active_weights``
        is how a method asks whether to build or run a term's parts."""
        return {k: w for k, w in self.weights().items() if w != 0}

    @classmethod
    def rows(
        cls, params: dict[str, Any], label: str, n_tasks: Callable[[], int]
    ) -> list[tuple[dict[str, Any], str]]:
        """The table rows one configured point of this method makes, each as (validated
        params, row label): one by default. A method may fan out, as the teacher row does
        (one row per teacher task); ``n_tasks()`` counts the column's teacher tasks, asked
        only when called (it may have to load the data)."""
        return [(params, label)]

    @classmethod
    def objective(cls, params: BaseModel) -> dict[str, float]:
        """The loss terms and their weights for validated ``params``, from
        :attr:`term_weights` (no model built: what the dry-run prints)."""
        return {
            term: float(getattr(params, w) if isinstance(w, str) else w)
            for term, w in cls.term_weights.items()
        }

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        """The method's loss terms on ``batch``, by name, each as a function of no arguments
        that computes it (or the tensor, for a term that is never off). Work that several
        terms share is done here, before the functions; :meth:`compute_terms` calls only
        the functions of the active terms, in this dict's order."""
        raise NotImplementedError

    def compute_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The active terms of :meth:`loss_terms` on ``batch``, computed, in its order (what
        the loop weighs and sums). A term at weight 0 is never computed: its function is not
        called, and a tensor given for it is an error (it was computed anyway)."""
        active, known = self.active_weights, self.weights()
        out: dict[str, torch.Tensor] = {}
        for name, term in self.loss_terms(batch).items():
            if name not in known:
                raise ValueError(
                    f"{type(self).__name__}: loss term {name!r} has no weight in weights()"
                )
            if name not in active:
                if isinstance(term, torch.Tensor):
                    raise ValueError(
                        f"{type(self).__name__}: loss term {name!r} has weight 0 but was computed; give "
                        "it as a function so that it is only called when it is on"
                    )
                continue
            out[name] = term if isinstance(term, torch.Tensor) else term()
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the union label space (B x sum(task_sizes)). Default: the student's."""
        if not self.builds_student:
            raise NotImplementedError(f"{type(self).__name__} has no student: define predict")
        return self.student(x).logits

    def embed(self, x: torch.Tensor) -> torch.Tensor | None:
        """Pooled student features (B x D) for the per-epoch health figures
        (:mod:`bench.engine.health`); None for methods without a student."""
        return self.student(x).feat if self.builds_student else None

    def param_groups(self, lr: float) -> list[dict[str, Any]] | None:
        """Optimiser parameter groups (``{"params": [...], "lr": ...}``; keys left out take
        the suite's values); together they must hold every trainable parameter once.
        None (default): one group, every trainable parameter at the suite's ``lr``."""
        return None

    def lr_schedule(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule, stepped after every optimiser step (``total_steps``
        in the run). None (default): the suite's ``optim.schedule``."""
        return None

    @classmethod
    def legacy_params(cls, params: dict[str, Any]) -> dict[str, Any] | None:
        """The params dump earlier versions filed this method's runs under, when its
        params changed shape since (so :mod:`bench.experiment.migrate` finds those finished runs);
        None: unchanged."""
        return None

    def on_step_end(self, step: int) -> None:
        """Called after every optimiser (and schedule) step ``step`` (0-based, global)."""

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[ModelOutput]:
        return [t(x) for t in self.teachers]

    @torch.no_grad()
    def teacher_stages(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[tuple[ModelOutput, list[torch.Tensor]]]:
        """Each teacher's output and its intermediate stages ``indices`` (one pass each)."""
        return [t.forward_intermediates(x, indices) for t in self.teachers]


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register("vanilla_kd") class VanillaKD(Method): ...``."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return add
