"""The README's quick suite gives, cell for cell, the numbers it gave before the house
plan's second step (tests/golden/quick_table.json: every run's test accuracy and every
cell of the table, 2 torch threads, this project's 2-core CPU). Rows added since (new
methods) are not in the golden; every golden row must still be there, unchanged."""

from __future__ import annotations

import json
import re

import yaml

from bench.cli import main
from tests.conftest import ROOT

GOLDEN = json.loads((ROOT / "tests" / "golden" / "quick_table.json").read_text())


def _number(cell: str) -> str:
    """'<u>96.67 ± 0.28</u>†' -> '96.67 ± 0.28' (ranking marks move with new rows)."""
    return re.search(r"\d+\.\d+ ± \d+\.\d+", cell).group(0)


def test_quick_suite_numbers_are_the_golden_ones(tmp_path):
    argv = ["run", str(ROOT / GOLDEN["suite"]), "--results", str(tmp_path), "--no-mlflow",
            "--no-progress", "--threads", str(GOLDEN["threads"])]  # fmt: skip
    assert main(argv) == 0
    runs = [yaml.safe_load(p.read_text()) for p in (tmp_path / "quick").glob("runs/*/result.json")]
    got: dict[str, dict[str, float]] = {}
    for r in runs:
        assert r["status"] == "finished", (r["row"], r.get("error"))
        got.setdefault(r["row"], {})[str(r["seed"])] = r["metrics"]["test_acc"]
    assert {row: got.get(row) for row in GOLDEN["test_acc"]} == GOLDEN["test_acc"]
    table = (tmp_path / "quick" / "table.md").read_text()
    cells = {}
    for line in table.splitlines():
        m = re.match(r"\| (\S.*?)\s+\|\s+(.*?)\s+\|$", line)
        if m and m.group(1) in GOLDEN["cells"]:
            cells[m.group(1)] = _number(m.group(2))
    assert cells == {row: _number(c) for row, c in GOLDEN["cells"].items()}
