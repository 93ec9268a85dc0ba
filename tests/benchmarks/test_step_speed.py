"""Each student method's real training step against its compute floor.

The step is the loop's own ``bench.engine.train.train_step`` (loss terms -> ``sum(weight * term)``
-> backward -> Adam -> schedule); the floor is defined in ``tests/benchmarks/steps.py``
(teachers' forward + the student's forward/backward on the views the method takes + Adam).
Views are made beforehand (identical for every method, not what is compared).

Goals (issue 12): ``vanilla_kd`` <= 1.05x its floor, ``cka`` <= 1.10x. Cases: small_cnn and
ResNet-18 at 32 px on any device; ResNet-50 at 224 px only where CUDA is. All steps of a
case are timed interleaved (floors, then every method, round after round) and compared by
their medians, so that load from other processes hits all alike; ratios by wall time and
by process CPU time go to ``benchmark.extra_info`` (and stdout). No timing is asserted.

    pytest tests/benchmarks --benchmark-enable --benchmark-only -s
    KA_BENCH_THREADS=1 pytest tests/benchmarks ...   # one thread: steadier on a busy machine
    python tests/benchmarks/report.py                 # all of it -> results/BENCHMARKS.md

With benchmarks disabled (the normal test run) the small_cnn case runs one tiny step of each
kind.
"""

from __future__ import annotations

import statistics

import pytest

from tests.benchmarks.steps import (
    DEVICE,
    TRAINED,
    Timed,
    floor_kind,
    floor_step,
    method_batch,
    method_step,
    method_training,
    setup_case,
)

CASES = {  # arch, params, image size, batch, timed rounds
    "small_cnn-32px": ("small_cnn", {"width": 32}, 32, 64, 9),
    "resnet18-32px": ("resnet18", {}, 32, 64, 5),
    "resnet50-224px": ("resnet50", {}, 224, 64, 20),
}
GPU_ONLY = {"resnet50-224px"}


@pytest.mark.parametrize("case", list(CASES))
def test_train_step_vs_compute_floor(benchmark, case):
    arch, params, px, batch, rounds = CASES[case]
    if case in GPU_ONLY and DEVICE.type != "cuda":
        pytest.skip(f"{case}: only where CUDA is")
    enabled = not benchmark.disabled
    if not enabled:  # a plain test: one small step of each kind, just the code path
        if case != "small_cnn-32px":
            pytest.skip(f"{case}: with --benchmark-enable (small_cnn runs the same code)")
        batch, rounds, px = 4, 1, 16
    ctx, x1, x2, y = setup_case(arch, params, px, batch)
    steps, kinds = {}, {}
    for name in TRAINED:
        training = method_training(name, ctx)
        steps[name] = method_step(training, method_batch(training, x1, x2, y))
        kinds[name] = floor_kind(training.method)
    floors = {f"floor:{k}": floor_step(k, ctx, x1, x2) for k in sorted(set(kinds.values()))}
    timed = {k: Timed(s) for k, s in {**floors, **steps}.items()}
    if enabled:  # warm-up: allocator, oneDNN / cuDNN caches, Adam state
        for step in timed.values():
            step.step()
            step.step()
    others = [t for k, t in timed.items() if k != "cka"]

    def setup():  # untimed by pytest-benchmark: the other steps, interleaved with cka
        for t in others:
            t()

    # The benchmark's own row times the cka step; the floors and methods run between.
    benchmark.pedantic(timed["cka"], setup=setup, rounds=rounds)
    info: dict[str, float | int | str] = {"batch": batch, "px": px, "device": DEVICE.type}
    for clock in ("wall", "cpu"):
        med = {k: statistics.median(getattr(t, clock)) for k, t in timed.items()}
        info.update({f"{k}_{clock}_ms": round(1e3 * v, 2) for k, v in med.items()})
        for name, kind in kinds.items():
            info[f"{name}/floor_{clock}"] = round(med[name] / med[f"floor:{kind}"], 3)
    info.update({f"{name}_floor": kind for name, kind in kinds.items()})
    benchmark.extra_info.update(info)
    print(f"\n{case}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    assert set(kinds) == set(TRAINED) and all(len(t.wall) == rounds for t in timed.values())
