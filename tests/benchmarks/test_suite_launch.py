"""Harness overhead of a whole suite, and packed against serial runs (bench.launch.local).

* ``overhead``: a tiny suite run end to end (``run_suite``, serial) against the time its
  runs and teachers spent in the training loop (``timings.train`` and the teachers'
  ``train_time``): ``wall / training`` (1.0 = no overhead; issue 12's goal: <= 1.05 at
  paper scale, where epochs are long; at this toy scale start-up, evaluation and
  bookkeeping weigh far more). With and without MLflow.
* ``packing``: the same N runs (teachers already cached) serially and through
  ``--launcher process --workers N``: ``packed wall / serial wall`` (< 1: packing pays;
  on a CPU the workers split the cores, so expect little; on a GPU with room to spare,
  more) and each run's training time packed against alone.

Ratios go to ``benchmark.extra_info`` and stdout; nothing is asserted about time. Serial
runs use this process's torch threads, each of the N workers 1/N of them (as the process
launcher splits them); ``KA_BENCH_THREADS=1`` compares one thread alone against N
single-threaded runs side by side.

    pytest tests/benchmarks/test_suite_launch.py --benchmark-enable --benchmark-only -s

With benchmarks disabled (the normal test run) the overhead case runs once at toy size.
"""

from __future__ import annotations

import io
import json
import os
import time

import pytest
import torch

from bench.core.config import validate_suite
from bench.launch.suite import run_suite
from tests.conftest import tiny_suite

N_PACKED = 2
THREADS = os.environ.get("KA_BENCH_THREADS")


def suite_of(name: str, methods: list[str], epochs: int, seeds: list[int], width: int = 16):
    teachers = {"arch": "small_cnn", "params": {"width": width}, "optim": {"epochs": epochs}}
    student = {"arch": "small_cnn", "params": {"width": width}}
    raw = tiny_suite(
        name,
        methods=[{"name": m} for m in methods],
        seeds=seeds,
        teachers=teachers,
        student=student,
        optim={"epochs": epochs, "batch_size": 64, "lr": 0.003},
    )
    return validate_suite(raw, name)


def records(outcome) -> list[dict]:
    return [json.loads(p.read_text()) for p in outcome.suite_dir.glob("runs/*/result.json")]


@pytest.mark.parametrize("tracking", ["no-mlflow", "mlflow"])
def test_suite_overhead(benchmark, tmp_path, tracking):
    enabled = not benchmark.disabled
    if tracking == "mlflow" and not enabled:
        pytest.skip("MLflow case only with --benchmark-enable (its store costs seconds)")
    methods = ["vanilla_kd", "cka", "supervised"] if enabled else ["vanilla_kd"]
    suite = suite_of("overhead", methods, 6 if enabled else 1, [0], 16 if enabled else 8)
    result = {}

    def run_once():
        root = tmp_path / f"r{len(result)}"
        start = time.perf_counter()
        outcome = run_suite(
            suite, root, progress=False, mlflow=tracking == "mlflow", out=io.StringIO()
        )
        result["wall"] = time.perf_counter() - start
        result["records"] = records(outcome)
        result["teachers"] = [
            json.loads(p.read_text())["train_time"] for p in root.glob("teachers/*/meta.json")
        ]

    benchmark.pedantic(run_once, rounds=1, warmup_rounds=0)
    recs = result["records"]
    assert len(recs) == len(methods) and all(r["status"] == "finished" for r in recs)
    train = sum(r["timings"]["train"] for r in recs)
    teacher_train = sum(result["teachers"])
    in_runs = sum(r["timings"]["total"] for r in recs)
    training = train + teacher_train
    info = {
        "wall_s": result["wall"],
        "runs_train_s": train,
        "teachers_train_s": teacher_train,
        "runs_other_s": in_runs - train - teacher_train,  # data, evaluation, set-up in runs
        "suite_other_s": result["wall"] - in_runs,  # plan, store, tables, tracking
        "wall/training": result["wall"] / training,
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{tracking}: wall {info['wall_s']:.2f} s, training {training:.2f} s (runs "
        f"{train:.2f} + teachers {teacher_train:.2f}); in runs besides training "
        f"{info['runs_other_s']:.2f} s, outside runs {info['suite_other_s']:.2f} s; "
        f"wall/training {info['wall/training']:.3f}"
    )
    assert 0 < training < result["wall"]


def test_packed_against_serial(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("spawns worker processes: only with --benchmark-enable")
    threads = torch.get_num_threads()
    if THREADS:
        torch.set_num_threads(int(THREADS))
    root = tmp_path / "results"
    seeds = list(range(N_PACKED))
    warm = suite_of("warm", ["vanilla_kd"], 1, [0])
    warm = warm.model_copy(update={"optim": warm.optim.model_copy(update={"epochs": 1})})
    run_suite(warm, root, progress=False, mlflow=False)  # teachers cached for both below
    timings = {}

    def run(label: str, launcher: str):
        suite = suite_of(label, ["vanilla_kd"], 6, seeds)
        suite = suite.model_copy(update={"teachers": warm.teachers})
        start = time.perf_counter()
        outcome = run_suite(
            suite, root, launcher=launcher, workers=N_PACKED, progress=False, mlflow=False
        )
        wall = time.perf_counter() - start
        recs = records(outcome)
        assert len(recs) == N_PACKED and all(r["status"] == "finished" for r in recs)
        assert all(r["teachers"][0]["cached"] for r in recs)
        timings[label] = (wall, [r["timings"]["train"] for r in recs])

    def both():
        run("serial", "serial")
        run("packed", "process")

    try:
        benchmark.pedantic(both, rounds=1, warmup_rounds=0)
    finally:
        used = torch.get_num_threads()
        torch.set_num_threads(threads)
    (s_wall, s_train), (p_wall, p_train) = timings["serial"], timings["packed"]
    info = {
        "runs": N_PACKED,
        "threads_serial": used,
        "threads_per_worker": max(1, used // N_PACKED),
        "serial_wall_s": s_wall,
        "packed_wall_s": p_wall,
        "packed/serial_wall": p_wall / s_wall,
        "run_train_packed/alone": (sum(p_train) / len(p_train)) / (sum(s_train) / len(s_train)),
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{N_PACKED} runs ({used} thread(s) alone, {info['threads_per_worker']} per worker): serial {s_wall:.2f} s, packed {p_wall:.2f} s "
        f"(packed/serial {info['packed/serial_wall']:.3f}); a run's training packed vs alone "
        f"{info['run_train_packed/alone']:.3f}x"
    )
