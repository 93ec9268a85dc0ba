"""Heterogeneous teachers and the cross-dataset setting, end to end on digits.

* Teachers of different architectures (``small_cnn`` and ``resnet18``: 16 vs 512 feature
  channels, 4x4 vs 1x1 maps at 8 px) through every method that maps teacher features
  into a common space (CKA, CFL, CKA-Inter with each distance of Eq. 5).
* ``merge`` of two digits parts with ``tasks: natural``: the per-task accuracies T1 / T2
  of a run are the accuracies on each source dataset's test images.
"""

from __future__ import annotations

import torch

from bench.core.config import DatasetConfig, validate_suite
from bench.data.datasets import DATASETS
from bench.data.prepare import prepare
from bench.engine.evaluate import evaluate
from bench.engine.options import ExecOptions
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from tests.conftest import tiny_suite

ONE_EPOCH = {"epochs": 1, "batch_size": 64, "lr": 0.003}


def _run(tmp_path, suite: dict) -> list[dict]:
    """Every planned run of ``suite`` through the runner (what ``bench run`` executes per
    run, without the suite's tables and plots); teachers cached under ``tmp_path``."""
    runs = expand(validate_suite(suite, "test"))
    return [execute(run, ExecOptions(tmp_path, "cpu", progress=False)) for run in runs]


def test_heterogeneous_teachers_run_every_common_space_method(tmp_path):
    suite = tiny_suite(
        "hetero",
        methods=[
            {"name": "cka"},
            {"name": "cfl"},
            {"name": "cka_inter", "grid": {"distance": ["euclidean", "cosine", "mmd"]}},
        ],
        teachers={
            "arch": ["small_cnn", "resnet18"],
            "params": {},
            "optim": ONE_EPOCH,
        },
        student={"arch": "small_cnn", "params": {"width": 4}},
        optim=ONE_EPOCH,
    )
    # kept tiny (ResNet-18 steps are the cost): digits 0-1 vs 2-3, 90% of the training
    # images carved out for validation, so each epoch is one step
    suite["datasets"][0].update(tasks=[[0, 1], [2, 3]], val_fraction=0.9)
    records = _run(tmp_path, suite)
    assert len(records) == 5
    for rec in records:
        assert rec.status == "finished"
        assert [t["arch"] for t in rec.teachers] == ["small_cnn", "resnet18"]
        assert 0.0 <= rec.metrics.test_acc <= 1.0
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in rec.history)
    rows = sorted(r.row for r in records)
    assert len(set(rows)) == 5  # CKA, CFL, and one CKA-Inter row per distance


PARTS = [
    {"name": "digits", "params": {"split_seed": 0}},
    {"name": "digits", "params": {"split_seed": 1, "test_fraction": 0.3}},
]


def test_cross_dataset_task_accuracy_is_per_source_dataset(tmp_path):
    data = prepare(DatasetConfig(name="merge", params={"parts": PARTS}, tasks="natural"))
    sizes = [len(DATASETS.get(p["name"])(**p["params"]).test) for p in PARTS]
    t1 = data.layout.task_slice(0)
    assert int(((data.test.labels >= t1.start) & (data.test.labels < t1.stop)).sum()) == sizes[0]
    assert len(data.test) == sum(sizes)

    # An oracle that is right on every image of the first dataset and wrong on the second
    # (the test split is evaluated in order): T1 = 1, T2 = 0, union = the first's share.
    labels, seen = data.test.labels, [0]

    def oracle(x: torch.Tensor) -> torch.Tensor:
        y = labels[seen[0] : seen[0] + len(x)]
        seen[0] += len(x)
        pred = torch.where(y < 10, y, (y - 10 + 1) % 10 + 10)
        return torch.nn.functional.one_hot(pred, 20).float()

    acc = evaluate(oracle, data.test, data.views, data.layout, torch.device("cpu"))
    assert acc["task_acc"] == {"T1": 1.0, "T2": 0.0}
    assert abs(acc["acc"] - sizes[0] / sum(sizes)) < 1e-6

    suite = tiny_suite(
        "cross",
        methods=[{"name": "vanilla_kd"}],
        datasets=[{"name": "merge", "params": {"parts": PARTS}, "tasks": "natural"}],
        teachers={"arch": "small_cnn", "params": {"width": 4}, "optim": ONE_EPOCH},
        student={"arch": "small_cnn", "params": {"width": 4}},
        optim=ONE_EPOCH,
    )
    (rec,) = _run(tmp_path, suite)
    assert set(rec.metrics.task_acc) == {"T1", "T2"}
    t1_acc, t2_acc = rec.metrics.task_acc["T1"], rec.metrics.task_acc["T2"]
    union = (t1_acc * sizes[0] + t2_acc * sizes[1]) / sum(sizes)
    assert abs(rec.metrics.test_acc - union) < 1e-6  # T1 / T2 partition the test set
