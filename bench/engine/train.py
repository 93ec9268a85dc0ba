"""The one training loop every student method (and teacher pre-training) shares.

Adam with weight decay, cosine decay per step (methods.md "Total": Adam, lr 5e-4, cosine,
wd 5e-4), unless the method declares its own parameter groups or schedule
(:class:`bench.core.method.Method`); the loss is ``sum(weight * term)`` over the method's named
terms, each logged; the method's ``on_step_end`` follows every optimiser step.
Per epoch: mean of each term, lr, time, validation accuracy where a val split exists and,
on CUDA, GPU utilisation and peak memory (:mod:`bench.engine.utilisation`). The test split is
never looked at here (no checkpoint selection on test).

The step never waits for the host: :func:`train_step` returns its loss terms as device
tensors, :class:`LossMeter` sums them on the device (float64, so the epoch means are the
same numbers a per-step ``.item()`` gave) and keeps, per term, the first step where it was
not finite; both are read once per epoch. A NaN or inf therefore still fails the run, as
:class:`NonFiniteLoss` naming the epoch, the step and the term, at the end of that epoch
(before its validation, record or checkpoint).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.core.config import OptimConfig, SpeedConfig
from bench.core.method import Batch, Method
from bench.data.datasets import LabelledImages
from bench.data.prepare import EpochBatches
from bench.data.views import Views
from bench.engine.checkpoint import Checkpoint, rng_state, set_rng_state
from bench.engine.evaluate import evaluate
from bench.engine.health import PROBE_SIZE, representation_health
from bench.engine.speed import SpeedPlan, resolve_speed
from bench.engine.utilisation import EpochUsage

EpochCallback = Callable[[int, dict[str, Any]], None]

PROGRESS_EVERY = 50  # steps between progress-bar loss updates (one host sync each)
TOTAL = "total"  # the term name NonFiniteLoss gives the weighted sum when no term is bad


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite: ``epoch``, ``step`` (1-based, in the epoch) and
    ``term`` (the method's term name, or ``"total"`` for the weighted sum alone)."""

    def __init__(self, epoch: int, step: int, term: str) -> None:
        self.epoch, self.step, self.term = epoch, step, term
        super().__init__(f"epoch {epoch} step {step}: loss term {term!r} is not finite")

    def __reduce__(self):  # picklable across worker processes despite the custom __init__
        return type(self), (self.epoch, self.step, self.term)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float | None = None
    best_val_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None  # trainable state at the best val epoch
    train_time: float = 0.0
    resumed_from_epoch: int | None = None  # the checkpoint's epoch when the run resumed
    compile_time: float | None = None  # seconds the first steps spent compiling (compile on)


def epoch_steps(train_size: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``train_size`` images: the last partial batch is
    dropped, but a non-empty split takes at least one (a split smaller than a batch is one
    smaller batch); an empty split takes none. What :func:`fit` runs, the schedule's
    length, a method's ``steps_per_epoch`` and the estimate's step count."""
    return max(1, train_size // batch_size) if train_size > 0 else 0


def make_optimizer(params, optim: OptimConfig) -> torch.optim.Adam:
    """Adam over ``params`` (tensors or parameter groups) at the suite's lr and decay."""
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def make_schedule(opt, optim: OptimConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The suite's schedule over ``steps`` optimiser steps: cosine or constant."""
    if optim.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@dataclass
class Training:
    """What one optimiser step needs; built once per run by :func:`make_training`."""

    method: Method
    weights: dict[str, float]  # non-zero weights of the method's terms
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    speed_plan: SpeedPlan
    steps_per_epoch: int  # for the global step number of a batch


def make_training(
    method: Method, optim: OptimConfig, steps: int, speed_plan: SpeedPlan, steps_per_epoch: int = 0
) -> Training:
    """Adam + schedule over ``steps`` steps on the method's trainable parameters: the
    method's own groups and schedule where it declares them, the suite's otherwise."""
    groups = method.param_groups(optim.lr)
    if groups is None:
        groups = [p for p in method.parameters() if p.requires_grad]
    else:
        check_param_groups(method, groups)
    opt = make_optimizer(groups, optim)
    sched = method.lr_schedule(opt, steps)
    if sched is None:
        sched = make_schedule(opt, optim, steps)
    weights = dict(method.active_weights)
    spe = steps_per_epoch or steps  # none given: one epoch of ``steps``
    return Training(method, weights, opt, sched, speed_plan.make_scaler(), speed_plan, spe)


def check_param_groups(method: Method, groups: list[dict[str, Any]]) -> None:
    """Every trainable parameter of ``method`` in exactly one group, and nothing else."""
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    if len(listed) != len(set(listed)) or set(listed) != trainable:
        raise ValueError(
            f"{type(method).__name__}.param_groups: the groups must hold every trainable "
            f"parameter exactly once ({len(listed)} listed, {len(trainable)} trainable)"
        )


def make_batch(
    x, y, method: Method, views: Views, speed_plan: SpeedPlan, device, index=None, epoch=1, step=0
) -> Batch:
    """A host batch -> the method's training views (and sample indices) on the device."""
    x = speed_plan.to_device(x, device)
    return Batch(
        x1=speed_plan.format_input(views.train(x)),
        x2=speed_plan.format_input(views.train(x)) if method.needs_second_view else None,
        y=speed_plan.to_device(y, device) if method.uses_labels else None,
        index=None if index is None else speed_plan.to_device(index, device),
        epoch=epoch,
        step=step,
    )


def train_step(training: Training, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``batch``: loss terms, ``sum(weight * term)``, backward, Adam,
    schedule, the method's ``on_step_end``. Returns the weighted loss and the terms,
    detached, on the device: nothing here waits for the device (except fp16's GradScaler,
    which checks for inf per step)."""
    t = training
    t.speed_plan.begin_step()
    with t.speed_plan.autocast():  # views (made before) and evaluation stay in float32
        terms = t.method.compute_terms(batch)
        loss = sum(t.weights[k] * v for k, v in terms.items() if k in t.weights)
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()  # pass-through unless fp16 on CUDA
    t.scaler.step(t.opt)
    t.scaler.update()
    t.sched.step()
    t.method.on_step_end(batch.step)
    return loss.detach(), {k: v.detach() for k, v in terms.items()}


class LossMeter:
    """An epoch's loss sums on the device, and the first step each value was not finite.

    ``state`` row 0: float64 sums of ``[loss, *terms]`` (float32 -> float64 is exact and
    float64 adds in step order are what a Python float sum of ``.item()`` did); row 1: the
    first 1-based step where that value was NaN/inf (0: none so far)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.state: torch.Tensor | None = None
        self.steps = 0

    @torch.no_grad()
    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([loss, *terms.values()]).double()
        if self.state is None:
            self.names = list(terms)
            self.state = values.new_zeros(2, len(values))
        elif list(terms) != self.names:
            raise RuntimeError(f"loss terms changed within an epoch: {list(terms)}")
        self.steps += 1
        self.state[0].add_(values)
        first_bad = self.state[1]
        first_bad.copy_(
            torch.where(torch.isfinite(values) | (first_bad > 0), first_bad, self.steps)
        )

    def mean_loss(self) -> float:
        """The running mean of the weighted loss (one host sync: progress display only)."""
        return self.state[0, 0].item() / self.steps if self.steps else math.nan

    def read(self, epoch: int) -> dict[str, float]:
        """``{"loss": mean, "loss/<term>": mean, ...}``; the epoch's one host sync. Raises
        :class:`NonFiniteLoss` for the earliest step with a non-finite value (a named term
        before the total)."""
        if self.state is None:
            return {}
        sums, first_bad = self.state.tolist()
        bad = [int(s) for s in first_bad if s > 0]
        if bad:
            step = min(bad)
            order = [*range(1, len(first_bad)), 0]  # the terms, then the weighted sum
            i = next(i for i in order if int(first_bad[i]) == step)
            raise NonFiniteLoss(epoch, step, self.names[i - 1] if i else TOTAL)
        out = {"loss": sums[0] / self.steps}
        out.update({f"loss/{k}": s / self.steps for k, s in zip(self.names, sums[1:])})
        return out


@dataclass
class EpochStats:
    losses: dict[str, float]  # LossMeter.read
    steps: int
    epoch_time: float  # the whole epoch, device work included (read after the sync)
    data_time: float  # waiting for the next batch (loader / workers)
    warmup_time: float | None = None  # the first ``warmup_steps`` steps (when asked)

    @property
    def step_time(self) -> float:
        return self.epoch_time - self.data_time

    def record(self, epoch: int, lr: float) -> dict[str, Any]:
        """The epoch's history entry, before validation: losses, lr (the first group's,
        after the epoch's last step) and times."""
        return {
            **self.losses,
            "epoch": epoch,
            "lr": lr,
            "epoch_time": self.epoch_time,
            "data_time": self.data_time,
            "step_time": self.step_time,  # views, forward, backward, optimiser
        }

    def compile_time(self, warmup_steps: int) -> float | None:
        """Warm-up time beyond what as many steady steps take (the mean of the epoch's
        other steps); the whole warm-up when the epoch has no other step."""
        if self.warmup_time is None:
            return None
        rest = self.steps - warmup_steps
        steady = (self.step_time - self.warmup_time) / rest if rest > 0 else 0.0
        return max(0.0, self.warmup_time - warmup_steps * steady)


def run_epoch(
    training: Training,
    batches,
    views: Views,
    device: torch.device,
    epoch: int,
    warmup_steps: int = 0,
    bar: tqdm | None = None,
) -> EpochStats:
    """Train one pass over ``batches``. ``warmup_steps`` > 0: also time the first that many
    steps (one device sync after them). ``bar``: show the running loss every
    :data:`PROGRESS_EVERY` steps (a host sync each)."""
    method, speed_plan = training.method, training.speed_plan
    method.train()
    for t in method.teachers:
        t.eval()
    meter = LossMeter()
    data_time, warmup_time = 0.0, None
    start = waited = time.perf_counter()
    first_step = (epoch - 1) * training.steps_per_epoch
    for i, (x, y, index) in enumerate(batches):
        data_time += time.perf_counter() - waited
        batch = make_batch(x, y, method, views, speed_plan, device, index, epoch, first_step + i)
        meter.add(*train_step(training, batch))
        if meter.steps == warmup_steps:
            speed_plan.synchronize(device)
            warmup_time = time.perf_counter() - start - data_time
        if bar is not None and meter.steps % PROGRESS_EVERY == 0:
            bar.set_postfix(loss=f"{meter.mean_loss():.3f}", step=meter.steps)
        waited = time.perf_counter()
    losses = meter.read(epoch)  # waits for the device: epoch_time below includes its work
    epoch_time = time.perf_counter() - start
    if warmup_steps and warmup_time is None and meter.steps:  # fewer steps than the warm-up
        warmup_time = epoch_time - data_time
    return EpochStats(losses, meter.steps, epoch_time, data_time, warmup_time)


def health_probe(val: LabelledImages | None, views: Views, device) -> torch.Tensor | None:
    """A fixed validation batch (test-time views) for the per-epoch representation health
    (:mod:`bench.engine.health`); None without a val split of at least 2 images."""
    if val is None or len(val) < 2:
        return None
    images = torch.stack([val[i][0] for i in range(min(PROBE_SIZE, len(val)))])
    return views.test(images.to(device))


def validate(
    method: Method,
    val: LabelledImages | None,
    views: Views,
    device,
    probe: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The epoch's validation figures: ``val_acc`` and, on ``probe`` (a fixed val batch),
    the student's ``feat_cos`` and ``eff_rank``; nothing without a val split."""
    if val is None or len(val) == 0:
        return {}
    method.eval()
    out = {"val_acc": evaluate(method.predict, val, views, None, device)["acc"]}
    if probe is not None:
        out.update(representation_health(method.embed, probe))
    return out


def keep_best(result: FitResult, record: dict[str, Any], method: Method) -> None:
    """Remember the trainable state of the best validation epoch so far."""
    if "val_acc" in record and (
        result.best_val_acc is None or record["val_acc"] > result.best_val_acc
    ):
        result.best_val_acc, result.best_val_epoch = record["val_acc"], record["epoch"]
        result.best_state = copy.deepcopy(method.state_dict())


@dataclass
class Resume:
    """What lets a killed run continue where it stopped: the method, optimiser, schedule
    and scaler state, the data order's generator and the history so far, saved to and
    restored from ``checkpoint`` (None: the run neither saves nor resumes)."""

    checkpoint: Checkpoint | None
    training: Training
    generator: torch.Generator
    result: FitResult

    def restore(self, epochs: int, callbacks: list[EpochCallback] = ()) -> int:
        """Restore the run when the checkpoint holds a saved epoch (the restored epochs
        are replayed through ``callbacks``, so they see the whole history in order).
        Returns the first epoch still to train (1 without a checkpoint)."""
        saved = self.checkpoint.load(epochs) if self.checkpoint is not None else None
        if saved is None:
            return 1
        t, result = self.training, self.result
        t.method.load_state_dict(saved["method"])
        t.opt.load_state_dict(saved["optimizer"])
        t.sched.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], self.generator)
        if saved.get("scaler"):
            t.scaler.load_state_dict(saved["scaler"])
        result.history = list(saved["history"])
        result.best_val_acc, result.best_val_epoch = saved["best_val_acc"], saved["best_val_epoch"]
        result.best_state = saved["best_state"]
        result.train_time = saved["train_time"]
        result.resumed_from_epoch = int(saved["epoch"])
        for record in result.history:
            for callback in callbacks:
                callback(record["epoch"], record)
        return result.resumed_from_epoch + 1

    def save_if_due(self, epoch: int, epochs: int) -> None:
        """Save everything :meth:`restore` needs to continue after ``epoch``, when the
        checkpoint's cadence says so."""
        if self.checkpoint is None or not self.checkpoint.due(epoch, epochs):
            return
        t, result = self.training, self.result
        self.checkpoint.save(
            {
                "epoch": epoch,
                "method": t.method.state_dict(),
                "optimizer": t.opt.state_dict(),
                "scheduler": t.sched.state_dict(),
                "rng": rng_state(self.generator),
                "history": result.history,
                "best_val_acc": result.best_val_acc,
                "best_val_epoch": result.best_val_epoch,
                "best_state": result.best_state,
                "train_time": result.train_time,
                "scaler": t.scaler.state_dict(),
            }
        )


@dataclass(frozen=True)
class FitOptions:
    """How the loop runs, the same for every fit of one invocation: built once from
    :class:`bench.engine.options.ExecOptions` (:meth:`~bench.engine.options.ExecOptions.fit_options`).

    ``speed``: the suite's ``speed:`` switches (or a resolved SpeedPlan); ``auto`` is on for
    CUDA, off on the CPU (:mod:`bench.engine.speed`)."""

    device: torch.device = torch.device("cpu")
    num_workers: int = 0  # DataLoader workers
    progress: bool = True
    speed: SpeedConfig | SpeedPlan | None = None

    def plan(self) -> SpeedPlan:
        """The SpeedPlan these options resolve to on ``device``."""
        if isinstance(self.speed, SpeedPlan):
            return self.speed
        return resolve_speed(self.speed, self.device, self.num_workers)


def start_training(
    method: Method, optim: OptimConfig, speed_plan: SpeedPlan, train_size: int
) -> Training:
    """Apply ``plan`` to ``method`` (its modules prepared and, with ``compile``, compiled
    once) and build its optimiser and schedule over ``optim.epochs`` epochs."""
    speed_plan.apply_global()
    speed_plan.prepare_module(method)
    speed_plan.compile_models(method)
    steps_per_epoch = epoch_steps(train_size, optim.batch_size)
    return make_training(method, optim, optim.epochs * steps_per_epoch, speed_plan, steps_per_epoch)


def fit(
    method: Method,
    train: LabelledImages,
    val: LabelledImages | None,
    views: Views,
    optim: OptimConfig,
    generator: torch.Generator,
    how: FitOptions = FitOptions(),
    *,
    callbacks: list[EpochCallback] = (),
    desc: str = "train",
    checkpoint: Checkpoint | None = None,
    observe: Callable[[Method], dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``method``'s trainable parameters for ``optim.epochs`` epochs, on
    ``how.device`` (:class:`FitOptions`; with ``speed.compile`` the models are compiled
    once here and ``compile_time`` says what that cost).

    ``observe``: figures recorded in each epoch's history after validation that feed no
    decision (the test curve of ``record_test_curve``: :func:`keep_best` reads val only).
    ``checkpoint``: resume from it when it holds a saved epoch and save to it every
    ``checkpoint.every`` epochs."""
    device, speed_plan = how.device, how.plan()
    training = start_training(method, optim, speed_plan, len(train))
    result = FitResult()
    resume = Resume(checkpoint, training, generator, result)
    first = resume.restore(optim.epochs, callbacks)
    batches = EpochBatches(train, optim.batch_size, True, generator, drop_last=True,
                           num_workers=how.num_workers, pin_memory=speed_plan.pin_memory,
                           persistent_workers=speed_plan.persistent_workers)  # fmt: skip
    probe = health_probe(val, views, device)
    usage = EpochUsage.start(device)
    bar = tqdm(range(first, optim.epochs + 1), desc=desc, leave=False, disable=not how.progress)
    try:
        for epoch in bar:
            warmup = speed_plan.warmup_steps if speed_plan.compile and epoch == first else 0
            stats = run_epoch(training, batches, views, device, epoch, warmup, bar if how.progress else None)  # fmt: skip
            result.train_time += stats.epoch_time
            if warmup:
                result.compile_time = stats.compile_time(warmup)
            record = stats.record(epoch, training.opt.param_groups[0]["lr"])
            record.update(validate(method, val, views, device, probe))
            if observe is not None:
                record.update(observe(method))
            record.update(usage.read())
            keep_best(result, record, method)
            result.history.append(record)
            resume.save_if_due(epoch, optim.epochs)
            bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}")
            for callback in callbacks:
                callback(epoch, record)
    finally:
        usage.close()
    method.eval()
    return result
