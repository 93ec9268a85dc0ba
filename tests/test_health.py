"""Representation health (bench.engine.health) by hand, and the collapse flag end to end: it fires on
a deliberately collapsing toy run and not on a healthy one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.core.config import validate_suite
from bench.core.models import build_model
from bench.engine.health import (
    effective_rank,
    is_collapsing,
    longest_fall,
    mean_pairwise_cosine,
)
from bench.launch.suite import run_suite
from methods import METHODS, Method, register
from tests.conftest import tiny_suite


def test_mean_pairwise_cosine_hand_value():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # ordered pairs: s(e1, e2) = 0 twice, the four others 1/sqrt(2)
    assert mean_pairwise_cosine(f) == pytest.approx(4 / math.sqrt(2) / 6)
    assert mean_pairwise_cosine(torch.ones(5, 3)) == pytest.approx(1.0)  # collapsed
    with pytest.raises(ValueError, match="B >= 2"):
        mean_pairwise_cosine(torch.ones(1, 3))


def test_effective_rank_hand_values():
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    assert effective_rank(torch.ones(6, 3)) == pytest.approx(1.0)  # one direction left
    # singular values 3 and 1: p = (3/4, 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(math.exp(h))
    assert effective_rank(torch.zeros(3, 2)) == 0.0


def falls_in_a_row(values) -> int:
    return longest_fall(values)[0]


def test_falls_in_a_row():
    assert falls_in_a_row([0.5, 0.4, 0.3, 0.35, 0.2]) == 2
    assert falls_in_a_row([0.9, 0.8, 0.7, 0.6]) == 3
    assert falls_in_a_row([0.1, 0.2, 0.2, 0.3]) == 0  # equal is not a fall
    assert falls_in_a_row([0.9, None, 0.8, 0.7]) == 2
    assert falls_in_a_row([]) == 0


def test_longest_fall_and_the_collapse_rule():
    n, drop = longest_fall([0.5, 0.4, 0.3, 0.35, 0.2])
    assert n == 2 and drop == pytest.approx(0.2)  # 0.5 -> 0.3
    n, drop = longest_fall([0.2, 0.9, 0.85, 0.6, 0.59, 0.7, 0.69, 0.68, 0.67])
    assert n == 3 and drop == pytest.approx(0.31)  # 0.9 -> 0.59 beats 0.7 -> 0.67
    assert longest_fall([0.9, None, 0.8]) == (1, pytest.approx(0.1))
    # a converged run dipping by noise (the CIFAR-10 CPU suite: 52.7 -> 50.0) is not flagged
    assert not is_collapsing(*longest_fall([0.38, 0.487, 0.507, 0.48, 0.527, 0.52, 0.513, 0.5]))
    assert is_collapsing(*longest_fall([0.43, 0.40, 0.30, 0.17]))
    assert not is_collapsing(None, None)


class CollapseToy(Method):
    """Test-only: cross-entropy on the true labels, except that after every ~epoch (20 steps)
    two more classes are relabelled as class 0: validation accuracy falls epoch by epoch."""

    display = "Collapse toy"
    uses_labels = True

    def __init__(self, ctx, params) -> None:
        super().__init__(ctx, params)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weights(self):
        return {"ce": 1.0}

    def loss_terms(self, batch):
        logits = self.student(batch.x1).logits
        self.steps += 1
        k = 2 * (int(self.steps) // 20)  # classes 1..k are relabelled 0
        target = torch.where(batch.y <= k, torch.zeros_like(batch.y), batch.y)
        return {"ce": F.cross_entropy(logits, target)}


@pytest.fixture
def collapse_toy():
    register("collapse_toy")(CollapseToy)
    yield
    METHODS._items.pop("collapse_toy", None)


def test_collapse_flag_fires_on_a_collapsing_run_only(tmp_path: Path, collapse_toy):
    suite = tiny_suite(
        name="collapse",
        methods=[{"name": "vanilla_kd"}, {"name": "collapse_toy"}],
        optim={"epochs": 5, "batch_size": 64, "lr": 0.003},
    )
    outcome = run_suite(
        validate_suite(suite, "collapse.yaml"), tmp_path, progress=False, mlflow=False
    )
    records = {
        r["method"]: r
        for r in (json.loads(p.read_text()) for p in outcome.suite_dir.glob("runs/*/result.json"))
    }
    toy, kd = records["collapse_toy"], records["vanilla_kd"]
    assert toy["metrics"]["val_falls"] >= 3, [h["val_acc"] for h in toy["history"]]
    assert toy["metrics"]["val_fall_drop"] >= 0.05
    assert kd["metrics"]["val_falls"] < 3, [h["val_acc"] for h in kd["history"]]
    # health figures every epoch, within their ranges (at most one direction per channel)
    channels = build_model("small_cnn", 10, in_channels=1, image_size=8, width=8).feature_channels
    for rec in (toy, kd):
        for h in rec["history"]:
            assert -1 <= h["feat_cos"] <= 1 and 1 <= h["eff_rank"] <= channels, h
    table = (outcome.suite_dir / "table.md").read_text()
    note = next(line for line in table.splitlines() if "Possible collapse" in line)
    assert "Collapse toy / digits (seed 0)" in note and "Vanilla KD" not in note
