"""``python -m bench run`` end to end on a tiny digits suite, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_suite, write_suite


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def results_of(suite_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted(suite_dir.glob("runs/*/result.json"))
    }


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    suite = write_suite(tmp / "tiny.yaml", tiny_suite(name="tiny"))
    proc = bench(
        "run",
        str(suite),
        "--results",
        str(tmp / "results"),
        "--no-progress",
        "--no-mlflow",
        cwd=ROOT,
    )
    return tmp, suite, proc


def test_run_writes_one_result_per_run_and_a_table(first_run):
    tmp, _, proc = first_run
    assert proc.returncode == 0, proc.stderr
    suite_dir = tmp / "results" / "tiny"
    records = results_of(suite_dir)
    rows = sorted(r["row"] for r in records.values())
    assert rows == ["Ensemble", "Teacher 1", "Teacher 2", "Vanilla KD"]
    for key, rec in records.items():
        assert rec["run_key"] == key and rec["status"] == "finished"
        assert 0.0 <= rec["metrics"]["test_acc"] <= 1.0
        assert set(rec["metrics"]["task_acc"]) == {"T1", "T2"}
    kd = next(r for r in records.values() if r["method"] == "vanilla_kd")
    assert len(kd["history"]) == 2 and "loss/std" in kd["history"][0]
    assert "val_acc" in kd["history"][-1]
    # a teacher row never predicts outside its own classes
    t1 = next(r for r in records.values() if r["row"] == "Teacher 1")
    assert t1["metrics"]["task_acc"]["T2"] == 0.0
    table = (suite_dir / "table.md").read_text()
    for row in rows:
        assert row in table
    assert table.strip() in proc.stdout


def test_rerun_skips_everything_and_retrains_nothing(first_run):
    tmp, suite, _ = first_run
    suite_dir = tmp / "results" / "tiny"
    before = {k: r["metrics"] for k, r in results_of(suite_dir).items()}
    mtimes = {p: p.stat().st_mtime_ns for p in suite_dir.glob("runs/*/result.json")}
    teacher_files = {p: p.stat().st_mtime_ns for p in (tmp / "results" / "teachers").rglob("*")}
    proc = bench(
        "run",
        str(suite),
        "--results",
        str(tmp / "results"),
        "--no-progress",
        "--no-mlflow",
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipping 4 finished run(s)" in proc.stdout
    assert "0 run(s) done, 4 skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert {p: p.stat().st_mtime_ns for p in teacher_files} == teacher_files
    assert {k: r["metrics"] for k, r in results_of(suite_dir).items()} == before


def test_teacher_cache_hit_across_two_suites(first_run):
    """A second suite (other name, other methods) needing the same teachers loads them."""
    tmp, _, _ = first_run
    other = write_suite(
        tmp / "other.yaml", tiny_suite(name="other", methods=[{"name": "ensemble"}])
    )
    proc = bench(
        "run",
        str(other),
        "--results",
        str(tmp / "results"),
        "--no-progress",
        "--no-mlflow",
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = results_of(tmp / "results" / "other").values()
    assert [t["cached"] for t in rec["teachers"]] == [True, True]
    first = next(
        r for r in results_of(tmp / "results" / "tiny").values() if r["method"] == "ensemble"
    )
    # same teachers, same test split: the ensemble's accuracy is identical
    assert rec["metrics"] == first["metrics"]
    assert len(list((tmp / "results" / "teachers").iterdir())) == 2
