"""Failures that must stay cheap: a diverging run, a full disk, a second process on the
same results, stale claims of killed processes, bars in a log file."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from bench.cli import main
from bench.core import claims
from methods import METHODS, Method, register
from tests.conftest import ROOT, tiny_suite, write_suite


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """One results root for this module's suites: the teachers are trained once."""
    return tmp_path_factory.mktemp("shared") / "results"


def _suite(name: str, methods: list[dict], seeds=(0,)) -> dict:
    """tiny_suite with 1-epoch teachers and students."""
    suite = tiny_suite(name, methods=methods, seeds=list(seeds))
    suite["teachers"]["optim"]["epochs"] = 1
    suite["optim"]["epochs"] = 1
    return suite


def _records(results: Path, suite: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / suite).glob("runs/*/result.json"))]


# ------------------------------------------------------------------------- divergence


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NanToy(Method):
    """Test-only: a student-free toy whose 'inter' term is NaN for odd seeds (the runner
    seeds torch with the run's seed before it builds the method), finite for even ones."""

    Params = NoParams
    builds_student = False

    def __init__(self, ctx, params):
        super().__init__(ctx, params)
        self.w = nn.Parameter(torch.ones(1))
        self.diverges = torch.initial_seed() % 2 == 1
        self.classes = ctx.num_classes

    def weights(self):
        return {"toy": 1.0, "inter": 1.0}

    def loss_terms(self, batch):
        inter = torch.full((), float("nan")) if self.diverges else (self.w * 0).sum()
        return {"toy": (self.w**2).sum(), "inter": inter}

    def predict(self, x):
        return torch.zeros(len(x), self.classes) + self.w


@pytest.fixture
def nan_toy():
    register("nan_toy")(NanToy)
    yield "nan_toy"
    METHODS._items.pop("nan_toy", None)


def test_diverging_run_fails_alone_and_its_cell_is_marked(tmp_path, shared, capsys, nan_toy):
    seeds, diverging = [0, 1, 2], [1]  # a mixed cell: one seed fails, two finish
    suite = _suite("nan", [{"name": "teacher"}, {"name": nan_toy, "label": "Toy"}], seeds)
    path = write_suite(tmp_path / "nan.yaml", suite)
    results = shared
    code = main(["run", str(path), "--results", str(results), "--no-mlflow"])
    out = capsys.readouterr()
    assert code == 1  # some runs failed; the suite went on

    records = _records(results, "nan")
    toy = {r["seed"]: r for r in records if r["method"] == nan_toy}
    assert sorted(s for s, r in toy.items() if r["status"] == "failed") == diverging
    for seed in diverging:
        error = toy[seed]["error"]
        assert "not finite" in error and "inter" in error and "epoch" in error
    finished = [r for r in records if r["status"] == "finished"]
    assert len(finished) == len(records) - len(diverging)  # teachers rows and the rest ran

    table = (results / "nan" / "table.md").read_text()
    toy_row = next(line for line in table.splitlines() if line.startswith("| Toy"))
    n_left = len(seeds) - len(diverging)
    assert f"‡ (n={n_left})" in toy_row
    teacher_row = next(line for line in table.splitlines() if line.startswith("| Teacher 1"))
    assert "‡" not in teacher_row and "(n=" not in teacher_row
    lost = ", ".join(str(s) for s in diverging)
    word = "seeds" if len(diverging) > 1 else "seed"
    assert f"Toy / digits: {word} {lost} (NonFiniteLoss)" in table
    tex = (results / "nan" / "table.tex").read_text()
    assert r"$^\ddagger$ (n=" in tex
    # no terminal: no bar frames, one line per finished run instead
    assert "\r" not in out.err
    assert out.out.count("done ") == len(finished)


# -------------------------------------------------------------------------- full disk


def test_full_disk_fails_with_one_line_and_keeps_earlier_results(
    tmp_path, shared, capsys, monkeypatch
):
    import bench.core.atomic

    path = write_suite(tmp_path / "disk.yaml", _suite("disk", [{"name": "teacher"}]))
    results = shared
    real_replace = os.replace
    writes = []

    def replace(src, dst):
        if str(dst).endswith("result.json"):
            writes.append(dst)
            if len(writes) == 2:  # the second run's result: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(bench.core.atomic.os, "replace", replace)
    code = main(["run", str(path), "--results", str(results), "--no-mlflow", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("error: cannot write the result of run ") and "\n" not in err
    assert "No space left on device" in err and "earlier results are intact" in err
    first, second = writes
    assert json.loads(Path(first).read_text())["status"] == "finished"  # intact
    assert not Path(second).exists()
    assert not list(results.rglob("*.tmp"))  # no temp file left behind
    assert not list(results.rglob("claim"))  # claims released
    monkeypatch.undo()  # the disk has room again: the re-run does only the missing run
    assert main(["run", str(path), "--results", str(results), "--no-mlflow"]) == 0
    assert "1 run(s) done, 1 skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- claims


def _dead_pid() -> int:
    proc = mp.get_context("spawn").Process(target=int)
    proc.start()
    proc.join()
    return proc.pid


def test_claims_exclusive_stale_taken_over_foreign_respected(tmp_path):
    folder = tmp_path / "k"
    assert claims.try_claim(folder) == (True, None)
    owner = json.loads((folder / "claim").read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    ok, held_by = claims.try_claim(folder)  # held (here by this very process)
    assert not ok and held_by["pid"] == os.getpid()
    claims.release(folder)
    assert not (folder / "claim").exists()

    host = socket.gethostname()
    (folder / "claim").write_text(json.dumps({"host": host, "pid": _dead_pid()}))
    assert claims.try_claim(folder) == (True, None)  # a killed process's claim: taken over
    claims.release(folder)

    live = {"host": host, "pid": os.getppid()}
    (folder / "claim").write_text(json.dumps(live))
    assert claims.try_claim(folder) == (False, live)
    other_host = {"host": host + "-elsewhere", "pid": _dead_pid()}
    (folder / "claim").write_text(json.dumps(other_host))
    assert claims.try_claim(folder) == (False, other_host)  # cannot tell: respected
    claims.release(folder)  # never removes another process's claim
    assert (folder / "claim").exists()


def test_stale_run_claim_of_killed_run_is_taken_over(tmp_path, shared, capsys):
    path = write_suite(tmp_path / "s.yaml", _suite("stale", [{"name": "teacher"}]))
    results = shared
    assert main(["run", str(path), "--results", str(results), "--no-mlflow", "--dry-run"]) == 0
    keys = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if "  to do  " in ln]
    dead = {"host": socket.gethostname(), "pid": _dead_pid()}
    for key in keys:  # as left by a kill -9 in the middle of each run
        (results / "stale" / "runs" / key).mkdir(parents=True)
        (results / "stale" / "runs" / key / "claim").write_text(json.dumps(dead))
    assert main(["run", str(path), "--results", str(results), "--no-mlflow"]) == 0
    assert f"{len(keys)} run(s) done, 0 skipped" in capsys.readouterr().out
    assert not list(results.rglob("claim"))


# ------------------------------------------------------------------------ concurrency


def test_two_processes_on_one_results_dir_run_each_key_once(tmp_path):
    """Two real ``bench run`` of one suite at once: every run key executes exactly once
    (run claims), each teacher is trained once (the other waits), MLflow's SQLite
    store stays sound, both exit 0 and together report every run."""
    suite = _suite("pair", [{"name": "teacher"}, {"name": "vanilla_kd"}], seeds=[0, 1])
    path = write_suite(tmp_path / "pair.yaml", suite)
    results = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--results", str(results)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-2000:]
    texts = [out.decode() for out, _ in outs]

    records = _records(results, "pair")
    assert len(records) == 6 and all(r["status"] == "finished" for r in records)
    done = [int(t.split(" run(s) done")[0].split()[-1]) for t in texts]
    assert sum(done) == 6  # no run executed twice, none lost
    held = sum(t.count("is being executed by pid") for t in texts)
    assert held > 0 or min(done) == 0  # they interleaved (or one came after the other)
    assert all(
        f"{t.count('is being executed by')} skipped (held" in t for t in texts if "(held" in t
    )
    trained = {}
    for r in records:
        for t in r["teachers"]:
            trained[t["key"]] = trained.get(t["key"], 0) + (not t["cached"])
    assert len(trained) == 2 and all(n <= 1 for n in trained.values())
    assert not list(results.rglob("claim"))

    with sqlite3.connect(results / "mlflow.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pair")
    children = [r for r in client.search_runs([exp.experiment_id]) if "run_key" in r.data.tags]
    keys = [r.data.tags["run_key"] for r in children if r.info.status == "FINISHED"]
    assert sorted(keys) == sorted(r["run_key"] for r in records)  # one FINISHED child each


# --------------------------------------------------------------------------- progress


def test_no_progress_silences_every_bar_and_a_pipe_has_none(monkeypatch, capsys):
    from bench.core import progress

    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled() and not progress.bar(range(3)).disable
    progress.set_enabled(False)  # --no-progress: decode bars included, workers inherit it
    assert os.environ[progress.ENV] == "0" and progress.bar(range(3)).disable
    progress.set_enabled(True)
    assert progress.ENV not in os.environ and not progress.bar(range(3)).disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.bar(range(3)).disable  # a log file or a pipe: no bars
