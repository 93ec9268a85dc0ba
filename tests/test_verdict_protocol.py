"""Equal-budget tuning inside a suite (search: + protocol:), sweeps, the test curve and
their bad inputs (bench.experiment.protocol, bench.tune.suite_studies, bench.experiment.plan)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from bench.cli import main
from bench.core.config import validate_suite
from bench.experiment.plan import dose_points, expand, plan_studies
from bench.experiment.protocol import read_best
from tests.conftest import ROOT, tiny_suite, write_suite

PROTOCOL = {"trials": 2, "epochs": 1, "seeds": [0], "n_startup_trials": 1, "pruner": {"type": "none"}}  # fmt: skip
KD_SEARCH = {"T": {"low": 1.0, "high": 4.0, "log": True}, "optim.lr": {"low": 0.001, "high": 0.01}}


def searched_suite(name="searched", **overrides) -> dict:
    methods = [
        {"name": "vanilla_kd"},
        {"name": "vanilla_kd", "search": KD_SEARCH},
        {"name": "cka", "search": {"lambda_inter": {"low": 0.1, "high": 4.0, "log": True}}},
    ]
    return tiny_suite(name, methods=methods, **{"protocol": PROTOCOL, **overrides})


# -------------------------------------------------------------------- planning


def test_every_searched_row_gets_the_one_budget():
    suite = validate_suite(searched_suite(), "s")
    studies = plan_studies(suite)
    assert [s.row for s in studies] == ["Vanilla KD (tuned)", "CKA (tuned)"]
    budgets = {
        (s.cfg.budget.n_trials, s.cfg.epochs, tuple(s.cfg.seeds), s.cfg.sampler.seed,
         s.cfg.pruner.type, s.cfg.objective.epoch)
        for s in studies
    }  # fmt: skip
    assert budgets == {(2, 1, (0,), 0, "none", "last")}
    # the trials of a study never see the suite's test-time options: val split only
    assert all(s.cfg.base.dataset.val_fraction == 0.1 for s in studies)
    # trial 0 is the row's own params (T=1 and the suite's lr 0.003 lie in the space)
    assert studies[0].cfg.enqueue == [{"T": 1.0, "optim.lr": 0.003}]
    # a budget cannot be set on a row: the key is unknown to a method entry
    bad = searched_suite()
    bad["methods"][1]["protocol"] = {"trials": 50}
    with pytest.raises(Exception, match="protocol"):
        validate_suite(bad, "s")


def test_study_key_holds_space_and_budget_not_the_data_location():
    base = plan_studies(validate_suite(searched_suite(), "s"))[0]
    more = plan_studies(validate_suite(searched_suite(protocol={**PROTOCOL, "trials": 3}), "s"))
    moved = searched_suite()
    moved["datasets"][0]["root"] = "/elsewhere"
    space = searched_suite()
    space["methods"][1]["search"] = {"T": {"low": 1.0, "high": 8.0}}
    assert more[0].key != base.key
    assert plan_studies(validate_suite(space, "s"))[0].key != base.key
    assert plan_studies(validate_suite(moved, "s"))[0].key == base.key


def test_pending_rows_are_placeholders_until_their_study_ends():
    suite = validate_suite(searched_suite(), "s")
    runs = expand(suite)
    tuned = [r for r in runs if r.meta.study]
    assert {r.meta.row for r in tuned} == {"Vanilla KD (tuned)", "CKA (tuned)"}
    assert all(r.meta.pending for r in tuned)
    # a tuned row never shares a key with the untuned row, even at the same params
    kd, kd_tuned = (next(r for r in runs if r.meta.row == row) for row in ("Vanilla KD", "Vanilla KD (tuned)"))  # fmt: skip
    assert kd.spec.params == kd_tuned.spec.params and kd.key != kd_tuned.key
    best = expand(suite, tuned={(1, "digits"): {"T": 2.0, "optim.lr": 0.004}})
    row = next(r for r in best if r.meta.row == "Vanilla KD (tuned)")
    assert not row.meta.pending
    assert row.spec.params["T"] == 2.0 and row.spec.optim.lr == 0.004


def test_sweep_expands_to_the_rows_it_names_and_reuses_equal_runs():
    methods = [
        {"name": "vanilla_kd"},
        {"name": "cka"},
        {"name": "cka", "sweep": {"lambda_inter": [0, 0.5, 1, 4]}},
    ]
    runs = expand(validate_suite(tiny_suite(methods=methods, seeds=[0, 1]), "s"))
    rows = list(dict.fromkeys(r.meta.row for r in runs))
    # lambda_inter=1 is the CKA row's run: it stands for that point, not run twice
    assert rows == ["Vanilla KD", "CKA", "CKA (lambda_inter=0)", "CKA (lambda_inter=0.5)", "CKA (lambda_inter=4)"]  # fmt: skip
    assert len(runs) == 5 * 2
    assert [r.meta.row_order for r in runs] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert dose_points(runs) == {
        (2, "lambda_inter"): {
            0.0: "CKA (lambda_inter=0)",
            0.5: "CKA (lambda_inter=0.5)",
            1.0: "CKA",
            4.0: "CKA (lambda_inter=4)",
        }
    }
    sweep_run = next(r for r in runs if r.meta.row == "CKA (lambda_inter=4)")
    assert sweep_run.spec.params["lambda_inter"] == 4.0


# ------------------------------------------------------------------- bad input

BAD = [
    (
        {"methods": [{"name": "vanilla_kd", "search": {"alpha": {"low": 0, "high": 1}}}]},
        "methods.0.search.alpha: not a param of method 'vanilla_kd'",
    ),
    (
        {"methods": [{"name": "vanilla_kd", "search": {"T": {"low": 0.0, "high": 4}}}]},
        "methods.0.search.T.low: Input should be greater than 0 (got 0.0)",
    ),
    (
        {"methods": [{"name": "vanilla_kd", "search": {"optim.lr": {"low": -1, "high": 1}}}]},
        "methods.0.search.optim.lr.low: Input should be greater than 0",
    ),
    (
        {"methods": [{"name": "vanilla_kd", "search": {"optim.epochs": {"low": 1, "high": 9}}}]},
        "methods.0.search.optim.epochs: only optim.lr",
    ),
    (
        {"protocol": None},
        "methods.0.search needs a suite-level protocol: section",
    ),
    (
        {"methods": [{"name": "vanilla_kd"}], "protocol": PROTOCOL},
        "protocol: no method entry has search:",
    ),
    ({"protocol": {**PROTOCOL, "trials": 0}}, "protocol.trials: Input should be greater than 0"),
    (
        {"methods": [{"name": "vanilla_kd", "sweep": {"lambda_intra": [0, 1]}}]},
        "methods.0.sweep.lambda_intra: not a loss weight of method 'vanilla_kd' (weights: lambda_std)",
    ),
    (
        {"methods": [{"name": "cka", "sweep": {"lambda_intra": [0], "lambda_inter": [1]}}]},
        "sweep one per entry",
    ),
    (
        {"methods": [{"name": "cka", "sweep": {"lambda_intra": [0]}, "search": KD_SEARCH}]},
        "search and sweep in one entry",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), BAD)
def test_bad_protocol_input_exits_2_before_anything_trains(tmp_path, capsys, changes, expected):
    suite = tiny_suite(methods=[{"name": "vanilla_kd", "search": KD_SEARCH}], protocol=PROTOCOL)
    for key, value in changes.items():
        if value is None:
            suite.pop(key)
        else:
            suite[key] = value
    if "protocol" not in changes and not any("search" in m for m in suite["methods"]):
        suite.pop("protocol")  # a sweep needs no protocol
    path = write_suite(tmp_path / "bad.yaml", suite)
    results = tmp_path / "results"
    code = main(["run", str(path), "--results", str(results), "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert expected in err
    assert "\n" not in err
    assert not results.exists()


# ------------------------------------------------------------------ end to end


def test_tuning_inside_a_suite_never_reads_the_test_split(tmp_path, sealed_digits, capsys):
    """Through the loader: every read of the test split raises. The studies finish their
    budget (so no trial touched test); only the final runs, which test, trip the seal."""
    suite = searched_suite("sealed")
    suite["methods"] = suite["methods"][1:]  # the searched rows only
    suite["datasets"][0]["name"] = sealed_digits
    path = write_suite(tmp_path / "sealed.yaml", suite)
    results = tmp_path / "results"
    code = main(["run", str(path), "--results", str(results), "--no-mlflow", "--no-progress"])
    assert code == 1  # the final (tested) runs failed on the seal
    for study in plan_studies(validate_suite(suite, "s")):
        assert read_best(results, study) is not None
        loaded = optuna.load_study(
            study_name=study.name,
            storage=f"sqlite:///{results / 'tune' / study.name / 'optuna.db'}",
        )
        assert len(loaded.trials) == 2 and all(t.state.name == "COMPLETE" for t in loaded.trials)
    records = [yaml.safe_load(p.read_text()) for p in results.glob("sealed/runs/*/result.json")]
    assert len(records) == 2
    assert all("test split was read" in r["error"] for r in records)


def test_suite_tunes_then_trains_best_and_rerun_reuses_everything(tmp_path, capsys):
    suite = searched_suite("e2e", record_test_curve=True)
    suite["methods"] = [{"name": "vanilla_kd"}, suite["methods"][1]]
    path = write_suite(tmp_path / "e2e.yaml", suite)
    results = tmp_path / "results"
    argv = ["run", str(path), "--results", str(results), "--no-mlflow", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tuned Vanilla KD (tuned) / digits: 2 trial(s) run" in out
    table = (results / "e2e" / "table.md").read_text()
    assert "Vanilla KD (tuned)" in table
    assert "(tuned) rows: each row and column tuned on the same budget, 2 Optuna trials" in table
    study = plan_studies(validate_suite(suite, "s"))[0]
    best = read_best(results, study)
    rec = next(
        yaml.safe_load(p.read_text())
        for p in results.glob("e2e/runs/*/result.json")
        if "(tuned)" in p.read_text()
    )
    assert rec["spec"]["params"]["T"] == pytest.approx(best["T"])
    assert rec["spec"]["optim"]["lr"] == pytest.approx(best["optim.lr"])
    assert rec["spec"]["optim"]["epochs"] == 2  # the suite's epochs, not the trial's 1
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    assert all(0 <= h["curve_test_acc"] <= 1 for h in rec["history"])
    assert rec["history"][-1]["curve_test_acc"] == pytest.approx(rec["metrics"]["test_acc"])
    # a re-run tunes nothing and runs nothing
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tuned" not in out.split("skipping")[0] and "0 run(s) done, 2 skipped" in out


def test_test_curve_changes_no_number(tmp_path):
    """The curve is read after validation and never decides: same weights either way."""
    runs = []
    for curve in (False, True):
        suite = tiny_suite(f"curve{int(curve)}", methods=[{"name": "vanilla_kd"}])
        suite["record_test_curve"] = curve
        path = write_suite(tmp_path / f"c{int(curve)}.yaml", suite)
        assert main(["run", str(path), "--results", str(tmp_path / "r"), "--no-mlflow", "--no-progress"]) == 0  # fmt: skip
        (rec_path,) = (tmp_path / "r" / suite["name"] / "runs").glob("*/result.json")
        runs.append(yaml.safe_load(rec_path.read_text()))
    off, on = runs
    assert off["metrics"]["test_acc"] == on["metrics"]["test_acc"]
    assert [h["val_acc"] for h in off["history"]] == [h["val_acc"] for h in on["history"]]
    assert [h["loss"] for h in off["history"]] == [h["loss"] for h in on["history"]]
    assert "curve_test_acc" not in off["history"][0] and "curve_test_acc" in on["history"][0]


def _complete_trials(db: Path) -> list[int]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as con:
            rows = con.execute("SELECT number FROM trials WHERE state = 'COMPLETE'").fetchall()
    except sqlite3.Error:
        return []
    return sorted(n for (n,) in rows)


def test_kill_9_during_tuning_resumes_without_repeating_a_finished_trial(tmp_path):
    suite = searched_suite("killed", protocol={**PROTOCOL, "trials": 4, "epochs": 2})
    suite["methods"] = [suite["methods"][1]]
    path = write_suite(tmp_path / "killed.yaml", suite)
    results = tmp_path / "results"
    study = plan_studies(validate_suite(suite, "s"))[0]
    db = results / "tune" / study.name / "optuna.db"
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--results", str(results),
           "--no-mlflow", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while len(_complete_trials(db)) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the suite ended before it could be killed mid-study"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _complete_trials(db)
    assert 1 <= len(before) < 4
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    loaded = optuna.load_study(study_name=study.name, storage=f"sqlite:///{db}")
    complete = [t.number for t in loaded.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # the budget, no more, no less
    assert set(before) <= set(complete)  # finished trials kept, not repeated
    states = [t.state.name for t in loaded.trials]
    assert "RUNNING" not in states  # the killed trial was marked failed on resume
    assert read_best(results, study) is not None
    assert len(list((results / "killed" / "runs").glob("*/result.json"))) == 1


# -------------------------------------------------------------------- the page


def test_verdict_page_from_a_finished_study(tmp_path, capsys):
    """`bench verdict` renders the answer, the CIs (checked against the records by hand),
    budgets, dose plots, the three selection protocols and power from a finished study."""
    import math

    from scipy import stats

    methods = [
        {"name": "supervised"},
        {"name": "vanilla_kd"},
        {"name": "cka"},
        {"name": "cka", "label": "CKA (paper-literal)", "params": {"reading": "paper-literal"}},
        {"name": "vanilla_kd", "search": {"optim.lr": {"low": 0.002, "high": 0.005}}},
        {"name": "cka", "search": {"optim.lr": {"low": 0.002, "high": 0.005}}},
        {"name": "cka", "sweep": {"lambda_inter": [0, 1]}},
    ]
    suite = tiny_suite("page", methods=methods, seeds=[0, 1], protocol=PROTOCOL,
                       record_test_curve=True)  # fmt: skip
    path = write_suite(tmp_path / "page.yaml", suite)
    results = tmp_path / "results"
    argv = ["run", str(path), "--results", str(results), "--no-mlflow", "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "docs" / "verdict.md"
    assert main(["verdict", str(results / "page"), "--suite", str(path), "--out", str(out)]) == 0
    page = out.read_text()
    recs = [
        yaml.safe_load(p.read_text()) for p in (results / "page" / "runs").glob("*/result.json")
    ]
    acc = {(r["row"], r["seed"]): r["metrics"]["test_acc"] * 100 for r in recs}
    d = [acc[("CKA (tuned)", s)] - acc[("Vanilla KD (tuned)", s)] for s in (0, 1)]
    mean = sum(d) / 2
    if abs(d[0] - d[1]) > 1e-9:  # a t interval exists: check its ends by hand
        half = stats.t.ppf(0.975, 1) * abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2)
        assert f"[{mean - half:+.2f}, {mean + half:+.2f}]" in page
    assert f"{mean:+.2f}" in page
    assert page.startswith("# The verdict: does CKA beat a fairly tuned Vanilla KD?")
    assert "settings with headroom" in page
    assert "- **digits** (ceiling control: " in page or "- **digits** (headroom: " in page
    assert "- CKA (tuned) (searched optim.lr): optim.lr=" in page
    assert "| lambda_inter | Δ val | Δ test |" in page
    assert (
        "![dose-response of lambda_inter on digits](verdict/dose_lambda-inter_digits.png)" in page
    )
    assert (out.parent / "verdict" / "dose_lambda-inter_digits.png").is_file()
    assert "| row | last (reported) | best-val | best-test (optimistic) | inflation |" in page
    assert "seeds to detect 1 point" in page
    assert "No GPU was lent" in page
    # a row that is not in the study: one line, exit 2
    code = main(["verdict", str(results / "page"), "--suite", str(path), "--out", str(out),
                 "--candidate", "DKD"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "row 'DKD' has no finished runs" in err and "\n" not in err


@pytest.mark.parametrize(
    ("mean", "sd", "expected"),
    [
        (+2.0, 0.5, "the default reading wins on val; the default stays"),
        (-2.4, 1.5, "the paper-literal reading wins on val, but it makes L_inter"),
        (-0.3, 0.5, "within the rule's noise: the default stays"),
        (-2.4, 8.0, "within the rule's noise: the default stays"),  # 2.4 < s.e. 8/sqrt(4)=4
    ],
)
def test_readings_rule_never_picks_a_reading_that_makes_a_term_constant(mean, sd, expected):
    """The re-read default follows the reproduction rule whole: win by > 0.5 points and > 1
    s.e. on val, and a win of the printed reading that makes L_inter constant (pi = I)
    keeps the default."""
    from bench.studies.cka.verdict import readings_lines

    class Stub:
        def effect(self, row, reference, column, metric):
            assert (row, reference, metric) == ("CKA", "CKA (paper-literal)", "val_acc")
            return {"mean": mean, "sd": sd, "n": 4}

    (line,) = readings_lines(Stub(), ["scratch"], ["scratch"])
    assert f"= {mean:+.2f} val points (s.e. {sd / 2:.2f})" in line
    assert expected in line
