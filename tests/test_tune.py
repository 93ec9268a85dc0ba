"""``python -m bench tune``: a tiny Optuna study end to end (SQLite study, best.yaml fed to a
suite through ``params_from``, MLflow parent + children, resume), two worker processes on
one study, deterministic pruning, no test-split access, and one-line config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bench.cli import main
from bench.core.config import load_suite
from bench.core.errors import ConfigError
from bench.experiment.plan import expand
from methods import METHODS, Method, register
from tests.conftest import ROOT, tiny_suite, write_suite

TINY_OPTIM = {"epochs": 1, "batch_size": 64, "lr": 0.003}


def tune_dict(name: str = "tiny_tune", **overrides) -> dict:
    """Digits, width-8 CNNs, 1-epoch teachers and trials, vanilla KD's three params."""
    cfg = {
        "name": name,
        "base": {
            "dataset": {"name": "digits", "tasks": "halves", "val_fraction": 0.1},
            "teachers": {"arch": "small_cnn", "params": {"width": 8}, "optim": TINY_OPTIM},
            "student": {"arch": "small_cnn", "params": {"width": 8}},
            "optim": TINY_OPTIM,
            "method": {"name": "vanilla_kd"},
        },
        "space": {
            "T": {"low": 1.0, "high": 4.0},
            "lambda_std": {"low": 0.1, "high": 10.0, "log": True},
            "direction": {"choices": ["forward", "reverse"]},
        },
        "budget": {"n_trials": 3},
        "sampler": {"seed": 0, "n_startup_trials": 2},
        "pruner": {"type": "none"},
        "device": "cpu",
    }
    cfg.update(overrides)
    return cfg


def write_tune(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load(study: str, results: Path) -> optuna.Study:
    url = f"sqlite:///{results / 'tune' / study / 'optuna.db'}"
    return optuna.load_study(study_name=study, storage=url)


def mlflow_runs(results: Path, study: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"tune-{study}")
    return client.search_runs([exp.experiment_id])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Width-8 models on 8x8 images: one thread is 2-3x faster than two on a shared,
    loaded machine (OpenMP threads wait on each other); the CLI keeps it (OMP_NUM_THREADS)
    and so do the spawned workers."""
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def studied(tmp_path_factory, one_thread):
    """One tiny study (3 trials, 1 epoch), run in-process like the CLI does."""
    tmp = tmp_path_factory.mktemp("tune")
    path = write_tune(tmp / "tiny_tune.yaml", tune_dict())
    results = tmp / "results"
    code = main(["tune", str(path), "--results", str(results), "--no-progress"])
    return tmp, path, results, code


def test_tiny_study_end_to_end(studied):
    tmp, _, results, code = studied
    assert code == 0
    study = load("tiny_tune", results)
    assert len(study.trials) == 3
    assert all(t.state.is_finished() for t in study.trials)
    out = results / "tune" / "tiny_tune"
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["study"] == "tiny_tune" and best["method"] == "vanilla_kd"
    assert best["trial"] == study.best_trial.number
    assert best["value"] == pytest.approx(study.best_value)
    assert best["searched"] == study.best_params
    assert set(best["params"]) == {"lambda_std", "T", "direction"}
    for name in ("trials.csv", "top.md", "history.png", "parallel.png", "tune.yaml"):
        assert (out / name).stat().st_size > 0, name
    top = (out / "top.md").read_text()
    assert "number" in top and "lambda_std" in top and len(top.splitlines()) == 2 + 2 + 3
    # MLflow: one parent run for the study, one child per trial
    runs = mlflow_runs(results, "tiny_tune")
    parents = [r for r in runs if r.data.tags.get("kind") == "tune-study"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == [0, 1, 2]
    assert all("val_acc" in r.data.metrics for r in children)


def test_best_yaml_feeds_a_suite_through_params_from(studied):
    tmp, _, results, _ = studied
    best_path = results / "tune" / "tiny_tune" / "best.yaml"
    best = yaml.safe_load(best_path.read_text())
    suite = write_suite(
        tmp / "tuned.yaml",
        tiny_suite(
            name="tuned",
            methods=[
                {"name": "vanilla_kd", "params_from": str(best_path)},
                {
                    "name": "vanilla_kd",
                    "label": "KD T=9",
                    "params_from": str(best_path),
                    "params": {"T": 9.0},
                },
            ],
        ),
    )
    tuned, overridden = expand(load_suite(suite))
    assert tuned.spec.params == best["params"]
    assert overridden.spec.params == {**best["params"], "T": 9.0}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("- just\n- a list\n", "expected a mapping"),
        ("study: x\n", "expected a 'params' mapping"),
        ("method: supervised\nparams: {}\n", "tuned for method 'supervised'"),
        ("params: {T: -1}\n", "T: Input should be greater than 0"),
    ],
)
def test_params_from_errors_are_one_line(tmp_path, capsys, content, expected):
    best = tmp_path / "best.yaml"
    if content is not None:
        best.write_text(content)
    suite = write_suite(
        tmp_path / "s.yaml",
        tiny_suite(methods=[{"name": "vanilla_kd", "params_from": str(best)}]),
    )
    with pytest.raises(ConfigError, match="methods.0.params_from: .*best.yaml"):
        expand(load_suite(suite))
    assert main(["run", str(suite), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(best) in err


def test_rerun_resumes_the_study(studied):
    _, path, results, _ = studied
    before = load("tiny_tune", results).trials
    code = main(["tune", str(path), "--results", str(results), "--no-progress", "--n-trials", "4"])
    assert code == 0
    after = load("tiny_tune", results).trials
    assert len(after) == 4  # three done before count toward n_trials: one more ran
    assert [t.params for t in after[:3]] == [t.params for t in before]
    runs = mlflow_runs(results, "tiny_tune")
    assert sum(r.data.tags.get("kind") == "tune-study" for r in runs) == 1
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 4


def test_two_worker_processes_share_one_sqlite_study(studied):
    tmp, path, results, _ = studied
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "tune", str(path), "--results", str(results),
         "--study", "pair", "--workers", "2", "--n-trials", "4", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "database is locked" not in proc.stderr
    trials = load("pair", results).trials
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert "4 trial(s) run now" in proc.stdout
    runs = mlflow_runs(results, "pair")
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 4


# ------------------------------------------------------------ pruning, deterministically


class SkillParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    skill: float = Field(default=1.0, ge=0, le=1)


class SkillToy(Method):
    """Test-only: nearest class centroid of the training views (skill >= 0.5, ~0.9 val
    acc) or always class 0 (~0.1): a clearly worse trial, deterministic, that goes
    through the real runner, loop, epoch callback and pruner."""

    Params = SkillParams
    uses_labels = True
    builds_student = False

    def __init__(self, ctx, params):
        super().__init__(ctx, params)
        self.w = nn.Parameter(torch.zeros(1))
        dim = ctx.channels * ctx.image_size**2
        self.register_buffer("sums", torch.zeros(ctx.num_classes, dim))
        self.register_buffer("counts", torch.zeros(ctx.num_classes))

    def weights(self):
        return {"toy": 1.0}

    def loss_terms(self, batch):
        self.sums.index_add_(0, batch.y, batch.x1.flatten(1).detach())
        self.counts.index_add_(0, batch.y, torch.ones(len(batch.y), device=batch.y.device))
        return {"toy": (self.w**2).sum()}

    def predict(self, x):
        if self.params.skill < 0.5:
            out = torch.zeros(len(x), len(self.counts), device=x.device)
            out[:, 0] = 1.0
            return out
        centroids = self.sums / self.counts.clamp(min=1)[:, None]
        return -torch.cdist(x.flatten(1), centroids)


@pytest.fixture
def skill_toy():
    register("skill_toy")(SkillToy)
    yield "skill_toy"
    METHODS._items.pop("skill_toy", None)


def test_pruner_prunes_the_clearly_worse_trial(studied, skill_toy, capsys):
    tmp, _, results, _ = studied
    cfg = tune_dict("prune", budget={"n_trials": 2, "epochs": 3})
    cfg["base"]["method"] = {"name": skill_toy}
    cfg["space"] = {"skill": {"low": 0.0, "high": 1.0}}
    cfg["enqueue"] = [{"skill": 1.0}, {"skill": 0.0}]
    cfg["pruner"] = {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    path = write_tune(tmp / "prune.yaml", cfg)
    code = main(["tune", str(path), "--results", str(results), "--no-progress", "--no-mlflow"])
    assert code == 0
    good, bad = load("prune", results).trials
    assert good.params == {"skill": 1.0} and good.state == optuna.trial.TrialState.COMPLETE
    assert good.value > 0.5 and len(good.intermediate_values) == 3
    assert bad.params == {"skill": 0.0} and bad.state == optuna.trial.TrialState.PRUNED
    assert list(bad.intermediate_values) == [1]  # stopped after its first epoch
    assert bad.intermediate_values[1] < 0.3
    assert "1 complete, 1 pruned" in capsys.readouterr().out


# ------------------------------------------------------------------ no test-split access


def test_tuning_never_reads_the_test_split(tmp_path, sealed_digits):
    from bench.core.config import DatasetConfig
    from bench.data.prepare import prepare

    with pytest.raises(AssertionError, match="test split was read"):
        prepare(DatasetConfig(name=sealed_digits))  # the seal works: a run would trip it
    cfg = tune_dict("sealed", budget={"n_trials": 2})
    cfg["base"]["dataset"]["name"] = sealed_digits
    path = write_tune(tmp_path / "sealed.yaml", cfg)
    results = tmp_path / "results"
    code = main(["tune", str(path), "--results", str(results), "--no-progress", "--no-mlflow"])
    assert code == 0  # teachers trained, 2 trials scored on val, outputs written
    assert len(load("sealed", results).trials) == 2
    assert (results / "tune" / "sealed" / "best.yaml").is_file()
    metas = [yaml.safe_load(p.read_text()) for p in results.glob("teachers/*/meta.json")]
    assert len(metas) == 2 and all(m["test_acc_own_classes"] is None for m in metas)


# ----------------------------------------------------------------------- bad tune files


def _set(cfg: dict, dotted: str, value) -> dict:
    node = cfg
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return cfg


BAD_TUNE = [
    ("bogus", 1, "bogus: unknown key"),
    ("budget.n_trials", 0, "budget.n_trials: Input should be greater than 0"),
    ("space", {}, "space: Dictionary should have at least 1 item"),
    ("space.alpha", {"low": 0, "high": 0.9}, "space.alpha: not a param of method 'vanilla_kd'"),
    ("space.T", {"low": 0, "high": 4}, "space.T.low: Input should be greater than 0"),
    ("space.T", {"low": 5, "high": 4}, "space.T: Value error, low 5 is above high 4"),
    ("space.lambda_std", {"low": 0, "high": 1, "log": True}, "log: true needs low > 0"),
    ("space.direction", {"choices": ["sideways"]}, "space.direction.choices: Input should be"),
    ("base.method.params", {"T": 2}, "space.T: also fixed in base.method.params"),
    ("base.method.name", "magic", "base.method.name: unknown method 'magic'"),
    ("base.method.name", "ensemble", "base.method.name: 'ensemble' trains nothing"),
    ("base.dataset.val_fraction", 0, "base.dataset.val_fraction: tuning needs a validation"),
    ("base.dataset.name", "imagenet", "base.dataset.name: unknown dataset 'imagenet'"),
    ("base.student.arch", "vgg99", "base.student.arch: unknown model 'vgg99'"),
    ("objective.epoch", "first", "objective.epoch: Input should be 'last' or 'best'"),
    ("enqueue", [{"alpha": 1}], "enqueue.0.alpha: not a key of space"),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD_TUNE, ids=[e for *_, e in BAD_TUNE])
def test_bad_tune_file_exits_2_with_one_line(tmp_path, capsys, key, value, expected):
    path = write_tune(tmp_path / "bad.yaml", _set(tune_dict(), key, value))
    results = tmp_path / "results"
    code = main(["tune", str(path), "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}: ") and expected in err, err
    assert not results.exists()
