"""Cross-dataset merge: concatenated label spaces, natural tasks, per-source accuracy."""

from __future__ import annotations

import pytest
import torch

from bench.core.config import DatasetConfig
from bench.data.datasets import DATASETS, DatasetError
from bench.data.prepare import prepare

PARTS = [
    {"name": "digits", "params": {"split_seed": 0}},
    {"name": "digits", "params": {"split_seed": 1, "test_fraction": 0.3}},
]


def test_merge_concatenates_label_spaces_in_part_order():
    src = DATASETS.get("merge")(parts=PARTS)
    a, b = (
        DATASETS.get("digits")(split_seed=0),
        DATASETS.get("digits")(split_seed=1, test_fraction=0.3),
    )
    assert src.num_classes == 20
    assert src.class_names[0] == "digits/0" and src.class_names[10] == "digits/0"
    assert src.groups == [list(range(10)), list(range(10, 20))]
    assert len(src.test) == len(a.test) + len(b.test)
    assert torch.equal(src.test.labels[len(a.test) :], b.test.labels + 10)


def test_natural_tasks_give_one_teacher_per_part():
    data = prepare(DatasetConfig(name="merge", params={"parts": PARTS}, tasks="natural"))
    assert data.layout.sizes == [10, 10]
    assert set(data.task_train(1).labels.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([PARTS[0]], "at least two datasets"),
        ([PARTS[0], {"root": "/x"}], r"params.parts.1: expected keys name, root, params"),
        ([PARTS[0], {"name": "merge"}], "cannot contain a merge"),
    ],
)
def test_merge_errors(parts, message):
    with pytest.raises(DatasetError, match=message):
        DATASETS.get("merge")(parts=parts)
