"""What the step benchmarks share: a method's real training step (``bench.engine.train.train_step``
with its ``Training``), the compute floor it is compared with, and the device to time on.

The floor is what any method training this student on these views must spend: for a
distillation method, the frozen teachers' forward on ``x1`` (no grad) + the student's
forward and backward on ``x1`` (and on ``x2`` when the method takes a second view) + the
Adam step on the student; for ``supervised`` (no teachers) the student alone.
"""

from __future__ import annotations

import os
import time

import torch

from bench.core.config import OptimConfig
from bench.core.models import build_model
from bench.engine.speed import SpeedPlan
from bench.engine.train import Training, make_optimizer, make_training, train_step
from methods import METHODS, Batch, MethodContext

THREADS = os.environ.get("KA_BENCH_THREADS")  # torch threads (default: tests/conftest.py's)
TASKS = [5, 5]
TRAINED = [n for n in METHODS.names() if METHODS.get(n).trains]  # every student method
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_case(arch: str, params: dict, px: int, batch: int, device=DEVICE):
    """Two frozen teachers, a student factory and two random views, on ``device``."""
    if THREADS:
        torch.set_num_threads(int(THREADS))
    torch.manual_seed(0)

    def model(n):
        return build_model(arch, num_classes=n, in_channels=3, image_size=px, **params).to(device)

    teachers = [model(n).eval().requires_grad_(False) for n in TASKS]
    ctx = MethodContext(teachers, TASKS, lambda: model(sum(TASKS)), 3, px)
    x1 = torch.randn(batch, 3, px, px, device=device)
    x2 = torch.randn(batch, 3, px, px, device=device)
    y = torch.randint(0, sum(TASKS), (batch,), device=device)
    return ctx, x1, x2, y


def method_training(name: str, ctx: MethodContext, plan: SpeedPlan | None = None) -> Training:
    cls = METHODS.get(name)
    method = cls(ctx, cls.Params()).to(ctx.teachers[0].fc.weight.device)
    return make_training(method, OptimConfig(), 10**6, plan or SpeedPlan())


def method_batch(training: Training, x1, x2, y) -> Batch:
    method = training.method
    return Batch(
        x1=x1,
        x2=x2 if method.needs_second_view else None,
        y=y if method.uses_labels else None,
    )


def method_step(training: Training, batch: Batch):
    """The loop's own step (``bench.engine.train.train_step``), as a no-argument call."""
    training.method.train()

    def step():
        train_step(training, batch)

    return step


def floor_kind(method) -> str:
    """``student`` (no teachers), ``1-view`` or ``2-view``: the floor ``method`` is held to."""
    if method.uses_labels:
        return "student"
    return "2-view" if method.needs_second_view else "1-view"


def floor_step(kind: str, ctx: MethodContext, x1, x2):
    """Teachers' forward on x1 (not for ``student``) + student forward/backward on x1 (and
    x2 for ``2-view``) + Adam step."""
    student = ctx.build_student().train()
    opt = make_optimizer(list(student.parameters()), OptimConfig())
    views = [x1, x2] if kind == "2-view" else [x1]

    def step():
        if kind != "student":
            with torch.no_grad():
                for t in ctx.teachers:
                    t(x1)
        loss = sum(student(x).logits.square().mean() for x in views)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


class Timed:
    """Wraps a step; records wall time and this process's CPU time of each call (the device
    is synchronised around a call on CUDA: that is the benchmark's, not the loop's). On a
    shared, oversubscribed machine CPU time (one thread) is the steadier measure: it
    excludes the time the process waits for a core."""

    def __init__(self, step) -> None:
        self.step, self.wall, self.cpu = step, [], []

    def __call__(self) -> None:
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        self.step()
        sync()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
