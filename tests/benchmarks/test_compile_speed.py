"""``speed.compile`` against eager: the compiled training step, and what compiling cost.

Two identical setups (same seed) train ``vanilla_kd`` and ``cka``: one eager, one with the
models compiled as the loop compiles them (``SpeedPlan.compile_models``: the student and
the teachers; ``reduce-overhead``, i.e. CUDA graphs, on CUDA, the default mode on the CPU).
The first ``warmup_steps`` compiled steps are timed as the compile cost (inductor's
on-disk cache in a fresh directory: a cold compile, as on a new machine; the loop reports
the same figure as ``timings.compile``); the steady steps are then timed interleaved with
the eager ones. Reported: ``compiled/eager`` per method (below 1: compiling pays off per
step; it pays off per run after ``compile_s / (eager - compiled)`` steps). No timing is
asserted. Only with ``--benchmark-enable``: a cold inductor compile takes minutes on a
small shared CPU.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from bench.core.config import SpeedConfig
from bench.engine.speed import resolve_speed
from tests.benchmarks.steps import (
    DEVICE,
    Timed,
    method_batch,
    method_step,
    method_training,
    setup_case,
    sync,
)

METHODS_TIMED = ("vanilla_kd", "cka")
CASES = {"small_cnn-32px": ("small_cnn", {"width": 32}, 32, 64, 9)}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_step_vs_eager(benchmark, case, tmp_path, monkeypatch):
    if benchmark.disabled:
        pytest.skip("compiles with inductor: only with --benchmark-enable")
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold compile
    arch, params, px, batch, rounds = CASES[case]
    plan = resolve_speed(SpeedConfig(compile=True), DEVICE)
    eager, compiled, info = {}, {}, {"mode": plan.compile_mode, "batch": batch, "px": px}
    for name in METHODS_TIMED:
        for steps, speed in ((eager, None), (compiled, plan)):
            ctx, x1, x2, y = setup_case(arch, params, px, batch)  # own teachers: compiled in place
            training = method_training(name, ctx, speed)
            if speed is not None:
                plan.compile_models(training.method)
            steps[name] = method_step(training, method_batch(training, x1, x2, y))
        start = time.perf_counter()
        for _ in range(plan.warmup_steps):
            compiled[name]()
        sync()
        info[f"{name}_compile_s"] = round(time.perf_counter() - start, 2)
        eager[name]()  # eager warm-up
    timed = {f"{n}:{kind}": Timed(s[n]) for n in METHODS_TIMED
             for kind, s in (("eager", eager), ("compiled", compiled))}  # fmt: skip
    first = next(iter(timed))

    def setup():
        for k, t in timed.items():
            if k != first:
                t()

    benchmark.pedantic(timed[first], setup=setup, rounds=rounds)
    for clock in ("wall", "cpu"):
        med = {k: statistics.median(getattr(t, clock)) for k, t in timed.items()}
        info.update({f"{k}_{clock}_ms": round(1e3 * v, 2) for k, v in med.items()})
        for n in METHODS_TIMED:
            info[f"{n}:compiled/eager_{clock}"] = round(med[f"{n}:compiled"] / med[f"{n}:eager"], 3)
    benchmark.extra_info.update(info)
    print(f"\n{case}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
