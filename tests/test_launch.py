"""Launchers (bench.launch.local): GPU placement with a faked GPU count, the Ray launcher with a
fake ``ray`` module, and a real packed run of a tiny suite in two worker processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.config import SpeedConfig, validate_suite
from bench.core.record import RunRecord
from bench.engine.options import ExecOptions
from bench.experiment.plan import expand
from bench.launch import local as launch_mod
from bench.launch.local import LAUNCHERS, Slots, execute_safely, launch
from bench.launch.placement import CUDA_ENV, gpu_for_worker, init_worker, visible_gpus
from bench.launch.ray_cluster import run_on_ray
from bench.launch.suite import run_suite
from bench.tracking import TrackingTarget
from tests.conftest import ROOT, tiny_suite, write_suite


def fake_gpus(monkeypatch, count: int, listed: str | None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if listed is None:
        monkeypatch.delenv(CUDA_ENV, raising=False)
    else:
        monkeypatch.setenv(CUDA_ENV, listed)


def test_registry_holds_the_three_launchers():
    assert set(LAUNCHERS) == {"serial", "process", "ray"}
    with pytest.raises(ValueError, match="launcher 'slurm' is not one of serial, process, ray"):
        launch("slurm", [], ExecOptions(Path(".")))


@pytest.mark.parametrize(
    "count, listed, device, expected",
    [
        (3, None, "auto", ["0", "1", "2"]),
        (2, "4,6", "cuda", ["4", "6"]),  # the parent's own restriction is kept
        (2, "GPU-aa, GPU-bb, 7", "auto", ["GPU-aa", "GPU-bb"]),  # CUDA counts only 2 valid
        (4, None, "cpu", []),  # runs on the CPU: no GPU handed out
        (0, None, "auto", []),
    ],
)
def test_visible_gpus(monkeypatch, count, listed, device, expected):
    fake_gpus(monkeypatch, count, listed)
    assert visible_gpus(device) == expected


def test_the_worker_initializer_module_does_not_import_torch():
    """Else CUDA could start in a worker before its CUDA_VISIBLE_DEVICES is set."""
    code = "import sys, bench.launch.placement; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_workers_round_robin_over_gpus_and_share_a_single_one():
    assert [gpu_for_worker(i, ["4", "6"]) for i in range(5)] == ["4", "6", "4", "6", "4"]
    assert [gpu_for_worker(i, ["0"]) for i in range(3)] == ["0", "0", "0"]  # packed
    assert gpu_for_worker(0, []) is None


def test_init_worker_pins_each_new_worker_to_the_next_gpu(monkeypatch):
    monkeypatch.setenv(CUDA_ENV, "0,1,2")
    threads = torch.get_num_threads()
    counter = mp.get_context("spawn").Value("i", 0)
    seen = []
    try:
        for _ in range(3):
            init_worker(counter, ["1", "2"], 1)
            seen.append(os.environ[CUDA_ENV])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert seen == ["1", "2", "1"] and counter.value == 3
    monkeypatch.setenv(CUDA_ENV, "5")
    init_worker(counter, [], threads)  # CPU runs: the environment is left alone
    assert os.environ[CUDA_ENV] == "5"


# ---------------------------------------------------------------------- Ray


class FakeRay(types.ModuleType):
    """Enough of ``ray`` for bench.launch.ray_cluster: tasks run at ``get``, their arguments
    pickled on the way as Ray would ship them to a worker."""

    def __init__(self, gpus: float):
        super().__init__("ray")
        self.gpus, self.calls, self.init_args = gpus, [], None

    def is_initialized(self):
        return self.init_args is not None

    def init(self, **kwargs):
        self.init_args = kwargs

    def cluster_resources(self):
        return {"CPU": 2.0, "GPU": self.gpus}

    def nodes(self):
        return [{"Alive": True, "Resources": self.cluster_resources()}]

    def remote(self, num_gpus=0, num_cpus=1):
        def wrap(fn):
            fake = self

            class Task:
                def remote(self, *args, **kwargs):
                    call = {"num_gpus": num_gpus, "num_cpus": num_cpus}
                    fake.calls.append({**call, "args": args, "kwargs": kwargs})
                    return (fn, pickle.dumps((args, kwargs)))

            return Task()

        return wrap

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        fn, payload = ref
        args, kwargs = pickle.loads(payload)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("device, cluster_gpus, expected_gpus", [("auto", 2, 0.25), ("cpu", 2, 0)])
def test_ray_tasks_get_every_exec_option(
    tmp_path, monkeypatch, device, cluster_gpus, expected_gpus
):
    fake = FakeRay(cluster_gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    seen = []

    def fake_execute(run, options, *, callbacks, checkpoint):  # the rest by name
        seen.append((options, checkpoint))
        return RunRecord.for_run(run, "finished")

    monkeypatch.setattr(launch_mod, "execute", fake_execute)
    targets = []  # the MLflow target each task starts its child run with
    monkeypatch.setattr(launch_mod.RunTracker, "start", lambda t, run, dev: targets.append(t))
    runs = expand(validate_suite(tiny_suite(), "t"))[:2]
    speed = SpeedConfig(amp="off", channels_last="on", compile=True)
    target = TrackingTarget("sqlite:///x.db", "1", "parent", "me", "tiny")
    options = ExecOptions(
        tmp_path, device, 3, tracking=target, checkpoint_every=4, speed=speed, with_test=False
    )
    out = list(run_on_ray(runs, options, execute_safely, gpus_per_run=0.25))

    assert [r.key for r, _ in out] == [r.key for r in runs]
    assert all(rec.finished and rec.placement["pid"] for _, rec in out)
    assert [c["num_gpus"] for c in fake.calls] == [expected_gpus] * 2
    assert fake.calls[0]["kwargs"]["options"].speed == speed  # passed by name
    assert targets == [target, target]
    for got, checkpoint in seen:  # the whole context reached the task, device resolved there
        assert got.speed == speed and got.with_test is False and got.progress is False
        assert checkpoint.every == 4 and got.num_workers == 3 and got.checkpoint_every == 4
        assert got.results_root == tmp_path and isinstance(got.device, torch.device)


def test_ray_gpus_per_run_out_of_range_and_ray_missing(tmp_path, monkeypatch):
    runs = expand(validate_suite(tiny_suite(), "t"))[:1]
    with pytest.raises(ValueError, match=r"gpus_per_run: must be in \(0, 1\], got 1.5"):
        list(launch("ray", runs, ExecOptions(tmp_path, "cpu"), Slots(1, 1.5)))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(Exception, match="ray is not installed"):
        list(run_on_ray(runs, ExecOptions(tmp_path, "cpu"), execute_safely))


def test_gpus_per_run_is_checked_in_the_suite_and_on_the_command_line(tmp_path, capsys):
    path = write_suite(tmp_path / "s.yaml", tiny_suite(gpus_per_run=0))
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "gpus_per_run: Value error, must be in (0, 1], got 0.0" in capsys.readouterr().err
    path = write_suite(tmp_path / "s.yaml", tiny_suite(gpus_per_run=0.5))
    assert main(["run", str(path), "--dry-run", "--gpus-per-run", "2"]) == 2
    assert "--gpus-per-run: must be in (0, 1], got 2.0" in capsys.readouterr().err
    assert main(["run", str(path), "--dry-run", "--workers", "0"]) == 2
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------------- processes


def test_packed_run_in_two_processes_each_on_its_own_device(tmp_path, monkeypatch):
    """Three runs on two spawned workers; the two 'GPUs' are faked in the parent, so each
    worker's CUDA_VISIBLE_DEVICES shows where it was placed (the runs train on the CPU)."""
    monkeypatch.setattr(launch_mod, "visible_gpus", lambda device: ["7", "9"])
    teachers = {"arch": "small_cnn", "params": {"width": 8}, "optim": {"epochs": 1}}
    optim = {"epochs": 1, "lr": 0.003}
    suite = tiny_suite(
        methods=[{"name": "vanilla_kd"}], seeds=[0, 1, 2], teachers=teachers, optim=optim
    )
    suite = validate_suite(suite, "t")
    outcome = run_suite(
        suite, tmp_path, launcher="process", workers=2, progress=False, mlflow=False
    )
    assert sorted(outcome.ran) == sorted(r.key for r in expand(suite)) and not outcome.failed
    records = [json.loads(p.read_text()) for p in outcome.suite_dir.glob("runs/*/result.json")]
    assert len(records) == 3 and all(r["status"] == "finished" for r in records)
    where = {r["placement"]["pid"]: r["placement"]["cuda_visible_devices"] for r in records}
    assert os.getpid() not in where
    assert len(where) == 2 and sorted(where.values()) == ["7", "9"]
    assert all(len(r["history"]) == 1 for r in records)
    # the teachers were trained once, in this process, before the workers started
    assert len(list((tmp_path / "teachers").glob("*/meta.json"))) == 2
