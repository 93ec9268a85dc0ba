"""bench.report.selection (last / best-val / best-test) and ``bench table --select`` on
hand-made histories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.record import RunRecord
from bench.report.selection import (
    MissingTestCurve,
    SelectionUnavailable,
    protocols_frame,
    select_test_acc,
    selected_epoch,
)

# val_acc ties at epochs 2 and 4 (keep_best keeps the first: 2); test peaks at epoch 3
VAL = [0.50, 0.70, 0.60, 0.70, 0.65]
CURVE = [0.45, 0.66, 0.72, 0.69, 0.70]


def history(val=VAL, curve=CURVE) -> list[dict]:
    out = []
    for epoch, v in enumerate(val, start=1):
        entry = {"epoch": epoch, "loss": 1.0 / epoch, "val_acc": v}
        if curve is not None:
            entry["curve_test_acc"] = curve[epoch - 1]
        out.append(entry)
    return out


def record(row="CKA", column="digits", seed=0, *, hist=None, row_order=0, **metrics) -> RunRecord:
    return RunRecord.parse(
        {
            "run_key": f"{row}-{column}-{seed}".replace(" ", "_"),
            "status": "finished",
            "method": "cka",
            "row": row,
            "row_order": row_order,
            "column": column,
            "column_order": 0,
            "seed": seed,
            "metrics": {"test_acc": 0.70} | metrics,
            "history": history() if hist is None else hist,
        }
    )


def test_protocols_pick_their_epochs():
    rec = record()
    assert select_test_acc(rec, "last") == 0.70
    assert selected_epoch(rec, "last") == 5
    assert select_test_acc(rec, "best-val") == 0.66  # first of the val tie, not epoch 4
    assert selected_epoch(rec, "best-val") == 2
    assert select_test_acc(rec, "best-test") == 0.72
    assert selected_epoch(rec, "best-test") == 3


def test_best_val_without_curve_falls_back_to_the_runner_number():
    rec = record(hist=history(curve=None), test_acc_at_best_val=0.64, best_val_epoch=2)
    assert select_test_acc(rec, "best-val") == 0.64
    assert selected_epoch(rec, "best-val") == 2
    assert selected_epoch(rec, "best-test") is None
    with pytest.raises(MissingTestCurve, match="CKA / digits / seed 0") as err:
        select_test_acc(rec, "best-test")
    assert isinstance(err.value, ValueError)
    no_val = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]  # trained, no val split
    with pytest.raises(SelectionUnavailable, match="no validation history"):
        select_test_acc(record(hist=no_val), "best-val")
    with pytest.raises(ValueError, match="unknown selection"):
        select_test_acc(rec, "best")


def test_protocols_frame_in_points():
    shift = [0.02] * 5
    recs = [
        record(seed=0),
        record(seed=1, hist=history(curve=[c + s for c, s in zip(CURVE, shift)]), test_acc=0.72),
        record("Plain", seed=0, hist=history(curve=None), row_order=1, test_acc_at_best_val=0.6),
    ]
    frame = protocols_frame(recs).set_index("row")
    cka = frame.loc["CKA"]
    assert cka["n"] == 2
    assert cka["last"] == pytest.approx(71.0)
    assert cka["best_val"] == pytest.approx(67.0)  # 66, 68
    assert cka["best_test"] == pytest.approx(73.0)  # 72, 74
    assert cka["inflation"] == pytest.approx(2.0)
    plain = frame.loc["Plain"]
    assert plain["best_val"] == pytest.approx(60.0)
    assert math.isnan(plain["best_test"]) and math.isnan(plain["inflation"])
    assert list(frame.index) == ["CKA", "Plain"]


# --------------------------------------------------------------------- CLI


def write_runs(root: Path, recs: list[RunRecord]) -> Path:
    for rec in recs:
        path = root / "runs" / rec.run_key / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec.dump()))
    return root


def test_select_table_numbers(tmp_path: Path, capsys):
    # best-val: 0.66 (seed 0) and 0.70 (seed 1) -> 68.00 ± 2.83; best-test: 72 and 76
    root = write_runs(
        tmp_path,
        [
            record(seed=0),
            record(seed=1, hist=history(curve=[0.5, 0.70, 0.76, 0.6, 0.6]), test_acc=0.60),
        ],
    )
    assert main(["table", str(root), "--select", "best-val"]) == 0
    out = capsys.readouterr().out
    assert f"68.00 ± {math.sqrt(8):.2f}" in out
    assert "best-validation epoch" in out and "Selection: best-val" in out
    assert main(["table", str(root), "--select", "best-test"]) == 0
    out = capsys.readouterr().out
    assert f"74.00 ± {math.sqrt(8):.2f}" in out
    assert (
        "best-test: each run's epoch chosen on the test split — optimistic, "
        "not a valid estimate of generalisation" in out
    )
    assert main(["table", str(root)]) == 0
    assert "65.00 ± 7.07" in capsys.readouterr().out  # last: 70, 60
    assert main(["table", str(root), "--select", "best-val", "--per-task"]) == 2
    assert "per-task columns are reported for last only" in capsys.readouterr().err


def test_best_test_without_curves_exits_2_and_writes_nothing(tmp_path: Path, capsys):
    recs = [record(seed=0), record(seed=1, hist=history(curve=None))]
    recs += [record("Plain", seed=2, hist=history(curve=None), row_order=1)]
    root = write_runs(tmp_path / "suite", recs)
    out = tmp_path / "table.md"
    assert main(["table", str(root), "--select", "best-test", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2 of 3 finished runs have no per-epoch test curve" in err
    assert "(e.g. CKA / digits / seed 1)" in err
    assert err.endswith("set record_test_curve: true and re-run")
    assert not out.exists()
    assert main(["power", str(root), "--delta", "1", "--select", "best-test"]) == 2


def test_a_row_that_trains_nothing_reports_its_one_number_under_every_protocol():
    """Teacher and Ensemble rows have no epochs: nothing to select, no curve needed."""
    from bench.report.selection import PROTOCOLS, select_test_acc

    record = RunRecord.parse({"run_key": "e", "row": "Ensemble", "column": "c", "seed": 0,
              "status": "finished", "metrics": {"test_acc": 0.52}, "history": []})  # fmt: skip
    assert [select_test_acc(record, p) for p in PROTOCOLS] == [0.52, 0.52, 0.52]
