"""Decoupled KD (``methods/dkd.py``): its two terms against values computed by hand on 2 x 4
logits (two teachers of 2 classes each, the target the argmax of their concatenation), and a
tiny run end to end through the harness."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.core.config import validate_suite
from bench.core.models import ModelOutput
from bench.engine.options import ExecOptions
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from methods import METHODS, Batch, MethodContext
from tests.conftest import tiny_suite

T = 4.0
# Teacher 1 scores classes 0-1, teacher 2 classes 2-3: the union argmax is class 3 for the
# first sample (teacher 2's) and class 0 for the second (teacher 1's).
TEACHER_LOGITS = [
    torch.tensor([[1.0, 2.0], [3.0, -1.0]]),
    torch.tensor([[0.5, 4.0], [1.0, 2.5]]),
]
STUDENT_LOGITS = torch.tensor([[2.0, 0.0, 1.0, 1.5], [-1.0, 0.5, 2.0, 0.0]])


class Fixed(nn.Module):
    """A model that outputs fixed logits (a parameter for the student, so it trains)."""

    def __init__(self, logits: torch.Tensor, trainable: bool) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone(), requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        fmap = torch.zeros(len(x), 1, 1, 1)
        return ModelOutput(fmap, fmap.flatten(1), self.logits * 1)


def by_hand(student: list[float], teacher: list[float], T: float) -> tuple[float, float]:
    """TCKD and NCKD of one sample, with plain floats: the target is the teacher's argmax."""
    t = max(range(len(teacher)), key=teacher.__getitem__)

    def softmax(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    ps, pt = softmax(student), softmax(teacher)
    bs, bt = (ps[t], 1 - ps[t]), (pt[t], 1 - pt[t])
    tckd = sum(b * math.log(b / a) for a, b in zip(bs, bt))
    qs = softmax([v for i, v in enumerate(student) if i != t])
    qt = softmax([v for i, v in enumerate(teacher) if i != t])
    nckd = sum(b * math.log(b / a) for a, b in zip(qs, qt))
    return T * T * tckd, T * T * nckd


def dkd_method(**params):
    cls = METHODS.get("dkd")
    ctx = MethodContext(
        teachers=[Fixed(t, trainable=False) for t in TEACHER_LOGITS],
        task_sizes=[2, 2],
        build_student=lambda: Fixed(STUDENT_LOGITS, trainable=True),
        channels=1,
        image_size=1,
    )
    return cls(ctx, cls.Params(**params))


def test_defaults_are_mdistillers():
    p = METHODS.get("dkd").Params()
    assert (p.alpha, p.beta, p.T) == (1.0, 8.0, 4.0)
    assert METHODS.get("dkd").objective(p) == {"tckd": 1.0, "nckd": 8.0}
    with pytest.raises(ValueError, match="both 0"):
        METHODS.get("dkd").Params(alpha=0, beta=0)


def test_terms_match_hand_computed_values_with_the_teachers_argmax_as_target():
    teacher = torch.cat(TEACHER_LOGITS, dim=1)
    assert teacher.argmax(1).tolist() == [3, 0]
    rows = [by_hand(s, t, T) for s, t in zip(STUDENT_LOGITS.tolist(), teacher.tolist())]
    want_tckd = sum(r[0] for r in rows) / 2
    want_nckd = sum(r[1] for r in rows) / 2
    method = dkd_method()
    terms = method.loss_terms(Batch(x1=torch.zeros(2, 1, 1, 1)))
    assert set(terms) == {"tckd", "nckd"}
    assert terms["tckd"].item() == pytest.approx(want_tckd, rel=1e-5)
    assert terms["nckd"].item() == pytest.approx(want_nckd, rel=1e-5)
    assert want_tckd > 0 and want_nckd > 0
    # the loop's sum: alpha TCKD + beta NCKD; the gradient reaches the student only
    loss = sum(method.weights()[k] * v for k, v in terms.items())
    assert loss.item() == pytest.approx(want_tckd + 8 * want_nckd, rel=1e-5)
    loss.backward()
    assert method.student.logits.grad is not None
    assert all(t.logits.grad is None for t in method.teachers)


def test_a_zero_weight_term_is_not_computed_and_a_perfect_student_costs_nothing():
    x = torch.zeros(2, 1, 1, 1)
    assert set(dkd_method(beta=0).loss_terms(Batch(x1=x))) == {"tckd"}
    assert set(dkd_method(alpha=0).loss_terms(Batch(x1=x))) == {"nckd"}
    method = dkd_method()
    method.student.logits.data = torch.cat(TEACHER_LOGITS, dim=1)
    for term in method.loss_terms(Batch(x1=x)).values():
        assert term.item() == pytest.approx(0.0, abs=1e-6)


def test_dkd_trains_end_to_end_through_the_harness(tmp_path):
    suite = tiny_suite(
        "dkd",
        methods=[{"name": "dkd"}],
        student={"arch": "small_cnn", "params": {"width": 4}},
        optim={"epochs": 2, "batch_size": 64, "lr": 0.003},
    )
    suite["datasets"][0].update(tasks=[[0, 1], [2, 3]], val_fraction=0.5)
    (run,) = expand(validate_suite(suite, "test"))
    rec = execute(run, ExecOptions(tmp_path, "cpu", progress=False))
    assert rec.status == "finished" and rec.row == "DKD"
    assert len(rec.history) == 2
    for h in rec.history:
        assert {"loss/tckd", "loss/nckd"} <= set(h)
        assert all(math.isfinite(h[k]) for k in ("loss", "loss/tckd", "loss/nckd"))
    assert 0.0 <= rec.metrics.test_acc <= 1.0
