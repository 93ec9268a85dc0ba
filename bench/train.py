"""The one training loop every student method (and teacher pre-training) shares.

Adam with weight decay, cosine decay per step (methods.md "Total": Adam, lr 5e-4, cosine,
wd 5e-4); the loss is ``sum(weight * term)`` over the plugin's named terms, each logged.
Per epoch: mean of each term, lr, time, and validation accuracy where a val split exists.
The test split is never looked at here (no checkpoint selection on test).
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

from bench.checkpoint import Checkpoint, rng_state, set_rng_state
from bench.config import OptimConfig, SpeedConfig
from bench.data import EpochBatches
from bench.datasets import LabelledImages
from bench.evaluate import evaluate
from bench.health import PROBE_SIZE, representation_health
from bench.speed import SpeedPlan, resolve_speed
from bench.views import Views
from methods.base import Batch, Method

EpochCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite."""


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float | None = None
    best_val_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None  # trainable state at the best val epoch
    train_time: float = 0.0
    resumed_from_epoch: int | None = None  # the checkpoint's epoch when the run resumed


def make_optimizer(params, optim: OptimConfig, steps: int):
    opt = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def fit(
    method: Method,
    train: LabelledImages,
    val: LabelledImages | None,
    views: Views,
    optim: OptimConfig,
    device: torch.device,
    generator: torch.Generator,
    callbacks: list[EpochCallback] = (),
    num_workers: int = 0,
    desc: str = "train",
    progress: bool = True,
    checkpoint: Checkpoint | None = None,
    speed: SpeedConfig | SpeedPlan | None = None,
) -> FitResult:
    """Train ``method``'s trainable parameters for ``optim.epochs`` epochs.

    ``checkpoint``: resume from it when it holds a saved epoch (the restored epochs are
    replayed through ``callbacks`` first, so they always see the whole history in order)
    and save to it every ``checkpoint.every`` epochs. ``speed``: the suite's ``speed:``
    switches (or a resolved plan); ``auto`` is on for CUDA, off on the CPU (bench.speed)."""
    plan = speed if isinstance(speed, SpeedPlan) else resolve_speed(speed, device, num_workers)
    plan.apply_global()
    plan.prepare_module(method)
    loss_terms = plan.compiled(method.loss_terms)
    scaler = plan.make_scaler()
    params = [p for p in method.parameters() if p.requires_grad]
    weights = {k: w for k, w in method.weights().items() if w != 0}
    steps_per_epoch = max(1, len(train) // optim.batch_size)
    opt, sched = make_optimizer(params, optim, optim.epochs * steps_per_epoch)
    result = FitResult()
    first = 1
    saved = checkpoint.load(optim.epochs) if checkpoint is not None else None
    if saved is not None:
        method.load_state_dict(saved["method"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], generator)
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        result.history = list(saved["history"])
        result.best_val_acc, result.best_val_epoch = saved["best_val_acc"], saved["best_val_epoch"]
        result.best_state = saved["best_state"]
        result.train_time = saved["train_time"]
        result.resumed_from_epoch = int(saved["epoch"])
        first = result.resumed_from_epoch + 1
        for record in result.history:
            for callback in callbacks:
                callback(record["epoch"], record)
    batches = EpochBatches(
        train,
        optim.batch_size,
        True,
        generator,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=plan.pin_memory,
        persistent_workers=plan.persistent_workers,
    )
    # a fixed validation batch for the per-epoch representation health (bench.health)
    probe = None
    if val is not None and len(val) > 1:
        probe = torch.stack([val[i][0] for i in range(min(PROBE_SIZE, len(val)))])
        probe = views.test(probe.to(device))
    bar = tqdm(range(first, optim.epochs + 1), desc=desc, leave=False, disable=not progress)
    for epoch in bar:
        method.train()
        for t in method.teachers:
            t.eval()
        start = time.perf_counter()
        sums: dict[str, float] = {}
        n_steps = 0
        data_time = 0.0  # waiting for the next batch (loader / workers)
        waited = time.perf_counter()
        for x, y in batches:
            data_time += time.perf_counter() - waited
            x = plan.to_device(x, device)
            batch = Batch(
                x1=plan.format_input(views.train(x)),
                x2=plan.format_input(views.train(x)) if method.needs_second_view else None,
                y=plan.to_device(y, device) if method.uses_labels else None,
            )
            with plan.autocast():  # views above and evaluation stay in float32
                terms = loss_terms(batch)
                loss = sum(weights[k] * v for k, v in terms.items() if k in weights)
            if not torch.isfinite(loss):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                raise NonFiniteLoss(f"epoch {epoch}: loss is not finite (terms: {bad})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # pass-through unless fp16 on CUDA
            scaler.step(opt)
            scaler.update()
            sched.step()
            n_steps += 1
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            for k, v in terms.items():
                sums[f"loss/{k}"] = sums.get(f"loss/{k}", 0.0) + v.item()
            waited = time.perf_counter()
        epoch_time = time.perf_counter() - start
        result.train_time += epoch_time
        record: dict[str, Any] = {k: v / max(1, n_steps) for k, v in sums.items()}
        # data_time: waiting for batches; step_time: everything else (views, forward,
        # backward, optimiser; .item() syncs the device every step, so this is honest)
        record.update(
            epoch=epoch,
            lr=opt.param_groups[0]["lr"],
            epoch_time=epoch_time,
            data_time=data_time,
            step_time=epoch_time - data_time,
        )
        if val is not None and len(val) > 0:
            method.eval()
            record["val_acc"] = evaluate(method.predict, val, views, None, device)["acc"]
            if probe is not None:
                record.update(representation_health(method.embed, probe))
            if result.best_val_acc is None or record["val_acc"] > result.best_val_acc:
                result.best_val_acc, result.best_val_epoch = record["val_acc"], epoch
                result.best_state = copy.deepcopy(method.state_dict())
        result.history.append(record)
        if checkpoint is not None and checkpoint.due(epoch, optim.epochs):
            checkpoint.save(
                {
                    "epoch": epoch,
                    "method": method.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rng_state(generator),
                    "history": result.history,
                    "best_val_acc": result.best_val_acc,
                    "best_val_epoch": result.best_val_epoch,
                    "best_state": result.best_state,
                    "train_time": result.train_time,
                    "scaler": scaler.state_dict(),
                }
            )
        bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}")
        for callback in callbacks:
            callback(epoch, record)
    method.eval()
    return result
