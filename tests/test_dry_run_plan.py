"""The plan is visible before it runs: the dry-run prints every teacher's classes, the
images per split and the validation carve (the numbers ``bench.data.prepare.prepare`` really
builds), each row's objective from the method's params, and result.json keeps the
resolved tasks of the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bench.cli import main
from bench.core.config import DatasetConfig, load_suite
from bench.core.record import validate_record
from bench.data.datasets import DATASETS
from bench.data.prepare import prepare
from bench.data.splits import plan_splits
from bench.experiment.dryrun import objective_text
from bench.experiment.plan import expand
from methods import METHODS
from tests.conftest import ROOT, tiny_suite, write_suite
from tests.test_dry_run import TRAINING_STACK
from tests.test_method_contract import build


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))


def dry_run(tmp_path: Path, suite: dict, capsys, *overrides: str) -> str:
    path = write_suite(tmp_path / f"{suite['name']}.yaml", suite)
    sets = [a for o in overrides for a in ("--set", o)]
    code = main(["run", str(path), "--dry-run", "--no-mlflow", "--results",
                 str(tmp_path / "r"), *sets])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def expected_lines(cfg: DatasetConfig) -> list[str]:
    """The teacher, union and carve numbers as ``prepare`` builds them, in the dry-run's
    words."""
    data = prepare(cfg)
    layout = data.layout
    lines = []
    for t, ids in enumerate(layout.tasks):
        sl = layout.task_slice(t)
        test = int(((data.test.labels >= sl.start) & (data.test.labels < sl.stop)).sum())
        sizes = f"{len(data.task_train(t))} / {len(data.task_val(t))} / {test}"
        names = layout.class_names[sl]
        classes = ", ".join(f"{i}:{n}" for i, n in zip(ids, names))
        lines.append(f"T{t + 1}  {len(ids)} classes  {sizes}  {classes}")
    n = len(data.train) + len(data.val)
    lines.append(
        f"union  {layout.num_classes} of {DATASETS_CLASSES[cfg.name]} classes  "
        f"{len(data.train)} / {len(data.val)} / {len(data.test)}"
    )
    lines.append(f"val carve: {len(data.val)} of the {n} train images of the union to val")
    per_class = [int((data.val.labels == c).sum()) for c in range(layout.num_classes)]
    lines.append(", ".join(f"{name}={v}" for name, v in zip(layout.class_names, per_class)))
    return lines


DATASETS_CLASSES = {"digits": 10, "cifar10": 4}


def assert_printed(out: str, lines: list[str]) -> None:
    flat = " ".join(out.split())  # the carve line wraps
    for line in lines:
        assert " ".join(line.split()) in flat, f"{line!r} not in\n{out}"


@pytest.mark.parametrize(
    "tasks",
    ["halves", [[7, "1"], ["3", 0, 9]]],
    ids=["halves", "explicit-ids-and-names"],
)
def test_digits_split_printed_is_the_split_prepared(tmp_path, capsys, tasks):
    suite = tiny_suite(datasets=[{"name": "digits", "tasks": tasks, "val_fraction": 0.1}])
    out = dry_run(tmp_path, suite, capsys)
    cfg = DatasetConfig.model_validate(suite["datasets"][0])
    assert_printed(out, expected_lines(cfg))
    assert "split_seed 0" in out and "round(0.1 x n) per class" in out
    if tasks != "halves":  # names and ids resolve to the same source classes
        assert "T1  2 classes" in out and "7:7, 1:1" in out and "3:3, 0:0, 9:9" in out
        assert "union  5 of 10 classes" in out


def cifar_tree(root: Path, train: list[int], test: list[int]) -> Path:
    """A CIFAR-10-like image-folder tree, 4 classes, uneven counts, 4 px PNGs."""
    classes = ["airplane", "bird", "cat", "dog"]
    for split, counts in (("train", train), ("test", test)):
        for c, (name, n) in enumerate(zip(classes, counts)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (4, 4), (40 * c, 5 * i, 0)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("limit", [None, 5])
def test_image_folder_split_printed_is_the_split_prepared(tmp_path, capsys, limit):
    root = cifar_tree(tmp_path / "cifar", train=[7, 9, 4, 11], test=[3, 2, 4, 1])
    params = {"image_size": 4, "split_seed": 3}
    if limit:
        params["train_per_class"] = limit
    ds = {"name": "cifar10", "root": str(root), "params": params,
          "tasks": [["dog", "airplane"], [1, 2]], "val_fraction": 0.25, "split_seed": 7}  # fmt: skip
    out = dry_run(tmp_path, tiny_suite(datasets=[ds]), capsys)
    cfg = DatasetConfig.model_validate(ds)
    assert_printed(out, expected_lines(cfg))
    assert "T1  2 classes" in out and "3:dog, 0:airplane" in out
    assert "round(0.25 x n) per class" in out and "split_seed 7" in out
    # the pure plan equals what prepare built, class by class
    cifar = DATASETS.get("cifar10")
    listing = cifar.list_labels(str(root), cifar.parse(params))
    plan = plan_splits(cfg.tasks, listing.class_names, listing.train, listing.test, 0.25, 7, None)
    assert plan.tasks() == prepare(cfg).split_plan().tasks()
    if limit:
        assert plan.sizes()["train"] + plan.sizes()["val"] == 5 + 5 + 4 + 5  # min(N, found)


def test_a_loader_that_cannot_list_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "c" / "cifar-10-batches-py").mkdir(parents=True)
    for f in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
              "data_batch_5", "test_batch", "batches.meta"]:  # fmt: skip
        (tmp_path / "c" / "cifar-10-batches-py" / f).write_bytes(b"")
    ds = {"name": "cifar10", "root": str(tmp_path / "c"), "tasks": "halves"}
    out = dry_run(tmp_path, tiny_suite(datasets=[ds]), capsys)
    (line,) = [x for x in out.splitlines() if "not listed" in x]
    assert "cifar-10-batches-py/ holds labels and images" in line


def objectives(out: str) -> dict[str, str]:
    lines = out.split("objectives (weight·term; terms at weight 0 left out):\n")[1]
    rows = {}
    for line in lines.splitlines():
        if not line.startswith("  "):
            break
        row, _, text = line.strip().partition(": ")
        rows[row] = text
    return rows


def test_objective_lines_leave_zero_weights_out(tmp_path, capsys):
    methods = [
        {"name": "teacher"},
        {"name": "vanilla_kd"},
        {"name": "cka"},
        {"name": "cka", "sweep": {"lambda_inter": [0, 1, 3]}},
        {"name": "cfl"},
    ]
    out = dry_run(tmp_path, tiny_suite(methods=methods), capsys)
    rows = objectives(out)
    assert rows == {
        "Vanilla KD": "1·std",
        "CKA": "1·intra + 1·inter + 10·align + 1·std",
        "CKA (lambda_inter=0)": "1·intra + 10·align + 1·std",
        "CKA (lambda_inter=3)": "1·intra + 3·inter + 10·align + 1·std",
        "CFL": "10·align + 10·rec + 1·std",
    }


@pytest.mark.parametrize(
    "name, params",
    [
        ("vanilla_kd", {}),
        ("vanilla_kd", {"lambda_std": 2.0}),
        ("cka", {}),
        ("cka", {"lambda_inter": 0.0}),
        ("cka_intra", {}),
        ("cfl", {}),
        ("hint_kd", {}),
        ("supervised", {}),
    ],  # fmt: skip
)
def test_objective_is_what_a_built_method_weighs(name, params):
    """``Method.objective(params)`` (no model) equals the built method's ``weights()``."""
    cls = METHODS.get(name)
    method = build(name, **params)
    assert cls.objective(cls.Params(**params)) == method.weights()
    assert objective_text(cls, params)  # formats without building


def test_result_json_records_the_resolved_tasks(tmp_path, capsys):
    suite = tiny_suite(
        datasets=[{"name": "digits", "tasks": [[5, 6], ["1", 2, 3]], "val_fraction": 0.1}],
        methods=[{"name": "vanilla_kd"}],
    )
    suite["optim"]["epochs"] = 1
    suite["teachers"]["optim"]["epochs"] = 1
    path = write_suite(tmp_path / "s.yaml", suite)
    results = tmp_path / "r"
    assert main(["run", str(path), "--no-mlflow", "--no-progress", "--results", str(results)]) == 0
    (run,) = expand(load_suite(path, []))
    record = json.loads((results / "tiny" / "runs" / run.key / "result.json").read_text())
    cfg = DatasetConfig.model_validate(suite["datasets"][0])
    built = prepare(cfg).split_plan()
    assert record["tasks_resolved"] == built.tasks()
    assert [t["classes"] for t in record["tasks_resolved"]] == [[5, 6], [1, 2, 3]]
    assert [t["names"] for t in record["tasks_resolved"]] == [["5", "6"], ["1", "2", "3"]]
    assert record["split_sizes"] == built.sizes()
    assert sum(record["split_sizes"].values()) == sum(
        t[s] for t in record["tasks_resolved"] for s in ("train", "val", "test")
    )
    out = dry_run(tmp_path, suite, capsys)  # the dry-run printed these very numbers
    t1 = record["tasks_resolved"][0]
    assert f"T1  2 classes  {t1['train']} / {t1['val']} / {t1['test']}  5:5, 6:6" in out
    old = {k: v for k, v in record.items() if k not in ("tasks_resolved", "split_sizes")}
    assert "tasks_resolved" not in validate_record(old)  # older records stay readable


def test_the_listing_keeps_the_import_rule(tmp_path):
    """An image-folder CIFAR column with a sweep row, dry-run in a fresh interpreter:
    the listing and the objectives import nothing of the training stack."""
    root = cifar_tree(tmp_path / "cifar", train=[3, 3, 3, 3], test=[1, 1, 1, 1])
    suite = tiny_suite(
        datasets=[
            {
                "name": "cifar10",
                "root": str(root),
                "params": {"image_size": 4},
                "val_fraction": 0.34,
            }
        ],  # fmt: skip
        methods=[{"name": "cka", "sweep": {"lambda_inter": [0, 1]}}],
    )
    path = write_suite(tmp_path / "s.yaml", suite)
    code = (
        "import json, sys; from bench.cli import main; "
        f"rc = main(['run', {str(path)!r}, '--dry-run', '--no-mlflow', "
        f"'--results', {str(tmp_path / 'r')!r}]); "
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    assert "T1  2 classes  4 / 2 / 2  0:airplane, 1:bird" in proc.stdout
    assert "CKA (lambda_inter=0): 1·intra + 10·align + 1·std" in proc.stdout
    loaded = set(result["modules"])
    assert (
        sorted(m for m in loaded if m.split(".")[0] == "torchvision" or m in TRAINING_STACK) == []
    )
