"""Host syncs per training step of every student method (goal: 0).

One step of the loop = ``make_batch`` (host batch -> views on the device) + the real
``bench.engine.train.train_step`` + ``LossMeter.add``; the meter's one read per epoch is counted
apart. Where CUDA is, ``torch.cuda.set_sync_debug_mode("warn")`` reports every
synchronising CUDA call, and the warnings are counted. On the CPU there is nothing to
synchronise with, so the proxy counts the Python calls that would wait for a GPU: a
tensor's ``item``, ``__bool__``, ``__float__``, ``__int__``, ``tolist``, ``numpy`` and
``cpu``, made from any code but ``torch.optim`` (Adam reads its step counters, which
PyTorch keeps on the host unless ``capturable``: no device sync). The proxy cannot see a
blocking host-to-device copy; the CUDA count does.

The figures go to ``benchmark.extra_info`` and stdout, and the normal test run asserts
the CPU proxy is 0 (a ``.item()`` creeping into a step fails it).
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from contextlib import contextmanager

import pytest
import torch

from bench.data.datasets.base import AugmentDefaults
from bench.data.views import Views
from bench.engine.speed import SpeedPlan
from bench.engine.train import LossMeter, make_batch, train_step
from tests.benchmarks.steps import DEVICE, TRAINED, method_training, setup_case

HOST_READS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy", "cpu")
STEPS = 3


@contextmanager
def count_host_reads():
    """Patch ``torch.Tensor``'s host reads to count calls (by name) from outside torch.optim."""
    calls: Counter[str] = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counting(name, real):
        def wrapper(self, *args, **kwargs):
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("torch.optim"):
                calls[name] += 1
            return real(self, *args, **kwargs)

        return wrapper

    for name, real in saved.items():
        setattr(torch.Tensor, name, counting(name, real))
    try:
        yield calls
    finally:
        for name, real in saved.items():
            setattr(torch.Tensor, name, real)


@contextmanager
def count_cuda_syncs():
    """Count the synchronising CUDA calls PyTorch's sync debug mode warns about."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode("default")


def loop_steps(name: str):
    """``(one loop step, meter)`` of ``name`` on small_cnn, digits-style augmented views."""
    ctx, *_ = setup_case("small_cnn", {"width": 8}, 16, 8)
    training = method_training(name, ctx, SpeedPlan(device_type=DEVICE.type))
    views = Views(AugmentDefaults(image_size=16), 16, (0.5,) * 3, (0.25,) * 3)  # every op on
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 10, (8,))
    index = torch.randperm(8)
    meter = LossMeter()

    def step():
        batch = make_batch(x, y, training.method, views, training.speed_plan, DEVICE, index, 1, 0)
        meter.add(*train_step(training, batch))

    return step, meter


@pytest.mark.parametrize("name", TRAINED)
def test_host_syncs_per_training_step(benchmark, name):
    step, meter = loop_steps(name)
    step()  # warm-up: first-call allocations, Adam state
    with count_host_reads() as calls:
        for _ in range(STEPS):
            step()
        per_step = sum(calls.values()) / STEPS
        meter.read(epoch=1)
        read_calls = sum(calls.values()) - per_step * STEPS
    info = {"host_reads_per_step": per_step, "host_reads_per_epoch_read": read_calls}
    info.update({f"host_reads:{k}": v for k, v in calls.items()})
    if DEVICE.type == "cuda":
        with count_cuda_syncs() as caught:
            for _ in range(STEPS):
                step()
        info["cuda_syncs_per_step"] = len(caught) / STEPS
        info["cuda_sync_sites"] = sorted({str(w.message)[:80] for w in caught})
    benchmark.extra_info.update(info)
    print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    benchmark.pedantic(step, rounds=3 if not benchmark.disabled else 1)
    assert per_step == 0, f"{name}: {dict(calls)} host reads in {STEPS} steps"
    assert read_calls == 1  # LossMeter.read: one tolist per epoch
