"""The run record (``result.json``): one schema written by the runner, checked by the
store, read back by the report; older files stay readable; and the import direction of
the modules that only read records (tracking, report, plots never import the runner)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import report
from bench.core.config import validate_suite
from bench.core.record import InvalidRecord, Metrics, RunRecord, validate_record
from bench.core.store import RunStore, read_record
from bench.experiment.plan import expand
from tests.conftest import ROOT, imported_modules, tiny_suite

GOLDEN = ROOT / "tests" / "golden" / "result_v1.json"  # written by the harness before RunRecord


@pytest.fixture(scope="module")
def planned():
    suite = validate_suite({**tiny_suite(), "methods": [{"name": "vanilla_kd"}]}, "test")
    (run,) = expand(suite)
    return run


def test_record_round_trips_through_the_store(planned, tmp_path: Path):
    history = [
        {"epoch": 1, "loss": 0.75, "val_acc": 0.5},
        {"epoch": 2, "loss": 0.5, "val_acc": 0.625},
    ]
    record = RunRecord.for_run(
        planned,
        "finished",
        metrics={"test_acc": 0.875, "task_acc": {"T1": 1.0, "T2": 0.75}, "best_val_epoch": 2},
        history=history,
        teachers=[{"key": "abc", "cached": True}],
        timings={"train": 1.5, "compile": None},
        device="cpu",
        resumed_from_epoch=None,
    )
    built = record.dump()
    assert built["run_key"] == planned.key and built["row"] == planned.meta.row
    assert built["spec"] == planned.spec.model_dump(mode="json")
    assert set(built["env"]) == {"torch", "python", "threads"}
    assert built["env"]["threads"] == str(torch.get_num_threads())  # strings, as the rest
    store = RunStore(tmp_path / "tiny")
    path = store.write(record)
    assert json.loads(path.read_text()) == built  # the file holds exactly the record
    read = store.read(planned.key)
    assert isinstance(read, RunRecord) and read.dump() == built
    assert read.source == str(path) and record.source is None
    assert store.is_finished(planned.key)
    (loaded,) = report.read_records(tmp_path / "tiny")
    assert loaded.dump() == built and loaded.source == str(path)
    # the keys runner records always carry, optional ones only where set
    assert "traceback" not in built and "pretrain" not in built
    assert built["resumed_from_epoch"] is None and built["error"] is None


def test_fields_set_after_building_are_written(planned, tmp_path: Path):
    record = RunRecord.for_run(planned, "failed", error="boom")
    record.placement = {"host": "h"}  # what a launcher adds before the store writes it
    record.mlflow_run_id = "r1"
    path = RunStore(tmp_path / "tiny").write(record)
    written = json.loads(path.read_text())
    assert written["placement"] == {"host": "h"} and written["mlflow_run_id"] == "r1"
    assert written["status"] == "failed" and written["error"] == "boom"


def test_a_record_written_before_runrecord_reads_back_unchanged(tmp_path: Path):
    old = json.loads(GOLDEN.read_text())
    assert validate_record(old) == old  # same keys, same values, ints stay ints
    assert isinstance(old["metrics"]["best_val_epoch"], int)
    store = RunStore(tmp_path / "quick")
    store.result_path(old["run_key"]).parent.mkdir(parents=True)
    store.result_path(old["run_key"]).write_text(GOLDEN.read_text())
    assert store.read(old["run_key"]).dump() == old
    df = report.load_results(tmp_path / "quick")
    assert df["test_acc"].tolist() == [old["metrics"]["test_acc"]]
    assert df["task:T2"].tolist() == [old["metrics"]["task_acc"]["T2"]]


def test_missing_optional_and_unknown_fields_are_tolerated():
    minimal = {"run_key": "k", "status": "failed", "row": "CKA", "column": "digits", "seed": 3}
    assert validate_record(minimal) == minimal
    future = {**minimal, "status": "finished", "gpu_hours": 0.25, "metrics": {"new_acc": 0.5}}
    assert validate_record(future) == future
    assert RunRecord.parse(future).model_extra == {"gpu_hours": 0.25}


def test_a_bad_record_is_refused_on_write_and_ignored_on_read(planned, tmp_path: Path):
    store = RunStore(tmp_path / "tiny")
    good = RunRecord.for_run(planned, "finished").dump()
    with pytest.raises(InvalidRecord, match=r"missing \['seed'\]"):
        RunRecord.parse({k: v for k, v in good.items() if k != "seed"})
    with pytest.raises(InvalidRecord, match="metrics.test_acc"):
        RunRecord.parse({**good, "metrics": {"test_acc": "high"}})
    changed = RunRecord.parse(good)
    changed.status = "running"  # set after it was built: the store checks it again
    with pytest.raises(InvalidRecord, match="status"):
        store.write(changed)
    assert not store.run_dir(planned.key).exists()  # nothing half-written
    path = store.result_path(planned.key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**good, "seed": "zero"}))
    assert store.read(planned.key) is None and not store.is_finished(planned.key)
    with pytest.raises(InvalidRecord, match=rf"{re.escape(str(path))}: not a run record \(seed"):
        read_record(path)  # the error names the file
    with pytest.warns(UserWarning, match="not a run record"):
        assert report.read_records(tmp_path / "tiny") == []


def test_names_are_defined_once_on_the_record():
    """The frame's id columns, its metric columns and the metrics a run logs to MLflow
    all come from RunRecord / Metrics."""
    from bench.tracking.runs import final_metrics

    assert list(RunRecord.IDS) == report.ID_COLUMNS
    assert set(RunRecord.IDS) <= set(RunRecord.model_fields)
    assert report.SCALAR_METRICS == [
        "test_acc",
        "val_acc",
        "test_acc_at_best_val",
        "val_falls",
        "val_fall_drop",
    ]
    scalars = {name: float(i) for i, name in enumerate(Metrics.scalars(), 1)}
    rec = RunRecord.parse(
        {"run_key": "k", "status": "finished", "row": "r", "column": "c", "seed": 0}
        | {"metrics": scalars | {"task_acc": {"T1": 0.5}}}
    )
    assert final_metrics(rec) == scalars | {"task_acc/T1": 0.5}


# --------------------------------------------------------------- import direction

LOWER = [
    "bench/tracking",
    "bench/report",
    "bench/report/plots.py",
    "bench/core/record.py",
    "bench/core/store.py",
]
UPPER = {
    "bench.experiment.runner",
    "bench.launch.local",
    "bench.launch.suite",
    "bench.engine.train",
    "bench.tune.run",
    "bench.tune.trials",
    "bench.tune.tracker",
    "bench.studies.cka.paper",
    "bench.studies.cka.reproduction",
    "bench.studies.cka.verdict",
}


def test_tracking_report_and_plots_never_import_up_the_flow():
    files = [p for place in LOWER for p in sorted((ROOT / place).glob("**/*.py")) or [ROOT / place]]
    assert len(files) >= 12
    reaching_up = {
        str(f.relative_to(ROOT)): sorted(imported_modules(f) & UPPER)
        for f in files
        if imported_modules(f) & UPPER
    }
    assert reaching_up == {}


def test_the_import_check_sees_lazy_imports(tmp_path: Path):
    probe = tmp_path / "m.py"
    probe.write_text(
        "def f():\n    from bench.experiment.runner import execute\n    from bench.launch import suite\n"
    )
    assert {"bench.experiment.runner", "bench.launch.suite"} <= imported_modules(probe)


REBUILD = """
import sys
from types import SimpleNamespace as NS
from bench.tracking.reconcile import rebuild_record
meta = NS(suite="tiny", method="vanilla_kd", row="KD", row_order=1, column="digits",
          column_order=0, seed=0)
run = NS(key="k1", meta=meta, spec=NS(model_dump=lambda mode: {"method": "vanilla_kd"}))
history = {"loss": [(1, 0.75), (2, 0.5)], "val_acc": [(1, 0.5), (2, 0.625)]}
client = NS(get_metric_history=lambda run_id, key: [NS(step=s, value=v) for s, v in history[key]])
mlrun = NS(info=NS(run_id="r1"), data=NS(
    metrics={"loss": 0.5, "val_acc": 0.625, "test_acc": 0.875, "best_val_epoch": 2.0,
             "task_acc/T1": 1.0, "time/total": 3.0},
    tags={"teacher_keys": "t1,t2", "device": "cpu"}))
rec = rebuild_record(client, run, mlrun)
print(json.dumps({"record": rec.dump(), "runner": "bench.experiment.runner" in sys.modules}))
"""


def test_reconcile_rebuilds_a_record_without_the_runner():
    out = subprocess.run(
        [sys.executable, "-c", "import json" + REBUILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = json.loads(out)
    assert got["runner"] is False
    rec = got["record"]
    assert validate_record(rec) == rec
    assert rec["metrics"] == {
        "test_acc": 0.875,
        "val_acc": 0.625,
        "best_val_epoch": 2,
        "task_acc": {"T1": 1.0},
    }
    assert isinstance(rec["metrics"]["best_val_epoch"], int)  # a count, logged as a float
    assert rec["history"] == [
        {"epoch": 1, "loss": 0.75, "val_acc": 0.5},
        {"epoch": 2, "loss": 0.5, "val_acc": 0.625},
    ]
    assert rec["teachers"] == [{"key": "t1"}, {"key": "t2"}]
    assert rec["timings"] == {"total": 3.0} and rec["device"] == "cpu"
    assert rec["rebuilt_from_mlflow"] is True and rec["mlflow_run_id"] == "r1"
    assert (rec["run_key"], rec["row"], rec["seed"]) == ("k1", "KD", 0)


def test_plots_render_a_runs_curves_from_its_record():
    from bench.report.plots import run_figures

    rec = RunRecord.parse(json.loads(GOLDEN.read_text()))
    png = run_figures(rec)["curves.png"]
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert run_figures(rec.model_copy(update={"history": []})) == {}
    assert run_figures(rec.model_copy(update={"status": "failed"})) == {}


def test_tune_trials_use_the_tracking_run_api():
    """tune logs through bench.tracking's MlflowRun, not a client of its own."""
    names = imported_modules(ROOT / "bench" / "tune" / "tracker.py")
    assert "bench.tracking.runs.MlflowRun" in names
    source = (ROOT / "bench" / "tune" / "tracker.py").read_text()
    assert "create_run" not in source and "log_batch" not in source and "_probe" not in source
