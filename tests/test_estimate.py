"""``bench run --dry-run --estimate`` (bench.experiment.estimate): timed probes -> per-run steps and
device-hours, finished runs and cached teachers skipped, total = sum of the parts."""

from __future__ import annotations

import math

import pytest
import torch

from bench.cli import main
from bench.core.atomic import atomic_write_json
from bench.core.config import load_suite
from bench.core.record import RunRecord
from bench.core.store import RunStore
from bench.engine.train import epoch_steps
from bench.experiment.estimate import Probe, estimate_suite, run_seconds
from bench.experiment.plan import expand
from tests.conftest import ROOT, tiny_suite, write_suite


def test_epoch_steps_and_the_formula():
    assert [epoch_steps(n, 64) for n in (0, 10, 64, 127, 128)] == [0, 1, 1, 1, 2]
    probe = Probe(step_s=0.5, eval_s_per_image=0.01, startup_s=3.0)
    assert run_seconds(probe, 10, 200) == pytest.approx(3 + 5 + 2)
    assert run_seconds(probe, 0, 200) == pytest.approx(2)  # evaluation only: no start-up


def test_quick_suite_estimate_skips_finished_runs_and_cached_teachers(tmp_path):
    suite = load_suite(ROOT / "suites" / "quick.yaml")
    runs = expand(suite, [0, 1])
    done = next(r for r in runs if r.meta.method == "cka" and r.meta.seed == 1)
    RunStore(tmp_path / "quick").write(RunRecord.for_run(done, "finished"))
    t1 = runs[0].spec.teacher_specs(2)[0]
    atomic_write_json(tmp_path / "teachers" / t1.key / "meta.json", {"key": t1.key})
    torch.save({}, tmp_path / "teachers" / t1.key / "teacher.pt")  # cached: meta + weights

    est = estimate_suite(suite, tmp_path, "cpu", [0, 1], probe_steps=(1, 1), eval_images=64)

    assert est.device == "cpu" and est.finished == 1 and est.cached_teachers == 1
    teachers = [c for c in est.items if c.what == "teacher"]
    by_key = {c.key: c for c in est.items if c.what == "run"}
    assert [c.label for c in teachers] == ["digits T2 small_cnn"]
    rows = {r.meta.row for r in runs}  # quick.yaml's rows (two teacher rows), 2 seeds each
    assert len(by_key) == 2 * len(rows) - 1 and done.key not in by_key
    # digits: 1797 images, 20% test, 10% of the rest validation -> 1293 train (20 batches of
    # 64), 646 in the second teacher's task (10 batches); quick.yaml: 4 and 15 epochs
    assert teachers[0].steps == 15 * 10
    for run in runs:
        if run.key == done.key:
            continue
        cost = by_key[run.key]
        trains = run.meta.method not in ("teacher", "ensemble")
        assert cost.steps == (4 * 20 if trains else 0) and cost.seconds > 0
        assert cost.label.endswith(f"digits | seed {run.meta.seed}")
    seeds = {}
    for run in runs:  # one probe per (dataset, teachers, student, method): seeds cost alike
        if run.key in by_key:
            seeds.setdefault(run.meta.row, set()).add(round(by_key[run.key].seconds, 12))
    assert all(len(v) == 1 for v in seeds.values())
    assert est.probes == len({r.meta.method for r in runs}) + 1  # methods + the teacher recipe
    trained = [r for r in runs if r.key in by_key and r.meta.method not in ("teacher", "ensemble")]
    assert est.total_steps == sum(c.steps for c in est.items) == 150 + len(trained) * 80
    assert math.isclose(est.total_seconds, sum(c.seconds for c in est.items))
    text = est.describe()
    assert "CPU-h" in text and f"{est.total_seconds / 3600:.4f} CPU-h" in text
    assert "skipped: 1 finished run(s), 1 cached teacher(s)" in text


def test_cli_dry_run_estimate_prints_and_writes_nothing(tmp_path, capsys):
    path = write_suite(tmp_path / "tiny.yaml", tiny_suite())
    results = tmp_path / "results"
    assert main(["run", str(path), "--dry-run", "--estimate", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 0 done, 4 to do" in out  # the plan (two teacher rows), then the estimate
    assert "estimate on cpu (4 timed probe(s)" in out  # 3 methods + the teacher recipe
    assert (
        "total: 4 run(s) + 2 teacher(s) to train, 80 steps" in out
    )  # KD 2 x 20 + teachers 2 x 2 x 10
    assert not results.exists()
