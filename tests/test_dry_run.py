"""The flow from suite to plan: a dry-run loads no training module, and a typo in a
dataset, student or teacher param fails it, naming the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli import main
from bench.core.config import load_suite
from bench.experiment.plan import expand
from tests.conftest import ROOT, tiny_suite, write_suite

TRAINING_STACK = (
    "bench.engine.train",
    "bench.experiment.runner",
    "bench.engine.teachers",
    "bench.engine.pretrain",
    "bench.launch.local",
    "bench.engine.checkpoint",
    "bench.engine.speed",
    "bench.data.prepare",
    "torchvision",
)


def test_dry_run_imports_no_training_module(tmp_path):
    """``bench run suites/quick.yaml --dry-run`` (MLflow on: its store is probed) in a
    fresh interpreter: the plan, the pre-run checks and the listing only. The registries
    (``bench.core.models``, ``methods``) are imported to check names and params, so torch is
    loaded, but no net is built and nothing of the training loop, the data pipeline or
    the launchers is imported."""
    code = (
        "import json, sys; from bench.cli import main; "
        "rc = main(['run', 'suites/quick.yaml', '--dry-run', "
        f"'--results', {str(tmp_path)!r}]); "
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    n = len(expand(load_suite(ROOT / "suites" / "quick.yaml")))  # every row x 3 seeds
    assert f"{n} runs: 0 done, {n} to do" in proc.stdout
    loaded = set(result["modules"])
    assert {
        "bench.experiment.plan",
        "bench.core.specs",
        "bench.experiment.preflight",
        "bench.core.models",
    } <= loaded
    assert (
        sorted(m for m in loaded if m.split(".")[0] == "torchvision" or m in TRAINING_STACK) == []
    )
    assert list(tmp_path.iterdir()) == []  # nothing written, no MLflow store created


@pytest.mark.parametrize(
    "override, key",
    [
        ("datasets.0.params.tset_fraction=0.3", "datasets.0.params.tset_fraction: unknown key"),
        ("datasets.0.params.test_fraction=1.5", "datasets.0.params.test_fraction: Input should"),
        ("student.params.widht=8", "student.params.widht: unknown key"),
        ("teachers.params.widht=8", "teachers.params.widht: unknown key"),
    ],
)
def test_param_typo_fails_the_dry_run_naming_the_key(tmp_path, capsys, override, key):
    path = write_suite(tmp_path / "s.yaml", tiny_suite())
    code = main(["run", str(path), "--dry-run", "--no-mlflow", "--set", override,
                 "--results", str(tmp_path / "r")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and key in err, err
    assert not (tmp_path / "r").exists()
