"""Every launcher gives the same numbers: one thread rule (bench.engine.runtime.resolve_threads)
applied where each run executes, recorded as ``env.threads``; serial, process and REAL
Ray runs of one tiny suite at the same thread count are bit-identical on the CPU; the Ray
the harness starts listens on the loopback interface only; bad thread counts exit 2 with
one line before anything trains."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.errors import BenchError
from bench.engine.runtime import available_cores, default_threads, resolve_threads, running_at
from tests.conftest import tiny_suite, write_suite
from tests.test_tune import tune_dict, write_tune

CORES = available_cores()


def small_suite() -> dict:
    """Two rows (one trained), one column, one seed: the cheapest table that trains."""
    return tiny_suite(
        "same",
        methods=[{"name": "ensemble"}, {"name": "vanilla_kd"}],
        teachers={"arch": "small_cnn", "params": {"width": 8}, "optim": {"epochs": 1}},
        optim={"epochs": 2, "batch_size": 64, "lr": 0.003},
    )


def run_cli(suite: Path, results: Path, *extra: str) -> dict[str, dict]:
    """``bench run`` at one thread per run; the records by run key."""
    argv = ["run", str(suite), "--results", str(results), "--no-mlflow", "--no-progress"]
    assert main([*argv, "--threads", "1", *extra]) == 0
    paths = (results / "same" / "runs").glob("*/result.json")
    return {p.parent.name: json.loads(p.read_text()) for p in paths}


LEARNING = ("time", "gpu_")  # history keys that measure the machine, not the learning


def numbers(record: dict) -> tuple:
    """What the table and the curves are made of: metrics and every learning figure of
    every epoch (losses, lr, val accuracy, ...), without the timings."""
    history = [
        {k: v for k, v in epoch.items() if not any(m in k for m in LEARNING)}
        for epoch in record["history"]
    ]
    return record["metrics"], history


def assert_identical(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert sorted(a) == sorted(b) and len(a) == 2
    for key in a:
        assert a[key]["status"] == b[key]["status"] == "finished"
        assert numbers(a[key]) == numbers(b[key]), key  # bit for bit: == on floats
        assert a[key]["env"]["threads"] == b[key]["env"]["threads"] == "1"
        assert a[key]["placement"]["threads"] == b[key]["placement"]["threads"] == 1
    trained = [r for r in a.values() if r["history"]]
    assert trained and all("loss" in e for r in trained for e in r["history"])


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    tmp = tmp_path_factory.mktemp("serial")
    path = write_suite(tmp / "same.yaml", small_suite())
    return path, run_cli(path, tmp / "results")


# ---------------------------------------------------------------------- the rule


def test_the_rule_keeps_the_serial_default_and_shares_cores_among_parallel_runs():
    here = torch.get_num_threads()
    assert resolve_threads(None, None, 1) == here == default_threads()  # serial: as today
    assert resolve_threads(None, None, 2) == max(1, here // 2)
    assert resolve_threads(None, 1, 2) == 1  # the suite's key beats the default
    assert resolve_threads(1, CORES, 1) == 1  # --threads beats the suite
    with running_at(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == here  # put back


@pytest.mark.parametrize("bad", [0, -1, CORES + 1])
def test_a_thread_count_outside_the_machine_is_refused(bad):
    with pytest.raises(BenchError, match=rf"^--threads: must be between 1 and {CORES} .*{bad}"):
        resolve_threads(bad, None)
    with pytest.raises(BenchError, match=rf"^threads: must be between 1 and {CORES} .*{bad}"):
        resolve_threads(None, bad)


@pytest.mark.parametrize(
    "suite_threads, cli, expected",
    [
        (0, [], "threads: Input should be greater than or equal to 1"),
        (CORES + 1, [], f"threads: must be between 1 and {CORES}"),
        (None, ["--threads", "0"], f"--threads: must be between 1 and {CORES}"),
        (None, ["--threads", str(CORES + 1)], f"--threads: must be between 1 and {CORES}"),
    ],
)
def test_bad_thread_counts_exit_2_with_one_line_before_anything_trains(
    tmp_path, capsys, suite_threads, cli, expected
):
    suite = small_suite() if suite_threads is None else {**small_suite(), "threads": suite_threads}
    path = write_suite(tmp_path / "s.yaml", suite)
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results), "--no-mlflow", *cli]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (results / "teachers").exists() and not (results / "same").exists()


def test_bench_tune_refuses_a_bad_thread_count(tmp_path, capsys):
    path = write_tune(tmp_path / "t.yaml", tune_dict())
    argv = ["tune", str(path), "--results", str(tmp_path / "r"), "--no-mlflow"]
    assert main([*argv, "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--threads: must be between 1 and {CORES}" in err and "got 0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r" / "tune").exists()


def test_tune_trials_carry_the_thread_count(tmp_path):
    from bench.tune.check import load_tune
    from bench.tune.job import TuneJob

    cfg = load_tune(write_tune(tmp_path / "t.yaml", tune_dict()), [])
    job = TuneJob(cfg, "t", "sqlite://", tmp_path, "cpu", None, threads=1)
    assert job.options.threads == 1  # what each trial's runner.execute applies


def test_a_study_runs_at_its_thread_count_and_gives_this_process_its_own_back(
    tmp_path, monkeypatch
):
    import bench.experiment.runner
    from bench.tune.check import load_tune
    from bench.tune.run import tune

    seen = []
    execute = bench.experiment.runner.execute

    def spy(run, options, **kw):
        record = execute(run, options, **kw)
        seen.append((options.threads, record.env["threads"]))
        return record

    monkeypatch.setattr(bench.experiment.runner, "execute", spy)
    cfg = load_tune(write_tune(tmp_path / "t.yaml", tune_dict(budget={"n_trials": 1})), [])
    before = torch.get_num_threads()
    outcome = tune(cfg, tmp_path, mlflow=False, progress=False, threads=1)
    assert outcome.counts["complete"] == 1 and seen == [(1, "1")]
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------- launchers


def test_serial_and_process_runs_are_bit_identical(serial, tmp_path):
    path, by_serial = serial
    by_process = run_cli(path, tmp_path / "results", "--launcher", "process", "--workers", "2")
    assert_identical(by_serial, by_process)
    assert {r["placement"]["pid"] for r in by_process.values()}.isdisjoint({os.getpid()})


# ---------------------------------------------------------------------- real Ray


def listening(pids: set[int]) -> set[tuple[str, int, int]]:
    import psutil  # ray[default] vendors it; importable once ray is

    return {
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on an IPv6 socket
    return (mapped or addr).is_loopback


@pytest.fixture(scope="module")
def ray_cluster():
    """The cluster that ``--launcher ray`` starts (bench.launch.ray_cluster.start_ray), up for the
    module; yields ``(ray, the driver's listening sockets before Ray)``."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        pytest.skip("needs a fresh local Ray: one is initialised or RAY_ADDRESS is set")
    from bench.launch.ray_cluster import start_ray

    before = listening({os.getpid()})
    start_ray(num_cpus=min(2, CORES))
    try:
        yield ray, before
    finally:
        ray.shutdown()


def test_serial_and_ray_runs_are_bit_identical_and_ray_listens_on_loopback_only(
    serial, ray_cluster, tmp_path
):
    import psutil

    ray, before = ray_cluster
    path, by_serial = serial
    by_ray = run_cli(path, tmp_path / "results", "--launcher", "ray", "--workers", "2")
    assert_identical(by_serial, by_ray)
    assert (tmp_path / "results" / "same" / "table.md").read_text() == (
        path.parent / "results" / "same" / "table.md"
    ).read_text()  # the table, cell for cell
    node = ray.get_runtime_context().get_node_id()
    for rec in by_ray.values():  # ran in a Ray worker of this node, the branch's code
        where = rec["placement"]
        assert where["ray_node_id"] == node and where["ray_node_ip"] == "127.0.0.1"
        assert where["host"] and where["pid"] != os.getpid()

    me = psutil.Process()
    pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
    sockets = listening(pids) - before  # gcs, raylet, agents, workers, monitor, API server
    assert len(sockets) >= 5, sockets  # the check sees Ray's processes at all
    wide = sorted(s for s in sockets if not loopback(s[0]))
    assert wide == [], f"Ray sockets beyond loopback: {wide}"
    assert 8265 not in {port for _, port, _ in sockets}  # no dashboard web UI
