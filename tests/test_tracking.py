"""MLflow tracking end to end (real MLflow, the embedded SQLite store) and resume.

One tracked run of a tiny suite (``python -m bench run``) is checked for its
parent/child structure, params, per-epoch metric history, final metrics, artifacts and
teacher runs; it is also the uninterrupted reference for the ``kill -9`` test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.cli import main
from bench.engine.options import ExecOptions
from tests.conftest import ROOT, tiny_suite, write_suite

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

# teacher rows, ensemble and vanilla KD (2 epochs; with checkpoint_every=1 one checkpoint)
SUITE = tiny_suite(name="tiny")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models train faster on one thread, and the box is shared."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # cli: configure_threads() leaves it alone
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, created once (its schema migration costs seconds)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def new_results(tmp: Path, template_db: Path, teachers_from: Path | None = None) -> Path:
    results = tmp / "results"
    results.mkdir(parents=True)
    shutil.copy(template_db, results / "mlflow.db")
    if teachers_from is not None:  # the same teacher cache: they are not retrained
        shutil.copytree(teachers_from / "teachers", results / "teachers")
    return results


def uri_of(results: Path) -> str:
    return f"sqlite:///{results.resolve() / 'mlflow.db'}"


def bench_argv(suite_file: Path, results: Path) -> list[str]:
    return ["run", str(suite_file), "--results", str(results), "--no-progress"]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "OMP_NUM_THREADS": "1"}


def records(results: Path, suite: str = "tiny") -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((results / suite).glob("runs/*/result.json"))
    }


def runs_of(client: MlflowClient, experiment: str, kind: str | None = None) -> list:
    exp = client.get_experiment_by_name(experiment)
    runs = list(client.search_runs([exp.experiment_id], max_results=1000))
    return [r for r in runs if kind is None or r.data.tags.get("kind") == kind]


def finished_children(client, experiment="tiny") -> dict[str, list]:
    out: dict[str, list] = {}
    for r in runs_of(client, experiment, "run"):
        if r.info.status == "FINISHED":
            out.setdefault(r.data.tags["run_key"], []).append(r)
    return out


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, template_db):
    """``bench run`` of the tiny suite, uninterrupted, MLflow on (in this process: the
    subprocess path is the kill test's, and tests/test_end_to_end.py's)."""
    tmp = tmp_path_factory.mktemp("tracked")
    suite_file = write_suite(tmp / "tiny.yaml", SUITE)
    results = new_results(tmp, template_db)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        torch.set_num_threads(1)
        try:
            assert main(bench_argv(suite_file, results)) == 0
        finally:
            torch.set_num_threads(threads)
    return SimpleNamespace(suite_file=suite_file, results=results, uri=uri_of(results))


@pytest.fixture(scope="module")
def search_frame(tracked):
    """``mlflow.search_runs`` over the suite's experiment (pandas), at the suite's store."""
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover
        pytest.skip("this mlflow has no _use_tracking_uri")
    with _use_tracking_uri(tracked.uri):
        return mlflow.search_runs(experiment_names=["tiny"], output_format="pandas")


def test_parent_child_structure_params_and_tags(tracked, search_frame):
    df = search_frame
    client = MlflowClient(tracked.uri)
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location == (tracked.results / "mlartifacts").resolve().as_uri()
    (parent,) = df[df["tags.kind"] == "suite"].itertuples()
    assert parent.status == "FINISHED"
    children = df[df["tags.kind"] == "run"]
    assert (children["status"] == "FINISHED").all()
    assert (children["tags.mlflow.parentRunId"] == parent.run_id).all()
    recs = records(tracked.results)
    assert sorted(children["tags.run_key"]) == sorted(recs)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    for _, child in children.iterrows():
        rec = recs[child["tags.run_key"]]
        assert rec["mlflow_run_id"] == child["run_id"]
        for tag in ("method", "row", "column", "suite"):
            assert child[f"tags.{tag}"] == rec[tag]
        for tag in ("row_order", "column_order", "seed"):
            assert child[f"tags.{tag}"] == str(rec[tag])
        assert child["tags.git_commit"] == (commit or "unknown")
        assert child["tags.device"] == "cpu"
    kd = children[children["tags.method"] == "vanilla_kd"].iloc[0]
    expected = {
        "dataset.name": "digits",
        "dataset.tasks": "halves",
        "student.arch": "small_cnn",
        "student.params.width": "8",
        "optim.lr": "0.003",
        "optim.epochs": "2",
        "params.T": "1.0",
        "teachers.optim.epochs": "2",
        "method": "vanilla_kd",
        "seed": "0",
    }
    assert {k: kd[f"params.{k}"] for k in expected} == expected


def test_epoch_metric_history_and_final_metrics(tracked, search_frame):
    client = MlflowClient(tracked.uri)
    kd = next(r for r in records(tracked.results).values() if r["method"] == "vanilla_kd")
    run_id = kd["mlflow_run_id"]
    for key in ("loss", "loss/std", "lr", "epoch_time", "val_acc"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2], key
    loss = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert loss == {e["epoch"]: e["loss"] for e in kd["history"]}
    final = client.get_run(run_id).data.metrics
    metrics = kd["metrics"]
    assert final["test_acc"] == metrics["test_acc"]
    assert final["task_acc/T1"] == metrics["task_acc"]["T1"]
    assert final["task_acc/T2"] == metrics["task_acc"]["T2"]
    assert final["best_val_acc"] == metrics["best_val_acc"]
    assert final["test_acc_at_best_val"] == metrics["test_acc_at_best_val"]
    assert final["val_acc"] == metrics["val_acc"]  # the last epoch's point
    assert final["time/total"] > 0


def test_artifacts_and_teacher_runs(tracked, tmp_path):
    client = MlflowClient(tracked.uri)
    recs = records(tracked.results)
    kd = next(r for r in recs.values() if r["method"] == "vanilla_kd")
    names = {a.path for a in client.list_artifacts(kd["mlflow_run_id"])}
    assert {"config.yaml", "result.json", "curves.png"} <= names
    logged = json.loads(
        Path(
            client.download_artifacts(kd["mlflow_run_id"], "result.json", str(tmp_path))
        ).read_text()
    )
    assert logged == kd  # the artifact is the record on disk

    teachers = {r.data.tags["teacher_key"]: r for r in runs_of(client, "tiny", "teacher")}
    keys = client.get_run(kd["mlflow_run_id"]).data.tags["teacher_keys"].split(",")
    assert sorted(keys) == sorted(teachers) and len(keys) == 2
    assert keys == [t["key"] for t in kd["teachers"]]
    parent = runs_of(client, "tiny", "suite")[0]
    for run in teachers.values():
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
        assert "test_acc_own_classes" in run.data.metrics
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["meta.json"]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"suite.yaml", "table.md", "table.tex", "table.csv"} <= parent_files


def test_table_from_mlflow_matches_table_from_results(tracked, capsys):
    assert main(["table", str(tracked.results / "tiny")]) == 0
    from_files = capsys.readouterr().out
    assert main(["table", "--mlflow", "tiny", "--results", str(tracked.results)]) == 0
    assert capsys.readouterr().out == from_files
    assert "Vanilla KD" in from_files


def test_failed_run_is_recorded_and_the_suite_goes_on(
    tracked, template_db, tmp_path, monkeypatch, capsys
):
    from methods import METHODS

    def boom(self, batch):
        raise RuntimeError("boom: injected failure")

    monkeypatch.setattr(METHODS.get("vanilla_kd"), "loss_terms", boom)
    suite = tiny_suite(name="fails", methods=[{"name": "vanilla_kd"}, {"name": "ensemble"}])
    suite_file = write_suite(tmp_path / "fails.yaml", suite)
    results = new_results(tmp_path, template_db, teachers_from=tracked.results)
    assert main(bench_argv(suite_file, results)) == 1
    out = capsys.readouterr().out
    assert "FAILED Vanilla KD / digits / seed 0: RuntimeError: boom: injected failure" in out
    client = MlflowClient(uri_of(results))
    by_method = {r.data.tags["method"]: r for r in runs_of(client, "fails", "run")}
    assert by_method["vanilla_kd"].info.status == "FAILED"
    assert "boom: injected failure" in by_method["vanilla_kd"].data.tags["error"]
    assert by_method["ensemble"].info.status == "FINISHED"
    (parent,) = runs_of(client, "fails", "suite")
    assert parent.info.status == "FAILED" and parent.data.tags["error"] == "1 of 2 run(s) failed"
    statuses = sorted(r["status"] for r in records(results, "fails").values())
    assert statuses == ["failed", "finished"]


def test_unreachable_server_stops_before_training(tmp_path, capsys):
    suite_file = write_suite(tmp_path / "tiny.yaml", SUITE)
    start = time.perf_counter()
    argv = [*bench_argv(suite_file, tmp_path / "r"), "--tracking-uri", "http://127.0.0.1:9"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: {suite_file}: tracking: http://127.0.0.1:9: server not reachable"
    )
    assert "--no-mlflow" in err[0]
    assert not (tmp_path / "r").exists()  # checked before anything is written
    assert time.perf_counter() - start < 30


def test_tracking_error_mid_run_never_fails_the_run(
    tracked, template_db, tmp_path, monkeypatch, capsys
):
    import bench.tracking.runs

    def broken(*args, **kwargs):
        raise OSError("artifact store went away")

    suite_file = write_suite(
        tmp_path / "ens.yaml", tiny_suite(name="ens", methods=[{"name": "ensemble"}])
    )
    results = new_results(tmp_path, template_db, teachers_from=tracked.results)
    monkeypatch.setattr(bench.tracking.runs, "write_run_artifacts", broken)
    assert main(bench_argv(suite_file, results)) == 0
    err = capsys.readouterr().err
    assert err.count("tracking: finishing the MLflow run of") == 1
    assert "OSError: artifact store went away" in err
    ((key, rec),) = records(results, "ens").items()
    assert rec["status"] == "finished" and "mlflow_run_id" not in rec

    monkeypatch.undo()
    assert main(bench_argv(suite_file, results)) == 0  # MLflow works again: backfilled
    assert "logged 1 finished run(s) to MLflow from result.json" in capsys.readouterr().out
    client = MlflowClient(uri_of(results))
    runs = runs_of(client, "ens", "run")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
    done = next(r for r in runs if r.info.status == "FINISHED")
    assert done.data.tags["backfilled"] == "result.json" and done.data.tags["run_key"] == key
    assert done.data.metrics["test_acc"] == rec["metrics"]["test_acc"]


# ------------------------------------------------------------------ kill -9, resume


@pytest.fixture(scope="module")
def killed(tracked, template_db, tmp_path_factory):
    """The same suite (checkpoints every epoch) killed with SIGKILL in the middle of the
    vanilla-KD run, right after its first checkpoint."""
    tmp = tmp_path_factory.mktemp("killed")
    suite_file = write_suite(tmp / "tiny.yaml", {**SUITE, "checkpoint_every": 1})
    results = new_results(tmp, template_db, teachers_from=tracked.results)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *bench_argv(suite_file, results)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not list((results / "tiny").glob("runs/*/checkpoint.pt")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    proc.stderr.close()
    return SimpleNamespace(suite_file=suite_file, results=results, uri=uri_of(results))


def test_kill_9_then_rerun_matches_an_uninterrupted_run(tracked, killed, capsys):
    before = records(killed.results)
    assert 1 <= len(before) < 4  # killed mid-suite
    client = MlflowClient(killed.uri)
    running = [r for r in runs_of(client, "tiny") if r.info.status == "RUNNING"]
    assert {r.data.tags["kind"] for r in running} == {"suite", "run"}

    assert main(bench_argv(killed.suite_file, killed.results)) == 0
    out = capsys.readouterr().out
    assert f"marked {len(running)} stale RUNNING MLflow run(s) KILLED" in out
    assert f"skipping {len(before)} finished run(s)" in out

    reference, resumed = records(tracked.results), records(killed.results)
    assert {k: r["metrics"] for k, r in resumed.items()} == {
        k: r["metrics"] for k, r in reference.items()
    }
    kd = next(r for r in resumed.values() if r["method"] == "vanilla_kd")
    assert kd["resumed_from_epoch"] == 1  # continued from its checkpoint
    assert not list(killed.results.glob("tiny/runs/*/checkpoint.pt"))
    table = (killed.results / "tiny" / "table.md").read_text()
    assert table == (tracked.results / "tiny" / "table.md").read_text()

    finished = finished_children(client)
    assert sorted(finished) == sorted(reference)
    assert all(len(runs) == 1 for runs in finished.values())  # never a second FINISHED
    for r in running:
        r = client.get_run(r.info.run_id)
        assert r.info.status == "KILLED" and r.data.tags["error"].startswith("killed:")
    kd_run = client.get_run(kd["mlflow_run_id"])
    steps = [m.step for m in client.get_metric_history(kd_run.info.run_id, "loss")]
    assert sorted(steps) == [1, 2]  # the restored epoch is logged in the new run too
    assert kd_run.data.tags["resumed_from_epoch"] == str(kd["resumed_from_epoch"])


def test_missing_result_json_is_restored_from_mlflow_not_rerun(tracked, killed, capsys):
    """After the kill test: result.json files gone, FINISHED children present."""
    client = MlflowClient(killed.uri)
    before = records(killed.results)
    n_children = len(runs_of(client, "tiny", "run"))
    kd_key = next(k for k, r in before.items() if r["method"] == "vanilla_kd")
    ens_key = next(k for k, r in before.items() if r["method"] == "ensemble")
    (killed.results / "tiny" / "runs" / kd_key / "result.json").unlink()
    (killed.results / "tiny" / "runs" / ens_key / "result.json").unlink()
    # the KD run's artifact is gone too: its record is rebuilt from the metrics
    kd_run = before[kd_key]["mlflow_run_id"]
    artifact = killed.results / "mlartifacts" / kd_run / "artifacts" / "result.json"
    assert artifact.is_file()
    artifact.unlink()

    assert main(bench_argv(killed.suite_file, killed.results)) == 0
    out = capsys.readouterr().out
    assert "restored 2 result.json file(s) from FINISHED MLflow runs" in out
    assert "0 run(s) done, 4 skipped" in out
    after = records(killed.results)
    assert after[ens_key] == before[ens_key]  # exactly the record that was logged
    rebuilt, kd = after[kd_key], before[kd_key]
    assert rebuilt["rebuilt_from_mlflow"] is True
    assert rebuilt["metrics"] == kd["metrics"]
    assert rebuilt["history"] == kd["history"]
    assert [t["key"] for t in rebuilt["teachers"]] == [t["key"] for t in kd["teachers"]]
    assert len(runs_of(client, "tiny", "run")) == n_children  # nothing re-run
    assert all(len(runs) == 1 for runs in finished_children(client).values())
    table = (killed.results / "tiny" / "table.md").read_text()
    assert table == (tracked.results / "tiny" / "table.md").read_text()


# ------------------------------------------------------------ checkpoint equality


class Stop(Exception):
    """Stands in for a kill right after an epoch's checkpoint was written."""


def test_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(tracked, tmp_path):
    """In process, without MLflow: stop after epoch 1, resume, compare with the KD run of
    the tracked suite (the same RunSpec, trained uninterrupted)."""
    from bench.core.config import validate_suite
    from bench.engine.checkpoint import Checkpoint
    from bench.experiment.plan import expand
    from bench.experiment.runner import execute

    (run,) = expand(validate_suite({**SUITE, "methods": [{"name": "vanilla_kd"}]}, "test"))
    reference = records(tracked.results)[run.key]
    root = new_results(tmp_path, tracked.results / "mlflow.db", teachers_from=tracked.results)
    ckpt = Checkpoint(root / "checkpoint.pt", every=1, key=run.key)
    cpu = torch.device("cpu")

    def stop(epoch, record):
        raise Stop

    with pytest.raises(Stop):
        execute(run, ExecOptions(root, cpu, progress=False), checkpoint=ckpt, callbacks=[stop])
    saved = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and saved["key"] == run.key

    seen = []
    resumed = execute(
        run,
        ExecOptions(root, cpu, progress=False),
        checkpoint=ckpt,
        callbacks=[lambda e, r: seen.append(e)],
    ).dump()  # as the store writes it
    assert resumed["resumed_from_epoch"] == 1 and seen == [1, 2]  # epoch 1 replayed
    assert resumed["metrics"] == reference["metrics"]
    timing = ("epoch_time", "data_time", "step_time")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(reference["history"])
