"""The same RunSpec twice on CPU gives identical metrics (seeds: torch, numpy, python, data)."""

from __future__ import annotations

import torch

from bench.core.config import validate_suite
from bench.engine.options import ExecOptions
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from tests.conftest import tiny_suite


def test_same_runspec_twice_gives_identical_metrics(tmp_path):
    suite = validate_suite(tiny_suite(methods=[{"name": "vanilla_kd"}]), "test")
    (run,) = expand(suite)
    cpu = torch.device("cpu")
    a = execute(run, ExecOptions(tmp_path / "a", cpu, progress=False))
    b = execute(
        run, ExecOptions(tmp_path / "b", cpu, progress=False)
    )  # teachers retrained from scratch too
    assert a.metrics == b.metrics
    timing = ("epoch_time", "data_time", "step_time")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = execute(
        run, ExecOptions(tmp_path / "a", cpu, progress=False)
    )  # cached teachers: still identical
    assert c.metrics == a.metrics
    assert all(t["cached"] for t in c.teachers)


def test_different_seed_gives_different_training(tmp_path):
    suite = validate_suite(tiny_suite(methods=[{"name": "vanilla_kd"}], seeds=[0, 1]), "test")
    r0, r1 = expand(suite)
    cpu = torch.device("cpu")
    a = execute(r0, ExecOptions(tmp_path, cpu, progress=False))
    b = execute(r1, ExecOptions(tmp_path, cpu, progress=False))
    assert a.history[0]["loss"] != b.history[0]["loss"]
