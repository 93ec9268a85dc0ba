"""bench.report / bench.report.plots: tables from result.json files written in tmp_path."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from bench import report
from bench.core.record import RunRecord
from bench.studies.cka.paper import paper_reference  # also registers --reference paper

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("KA_BENCH_UPDATE_GOLDEN") == "1"

# row label, method, row_order -> {column: [acc per seed 0, 1, 2] (None = run missing)}
GOLDEN_SUITE = {
    ("Supervised", "supervised", 0): {
        "digits": [0.980, 0.985, 0.975],
        "stanford_dogs": [0.90, 0.91, 0.89],
    },
    ("Teacher 1", "teacher", 1): {"digits": [0.60, 0.60, 0.60], "stanford_dogs": [0.5, 0.5, 0.5]},
    ("Vanilla KD", "vanilla_kd", 2): {
        "digits": [0.80, 0.82, 0.81],
        "stanford_dogs": [0.70, 0.72, None],
    },
    ("CKA (distance=cosine)", "cka", 3): {
        "digits": [0.93, 0.94, 0.95],
        "stanford_dogs": [0.80, 0.82, 0.81],
    },
    ("CKA w/o L_intra", "cka", 4): {
        "digits": [0.94, 0.92, 0.93],
        "stanford_dogs": [0.79, 0.80, 0.78],
    },
}
COLUMN_ORDER = {"digits": 0, "stanford_dogs": 1}


def write_result(root: Path, **fields) -> Path:
    """One ``runs/<key>/result.json`` with the contract's fields (``fields`` override)."""
    rec = {
        "status": "finished",
        "suite": "quick",
        "method": "cka",
        "row": "CKA",
        "row_order": 0,
        "column": "digits",
        "column_order": 0,
        "seed": 0,
        "metrics": {"test_acc": 0.5},
        "history": [],
        "spec": {},
        "timings": {},
        "error": None,
    }
    rec.update(fields)
    rec.setdefault("run_key", f"{rec['row']}-{rec['column']}-{rec['seed']}".replace(" ", "_"))
    rec["run_key"] = rec["run_key"].replace("/", "_")
    path = root / "runs" / rec["run_key"] / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def write_suite(root: Path, suite: dict, tasks: bool = False, history: bool = False) -> Path:
    for (row, method, order), cols in suite.items():
        for col, accs in cols.items():
            for seed, acc in enumerate(accs):
                if acc is None:
                    continue
                metrics = {"test_acc": acc}
                if tasks:
                    metrics["task_acc"] = {"T1": round(acc + 0.01, 4), "T2": round(acc - 0.01, 4)}
                hist = [
                    {"epoch": e, "loss": 1.0 / e, "loss/std": 0.5 / e, "val_acc": acc - 0.1 / e}
                    for e in (1, 2, 3)
                ]
                write_result(
                    root,
                    row=row,
                    method=method,
                    row_order=order,
                    column=col,
                    column_order=COLUMN_ORDER.get(col, 0),
                    seed=seed,
                    metrics=metrics,
                    history=hist if history and method != "teacher" else [],
                )
    return root


@pytest.fixture
def golden_dir(tmp_path: Path) -> Path:
    root = write_suite(tmp_path / "suite", GOLDEN_SUITE, tasks=True, history=True)
    write_result(root, status="failed", row="CKA (distance=cosine)", seed=9, error="NaN loss")
    return root


def cell(summary: pd.DataFrame, row: str, *key) -> tuple[float, float, int]:
    s = summary.loc[row]
    return s[(*key, "mean")], s[(*key, "std")], s[(*key, "n")]


# ------------------------------------------------------------------ loading


def test_load_results_is_tidy_and_failures_are_separate(golden_dir: Path):
    (golden_dir / "runs" / "torn").mkdir()
    (golden_dir / "runs" / "torn" / "result.json").write_text('{"run_key": "torn", "sta')
    with pytest.warns(UserWarning, match=r"torn/result\.json"):
        df = report.load_results(golden_dir)
    assert len(df) == 29  # 5 rows x 2 columns x 3 seeds - 1 missing seed
    for c in report.ID_COLUMNS + ["test_acc", "task:T1", "task:T2"]:
        assert c in df.columns
    row = df[(df["row"] == "Vanilla KD") & (df["column"] == "digits") & (df["seed"] == 1)]
    assert row["test_acc"].item() == 0.82 and row["task:T1"].item() == 0.83
    with pytest.warns(UserWarning):
        failed = report.load_failures(golden_dir)
    assert list(failed["error"]) == ["NaN loss"]
    assert "CKA (distance=cosine)" in set(df["row"])


def test_load_histories(golden_dir: Path):
    hist = report.load_histories(golden_dir)
    assert set(hist["epoch"]) == {1, 2, 3}
    assert "loss/std" in hist and "Teacher 1" not in set(hist["row"])


# --------------------------------------------------------------- summarize


def test_mean_and_sample_std_over_seeds(golden_dir: Path):
    s = report.summarize(report.load_results(golden_dir))
    mean, std, n = cell(s, "CKA (distance=cosine)", "digits")
    assert mean == pytest.approx(94.0) and std == pytest.approx(1.0) and n == 3
    mean, std, n = cell(s, "Supervised", "digits")  # 98.0, 98.5, 97.5 -> sd (ddof=1) 0.5
    assert mean == pytest.approx(98.0) and std == pytest.approx(0.5) and n == 3
    mean, std, n = cell(s, "Vanilla KD", "stanford_dogs")  # 70, 72 -> sd sqrt(2)
    assert mean == pytest.approx(71.0) and std == pytest.approx(math.sqrt(2)) and n == 2


def test_hand_computed_std_ddof1(tmp_path: Path):
    write_suite(tmp_path, {("A", "cka", 0): {"digits": [0.90, 0.92, 0.97]}})
    s = report.summarize(report.load_results(tmp_path))
    # deviations -3, -1, +4 (in %) -> var = 26 / 2 = 13
    mean, std, n = cell(s, "A", "digits")
    assert mean == pytest.approx(93.0) and std == pytest.approx(math.sqrt(13)) and n == 3
    assert report.AVG not in s.columns.get_level_values(0)  # one dataset: no Avg.


def test_order_follows_row_and_column_order_not_alphabet(tmp_path: Path):
    for row, ro in (("Zeta", 0), ("Alpha", 1), ("Mid", 2)):
        for col, co in (("zz", 0), ("aa", 1)):
            write_result(tmp_path, row=row, row_order=ro, column=col, column_order=co)
    s = report.summarize(report.load_results(tmp_path))
    assert list(s.index) == ["Zeta", "Alpha", "Mid"]
    assert list(dict.fromkeys(s.columns.get_level_values(0))) == ["zz", "aa", report.AVG]


def test_avg_column_is_mean_of_row_means(golden_dir: Path):
    s = report.summarize(report.load_results(golden_dir))
    assert s.loc["CKA (distance=cosine)", (report.AVG, "mean")] == pytest.approx((94 + 81) / 2)
    assert s.loc["Vanilla KD", (report.AVG, "mean")] == pytest.approx((81 + 71) / 2)
    assert math.isnan(s.loc["Vanilla KD", (report.AVG, "std")])


def test_per_task_columns(golden_dir: Path):
    s = report.summarize(report.load_results(golden_dir), per_task=True)
    keys = list(dict.fromkeys(c[:-1] for c in s.columns))
    assert keys == [
        ("digits", "T1"),
        ("digits", "T2"),
        ("digits", "Merge"),
        ("stanford_dogs", "T1"),
        ("stanford_dogs", "T2"),
        ("stanford_dogs", "Merge"),
        (report.AVG, ""),
    ]
    assert cell(s, "CKA (distance=cosine)", "digits", "T1")[0] == pytest.approx(95.0)
    assert cell(s, "CKA (distance=cosine)", "digits", "T2")[0] == pytest.approx(93.0)
    assert cell(s, "CKA (distance=cosine)", "digits", "Merge")[0] == pytest.approx(94.0)


# ------------------------------------------------------------------ ranking


def test_bold_underline_dagger_and_missing_seed(golden_dir: Path):
    md = report.render_table(golden_dir, "markdown")
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "**94.00 ± 1.00**" in lines["CKA (distance=cosine)"]
    assert "**87.50**" in lines["CKA (distance=cosine)"]  # Avg. ranked too
    # second best, not significantly different from the best (paired t-test, n=3)
    assert "<u>93.00 ± 1.00</u>†" in lines["CKA w/o L_intra"]
    assert "<u>79.00 ± 1.00</u>†" in lines["CKA w/o L_intra"]
    # 80, 82, 81 vs 93, 94, 95: significantly worse -> no dagger; one seed missing on dogs
    assert re.search(r"\| +81\.00 ± 1\.00 +\|", lines["Vanilla KD"])
    assert "71.00 ± 1.41 (n=2)" in lines["Vanilla KD"]
    # references: shown first, never bold although Supervised is the highest
    order = [k for k in lines if k not in ("Method",)]
    assert order[:2] == ["Supervised", "Teacher 1"]
    assert "**" not in lines["Supervised"] and "98.00 ± 0.50" in lines["Supervised"]
    assert "ddof=1" in md and "1 failed run not included" in md
    assert "Not tested: the paired differences have zero variance" in md


def test_method_beats_another_significantly_with_six_seeds(tmp_path: Path):
    a = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95]
    b = [x - d for x, d in zip(a, [0.05, 0.06, 0.04, 0.05, 0.07, 0.05])]
    c = [x + d for x, d in zip(a, [0.01, -0.02, 0.005, 0.01, -0.01, -0.005])]
    write_suite(tmp_path, {("A", "cka", 0): {"digits": a}, ("B", "cfl", 1): {"digits": b}})
    write_suite(tmp_path, {("C", "vanilla_kd", 2): {"digits": c}})
    df = report.load_results(tmp_path)
    for test in ("ttest", "wilcoxon"):
        table = report.build_table(df, test=test)
        res = table.tests[("digits",)]
        assert res["B"].significant(0.05), test
        assert res["C"].testable and not res["C"].significant(0.05)
        assert ("B", ("digits",)) not in table.daggers
        assert ("C", ("digits",)) in table.daggers
    assert res["B"].pvalue == pytest.approx(0.03125)  # exact Wilcoxon minimum for n=6


def test_wilcoxon_with_three_seeds_gives_no_marks_and_says_why(golden_dir: Path):
    md = report.render_table(golden_dir, "markdown", test="wilcoxon")
    assert "†" not in md.split("\n\n")[0]
    assert "With 3 seeds a Wilcoxon test cannot reach p<0.05; no significance marks." in md
    tex = report.render_table(golden_dir, "latex", test="wilcoxon")
    assert r"With 3 seeds a Wilcoxon test cannot reach p$<$0.05" in tex


def test_excluded_methods_are_a_parameter(golden_dir: Path):
    df = report.load_results(golden_dir)
    table = report.build_table(df, exclude=())
    assert table.unranked == []
    assert table.marks[("Supervised", ("digits",))] == "best"


# ---------------------------------------------------------------- formats


def _check_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        pytest.skip(f"wrote {path}; inspect it and rerun")
    assert path.exists(), f"{path} missing: run with KA_BENCH_UPDATE_GOLDEN=1, then inspect it"
    assert text == path.read_text()


def _golden_latex(golden_dir: Path, per_task: bool) -> str:
    return report.render_table(
        golden_dir,
        "latex",
        per_task=per_task,
        caption="Union top-1 accuracy (%) on digits & stanford_dogs",
        label="tab:golden table",
    )


def test_latex_golden(golden_dir: Path):
    _check_golden(_golden_latex(golden_dir, False), "table.tex")


def test_latex_golden_per_task(golden_dir: Path):
    _check_golden(_golden_latex(golden_dir, True), "table_tasks.tex")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not on PATH")
def test_latex_compiles(golden_dir: Path, tmp_path: Path):
    body = "\n".join(
        [
            _golden_latex(golden_dir, False),
            _golden_latex(golden_dir, True),
            report.render_table(golden_dir, "latex", reference="paper:5", per_task=True),
        ]
    )
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        + body
        + "\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_csv_is_raw_numbers(golden_dir: Path):
    text = report.render_table(golden_dir, "csv")
    csv = pd.read_csv(StringIO(text)).set_index("row")
    assert list(csv.index[:2]) == ["Supervised", "Teacher 1"]
    assert csv.loc["CKA (distance=cosine)", "digits/mean"] == pytest.approx(94.0)
    assert csv.loc["CKA (distance=cosine)", "digits/std"] == pytest.approx(1.0)
    assert csv.loc["Vanilla KD", "stanford_dogs/n"] == 2
    assert csv.loc["Vanilla KD", "method"] == "vanilla_kd"
    assert csv.loc["Vanilla KD", "Avg./mean"] == pytest.approx(76.0)
    tasks = pd.read_csv(StringIO(report.render_table(golden_dir, "csv", per_task=True)))
    assert "digits/T1/mean" in tasks and "digits/Merge/n" in tasks


def test_render_writes_out_atomically(golden_dir: Path, tmp_path: Path):
    out = tmp_path / "out" / "t.md"
    text = report.render_table(golden_dir, "markdown", out=out)
    assert out.read_text() == text
    assert [p.name for p in out.parent.iterdir()] == ["t.md"]
    with pytest.raises(ValueError, match="format"):
        report.render_table(golden_dir, "html")


# ---------------------------------------------------------------- reference


def test_paper_reference_numbers():
    t2 = paper_reference(2)
    assert set(t2["dataset"]) == {
        "cub200",
        "stanford_dogs",
        "stanford_cars",
        "fgvc_aircraft",
        "average",
    }
    assert len(t2) == 9 * 5
    cka = t2[(t2["method"] == "cka") & (t2["dataset"] == "fgvc_aircraft")].iloc[0]
    assert (cka["mean"], cka["std"]) == (80.78, 0.08)
    assert set(t2.loc[t2["method"] == "teacher", "row"]) == {"Teacher 1", "Teacher 2"}
    t5 = paper_reference(5)
    assert set(t5["dataset"]) == {"T1", "T2", "Merge"}
    merge = t5[(t5["method"] == "cka") & (t5["dataset"] == "Merge")].iloc[0]
    assert (merge["mean"], merge["std"]) == (88.21, 0.50)
    with pytest.raises(ValueError, match="Tables 2 and 5"):
        paper_reference(3)


def test_paper_reference_rows(tmp_path: Path):
    suite = {
        ("Teacher 1", "teacher", 0): {"cars": [0.7, 0.7, 0.7]},
        ("CKA", "cka", 1): {"cars": [0.8, 0.81, 0.82]},
    }
    write_suite(tmp_path, suite)
    md = report.render_table(tmp_path, "markdown", reference="paper")
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "82.88 ± 0.21" in lines["CKA (paper)"] and "**" not in lines["CKA (paper)"]
    assert "70.33 ± 0.00" in lines["Teacher 1 (paper)"]
    assert "Vanilla KD (paper)" not in lines  # only methods the suite has
    assert "**81.00 ± 1.00**" in lines["CKA"]
    with pytest.raises(ValueError, match="reference"):
        report.render_table(tmp_path, "markdown", reference="papers")


def test_reference_names_come_from_the_registered_studies(monkeypatch):
    """The report knows no paper: --reference resolves only what a study registered."""
    from bench.report import published

    monkeypatch.setattr(published, "_PUBLICATIONS", {})
    with pytest.raises(ValueError, match="none is"):
        published.resolve_reference("paper")

    def table(n: int) -> published.PublishedTable:
        return published.PublishedTable(pd.DataFrame(), f"Table {n} of mine")

    published.register(published.Publication("mine", (7,), table))
    assert published.resolve_reference("mine").title == "Table 7 of mine"
    assert published.resolve_reference(None) is None
    with pytest.raises(ValueError, match="'mine' or 'mine:7', not 'mine:8'"):
        published.resolve_reference("mine:8")


# ------------------------------------------------------------ suite outputs


def test_write_suite_tables(tmp_path: Path):
    keep = ("Teacher 1", "CKA (distance=cosine)")
    suite = {k: v for k, v in GOLDEN_SUITE.items() if k[0] in keep}
    golden_dir = write_suite(tmp_path / "suite", suite, tasks=True, history=True)
    written = report.write_suite_tables(golden_dir)
    for name in ("table.md", "table.tex", "table.csv", "table_tasks.md", "plots/accuracy.png"):
        assert (golden_dir / name).exists(), name
    curves = [n for n in written if n.startswith("plots/curves_")]
    assert "plots/curves_03_cka-distance-cosine.png" in curves
    assert not any("teacher" in n for n in curves)  # no history, no curve
    assert (golden_dir / "plots/accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(golden_dir.rglob("*.tmp"))


def test_write_suite_tables_without_finished_runs(tmp_path: Path):
    write_result(tmp_path, status="failed", error="boom", metrics={})
    written = report.write_suite_tables(tmp_path)
    assert list(written) == ["table.md"]
    assert "1 failed" in (tmp_path / "table.md").read_text()


# ------------------------------------------------------------------ MLflow


def test_load_results_mlflow(tmp_path: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("quick", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, tags={"mlflow.runName": "suite quick"}).info.run_id
    runs = [
        ("k0", "CKA", 1, 0, "FINISHED", 0.90),
        ("k1", "CKA", 1, 1, "FINISHED", 0.92),
        ("k2", "Teacher 1", 0, 0, "FINISHED", 0.60),
        ("k3", "CKA", 1, 2, "FAILED", None),
    ]
    for key, row, order, seed, status, acc in runs:
        tags = {
            "mlflow.parentRunId": parent,
            "run_key": key,
            "method": "teacher" if row.startswith("Teacher") else "cka",
            "row": row,
            "row_order": str(order),
            "column": "digits",
            "column_order": "0",
            "seed": str(seed),
        }
        run_id = client.create_run(exp, tags=tags).info.run_id
        if acc is not None:
            client.log_metric(run_id, "test_acc", acc)
            client.log_metric(run_id, "task_acc/T1", acc + 0.01)
            client.log_metric(run_id, "task_acc/T2", acc - 0.01)
        client.set_terminated(run_id, status)
    teacher = client.create_run(exp, tags={"kind": "teacher", "run_key": "t0", "row": "x"})
    client.set_terminated(teacher.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")

    df = report.load_results_mlflow("quick", uri)
    assert sorted(df["run_key"]) == ["k0", "k1", "k2"]
    assert list(df.columns[: len(report.ID_COLUMNS)]) == report.ID_COLUMNS
    k1 = df.set_index("run_key").loc["k1"]
    assert (k1["seed"], k1["row_order"], k1["method"]) == (1, 1, "cka")
    assert k1["test_acc"] == pytest.approx(0.92) and k1["task:T2"] == pytest.approx(0.91)
    assert list(report.load_failures_mlflow("quick", uri)["run_key"]) == ["k3"]
    s = report.summarize(df, per_task=True)
    assert list(s.index) == ["Teacher 1", "CKA"]
    assert cell(s, "CKA", "digits", "Merge")[0] == pytest.approx(91.0)
    with pytest.raises(ValueError, match="no MLflow experiment"):
        report.load_results_mlflow("missing", uri)


def test_superseded_runs_leave_the_table():
    """A row whose params changed (a new default reading) runs under a new key: the old
    record of that cell must not be averaged with the new one; other seeds stay."""
    from bench.report import drop_superseded

    def rec(key, row, seed):
        return RunRecord.parse(
            {"run_key": key, "status": "finished", "row": row, "column": "digits", "seed": seed}
        )

    records = [rec("old0", "CKA", 0), rec("new0", "CKA", 0), rec("old1", "CKA", 1)]
    planned = {("CKA", "digits", 0): "new0"}  # e.g. --seeds 0 with the new default
    kept = [r.run_key for r in drop_superseded(records, planned)]
    assert kept == ["new0", "old1"]


def test_drop_superseded_orders_rows_and_columns_as_the_plan_reads_now():
    """Records written under an earlier order of the suite's entries sort as the plan."""
    from bench.report import drop_superseded

    def rec(key, row, order, column="c", seed=0):
        return RunRecord.parse({"run_key": key, "row": row, "row_order": order, "column": column,
                "column_order": 5, "seed": seed, "status": "finished"})  # fmt: skip

    records = [rec("a", "KD", 0), rec("b", "CKA (sweep)", 1), rec("c", "KD (tuned)", 9)]
    planned = {("KD", "c", 0): "a", ("KD (tuned)", "c", 0): "c", ("CKA (sweep)", "c", 0): "b"}
    kept = drop_superseded(records, planned)
    assert {r.row: r.row_order for r in kept} == {"KD": 0, "KD (tuned)": 1, "CKA (sweep)": 2}
    assert {r.column_order for r in kept} == {0}
    assert records[1].row_order == 1  # the caller's records are not changed
