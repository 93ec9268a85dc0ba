"""Suite-level pretrain stage: cached once and reused, its backbone really initialises
teachers and students, keys without it unchanged, dry-run lists it, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.config import SuiteConfig
from bench.core.specs import legacy_key
from bench.engine.pretrain import class_overlap
from bench.experiment.plan import expand
from tests.conftest import tiny_suite, write_suite

STAGE = {
    "dataset": {"name": "digits", "classes": [0, 1, 2, 3, 4]},
    "arch": "small_cnn",
    "params": {"width": 8},
    "optim": {"epochs": 1, "batch_size": 64, "lr": 0.003},
}
TASKS = [[5, 6], [7, 8, 9]]


def pre_suite(name: str = "pre", methods=None, lr: float = 0.003) -> dict:
    """digits classes 5-9 from scratch and from a backbone pretrained on classes 0-4."""
    suite = tiny_suite(name=name, methods=methods or [{"name": "teacher"}, {"name": "vanilla_kd"}])
    suite["pretrain"] = {"digits04": json.loads(json.dumps(STAGE))}
    suite["datasets"] = [
        {"name": "digits", "id": "scratch", "tasks": TASKS, "pretrain": "none"},
        {"name": "digits", "id": "pretrained", "tasks": TASKS, "pretrain": "digits04"},
    ]
    for optim in (suite["optim"], suite["teachers"]["optim"]):
        optim.update(epochs=1, lr=lr)
    return suite


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = main([*argv, "--no-progress", "--no-mlflow"] if "--dry-run" not in argv else argv)
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def records(suite_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(suite_dir.glob("runs/*/result.json"))]


def test_keys_without_pretrain_are_unchanged():
    """Run and teacher keys of a suite without ``pretrain:``, as computed before the
    stage existed (same suite, commit 0bf4087): the legacy keys (with data locations,
    which the keys have left out since; bench.experiment.migrate moves results filed under them)."""
    suite = SuiteConfig.model_validate(
        tiny_suite(methods=[{"name": "teacher"}, {"name": "ensemble"}, {"name": "vanilla_kd"}])
    )
    runs = expand(suite)
    assert [legacy_key(r.spec) for r in runs] == [
        "9853dcd02079e25a",
        "168191865a574753",
        "55d5bbde9b76025a",
        "b41c03a543a26aef",
    ]
    assert [legacy_key(t) for t in runs[0].spec.teacher_specs(2)] == [
        "b57eddc506a134f1",
        "7297fc214bbabae8",
    ]


def test_stage_recipe_is_part_of_teacher_and_run_keys():
    def keys(suite: dict) -> dict[str, list[str]]:
        runs = expand(SuiteConfig.model_validate(suite))
        out: dict[str, list[str]] = {}
        for r in runs:
            out.setdefault(r.meta.column, []).append(r.key)
            out[r.meta.column] += [t.key for t in r.spec.teacher_specs(2)]
        return out

    base = keys(pre_suite())
    longer = pre_suite()
    longer["pretrain"]["digits04"]["optim"]["epochs"] = 2
    changed = keys(longer)
    assert changed["scratch"] == base["scratch"]
    assert all(a != b for a, b in zip(base["pretrained"], changed["pretrained"]))
    assert not set(base["pretrained"]) & set(base["scratch"])
    # a from-scratch column keeps its keys when stages are defined beside it
    alone = tiny_suite(methods=[{"name": "teacher"}, {"name": "vanilla_kd"}])
    alone["datasets"] = [{"name": "digits", "id": "scratch", "tasks": TASKS}]
    alone["optim"].update(epochs=1)
    alone["teachers"]["optim"].update(epochs=1)
    assert keys(alone)["scratch"] == base["scratch"]


@pytest.fixture(scope="module")
def first_suite(tmp_path_factory):
    """One suite, both columns, at lr 1e-12 (nothing moves in training: the trained
    models still hold their init); the students it builds, in run order."""
    import bench.experiment.runner

    tmp = tmp_path_factory.mktemp("pretrain")
    path = write_suite(tmp / "pre.yaml", pre_suite(lr=1e-12))
    results = tmp / "results"
    students, real = [], bench.experiment.runner.build_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            bench.experiment.runner,
            "build_model",
            lambda *a, **k: students.append(real(*a, **k)) or students[-1],
        )
        argv = ["run", str(path), "--results", str(results), "--no-progress", "--no-mlflow"]
        assert main(argv) == 0
    return tmp, results, students


def test_dry_run_lists_the_stage_without_loading(tmp_path, capsys, monkeypatch):
    import bench.engine.pretrain

    def refuse(*_a, **_k):
        raise AssertionError("dry-run loaded data or a model")

    monkeypatch.setattr(bench.engine.pretrain, "prepare_source", refuse)
    monkeypatch.setattr(bench.engine.pretrain, "build_model", refuse)
    path = write_suite(tmp_path / "pre.yaml", pre_suite())
    code, out, _ = run_cli(
        "run", str(path), "--results", str(tmp_path / "r"), "--dry-run", capsys=capsys
    )
    assert code == 0
    stage_lines = out.split("pretrain stages needed (1):\n")[1].splitlines()
    assert len(stage_lines) == 1
    assert "to train  digits classes 0,1,2,3,4, small_cnn, 1 epochs -> pretrained" in stage_lines[0]
    assert not (tmp_path / "r").exists()


def test_stage_trained_once_and_reused_across_suites(first_suite, capsys):
    tmp, results, _ = first_suite
    (stage_dir,) = (results / "pretrain").iterdir()
    meta = json.loads((stage_dir / "meta.json").read_text())
    assert meta["class_names"] == ["0", "1", "2", "3", "4"]
    stamps = {p.name: p.stat().st_mtime_ns for p in stage_dir.iterdir()}
    recs = records(results / "pre")
    pre = [r for r in recs if r["column"] == "pretrained"]
    assert pre and all(r["pretrain"]["key"] == stage_dir.name for r in pre)
    assert all(r["pretrain"]["overlap_classes"] == [] for r in pre)
    assert all("pretrain" not in r for r in recs if r["column"] == "scratch")

    other = write_suite(
        tmp / "other.yaml", pre_suite("other", methods=[{"name": "ensemble"}], lr=1e-12)
    )
    code, out, _ = run_cli("run", str(other), "--results", str(results), "--dry-run", capsys=capsys)
    assert code == 0 and f"{stage_dir.name}  cached" in out
    code, _, err = run_cli("run", str(other), "--results", str(results), capsys=capsys)
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in stage_dir.iterdir()} == stamps
    assert len(list((results / "pretrain").iterdir())) == 1
    (rec,) = [r for r in records(results / "other") if r["column"] == "pretrained"]
    assert rec["pretrain"]["cached"] is True
    assert [t["cached"] for t in rec["teachers"]] == [True, True]  # same teachers as "pre"


def test_backbone_reaches_teachers_and_student(first_suite):
    """The trained teachers and the student still hold the pretrained backbone (and the
    from-scratch ones do not)."""
    _, results, students = first_suite
    (stage_dir,) = (results / "pretrain").iterdir()
    backbone = torch.load(stage_dir / "backbone.pt", weights_only=True)
    assert not any(k.startswith("fc.") for k in backbone)  # the head is never carried over
    name = "backbone.3.0.weight"  # a conv deep in the backbone

    def holds_backbone(state) -> bool:
        return torch.allclose(state[name], backbone[name], atol=1e-6)

    scratch, pretrained = (s.state_dict() for s in students)  # serial: table order
    assert holds_backbone(pretrained) and not holds_backbone(scratch)
    by_column = {r["column"]: r for r in records(results / "pre") if r["method"] == "vanilla_kd"}
    for column, expected in [("scratch", False), ("pretrained", True)]:
        for t in by_column[column]["teachers"]:
            teacher = torch.load(results / "teachers" / t["key"] / "teacher.pt", weights_only=True)
            assert holds_backbone(teacher) is expected


def _bad(path_changes, suite=None) -> dict:
    suite = suite or pre_suite()
    for dotted, value in path_changes.items():
        node = suite
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return suite


BAD = [
    ({"datasets.1.pretrain": "nope"}, "datasets.1.pretrain: unknown pretrain stage 'nope' (known: digits04)"),
    ({"pretrain.digits04.dataset.name": "imagenet"}, "pretrain.digits04.dataset.name: unknown dataset 'imagenet'"),
    ({"pretrain.digits04.dataset.classes": []}, "pretrain.digits04.dataset.classes"),
    ({"pretrain.digits04.arch": "resnet99"}, "pretrain.digits04.arch: unknown model 'resnet99'"),
    ({"pretrain.digits04.params": {"width": 16}}, "datasets.1.pretrain: stage 'digits04' trains small_cnn {'width': 16}, which does not fit the teachers'"),
    ({"methods.1.student": {"arch": "small_cnn", "params": {"width": 4}}}, "methods.1: stage 'digits04' trains small_cnn {'width': 8}, which does not fit the student'"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "expected"), BAD, ids=[e.split(":")[0] for _, e in BAD])
def test_bad_pretrain_input_exits_2_before_anything(tmp_path, capsys, changes, expected):
    path = write_suite(tmp_path / "bad.yaml", _bad(changes))
    code, _, err = run_cli("run", str(path), "--results", str(tmp_path / "r"), capsys=capsys)
    assert code == 2
    assert err.startswith("error: ") and expected in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_unknown_source_class_exits_2_before_anything_is_written(tmp_path, capsys):
    """Known only once the source loads: refused before the tracker opens or any training."""
    path = write_suite(tmp_path / "bad.yaml", _bad({"pretrain.digits04.dataset.classes": [0, 42]}))
    code = main(["run", str(path), "--results", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "error: pretrain: dataset.classes: 42 is not a class of digits "
        "(indices 0..9 or names 0, 1, 2, ...)"
    )
    assert not (tmp_path / "r").exists()  # MLflow is on: not even its database


def test_class_overlap_is_recorded_by_name_on_the_same_dataset():
    meta = {"spec": {"dataset": {"name": "cifar10"}}, "class_names": ["cat", "dog", "ship"]}
    assert class_overlap(meta, {"name": "cifar10"}, ("dog", "frog", "ship")) == ["dog", "ship"]
    assert class_overlap(meta, {"name": "mnist"}, ("dog", "ship")) == []
