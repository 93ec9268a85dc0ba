"""Layer-wise amalgamation (``methods/layerwise.py``): its three terms against values
computed by hand (1x1 convs as matrix products) on tiny heterogeneous teachers, the blocks'
own optimiser group and their gradients, and a tiny run end to end through the harness."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.core.config import OptimConfig, validate_suite
from bench.core.models import small_cnn
from bench.engine.options import ExecOptions
from bench.engine.speed import SpeedPlan
from bench.engine.train import make_training
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from methods import METHODS, Batch, MethodContext
from tests.conftest import tiny_suite

TASKS = [3, 2]


def layerwise(**params):
    """Teachers of 16 and 24 channels at their last stage (4x4 and 8x8 maps at 8 px), a
    student of 12 (2x2): every stage's maps differ in width and size."""
    torch.manual_seed(0)
    teachers = [
        small_cnn(TASKS[0], in_channels=1, image_size=8, width=4).eval(),
        small_cnn(TASKS[1], in_channels=1, image_size=4, width=6).eval(),
    ]
    ctx = MethodContext(
        teachers=teachers,
        task_sizes=TASKS,
        build_student=lambda: small_cnn(sum(TASKS), in_channels=1, image_size=16, width=3),
        channels=1,
        image_size=8,
    )
    cls = METHODS.get("layerwise")
    return cls(ctx, cls.Params(**params))


def conv1x1(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    w = conv.weight.detach()[:, :, 0, 0]
    return torch.einsum("oc,bchw->bohw", w, x) + conv.bias.detach()[None, :, None, None]


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b) ** 2).mean().item()


def by_hand(method, x: torch.Tensor) -> dict[str, float]:
    """The three terms from the models' stage maps, pooled, concatenated and convolved by
    hand with the blocks' weights."""
    stages = list(method.params.stages)
    with torch.no_grad():
        s_out, s_maps = method.student.forward_intermediates(x, stages)
        t_all = [t.forward_intermediates(x, stages) for t in method.teachers]
    amal = rec = 0.0
    for k, block in enumerate(method.blocks):
        maps = [s_maps[k], *(m[k] for _, m in t_all)]
        h = min(m.shape[2] for m in maps)
        w = min(m.shape[3] for m in maps)
        f_s, *f_t = [F.adaptive_avg_pool2d(m, (h, w)) for m in maps]
        rep = conv1x1(block.enc, torch.cat(f_t, dim=1))
        amal += mse(conv1x1(block.fam, f_s), rep)
        rebuilt = conv1x1(block.dec, rep)
        c = 0
        for ft in f_t:
            rec += mse(rebuilt[:, c : c + ft.shape[1]], ft)
            c += ft.shape[1]
    p_t = torch.cat([o.logits for o, _ in t_all], dim=1).softmax(1)
    log_p_s = s_out.logits.log_softmax(1)
    kd = (p_t * (p_t.log() - log_p_s)).sum(1).mean().item()
    return {"kd": kd, "amal": amal, "rec": rec}


def x8() -> torch.Tensor:
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_defaults_are_the_references():
    p = METHODS.get("layerwise").Params()
    assert (p.lambda_kd, p.lambda_amal, p.lambda_rec, p.T) == (1.0, 1.0, 1.0, 1.0)
    assert p.stages == (-2, -1) and p.block_weight_decay == 1e-4
    with pytest.raises(ValueError, match="both 0"):
        METHODS.get("layerwise").Params(lambda_kd=0, lambda_amal=0)
    with pytest.raises(ValueError, match="has 3 stages"):
        layerwise(stages=[3])
    with pytest.raises(ValueError, match="repeat"):
        layerwise(stages=[-1, 2])


@pytest.mark.parametrize("stages", [(-1,), (-2, -1), (0, 1, 2)])
def test_terms_match_hand_computed_values_on_heterogeneous_teachers(stages):
    method = layerwise(stages=stages)
    assert len(method.blocks) == len(stages)
    block = method.blocks[-1]  # the last stage: teachers 16 + 24 channels -> student 12
    assert stages[-1] != -1 or (block.enc.in_channels, block.enc.out_channels) == (40, 12)
    x = x8()
    terms = method.loss_terms(Batch(x1=x))
    want = by_hand(method, x)
    assert set(terms) == {"kd", "amal", "rec"}
    for k, v in want.items():
        assert terms[k].item() == pytest.approx(v, rel=1e-4, abs=1e-7), k
        assert v > 0


def test_blocks_have_their_own_param_group_and_get_gradients():
    method = layerwise()
    groups = method.param_groups(1e-3)
    assert len(groups) == 2
    block_ids = {id(p) for p in method.blocks.parameters()}
    assert {id(p) for p in groups[1]["params"]} == block_ids
    assert groups[1]["weight_decay"] == 1e-4 and "weight_decay" not in groups[0]
    assert not block_ids & {id(p) for p in groups[0]["params"]}
    # the harness accepts the groups: the student at the suite's decay, the blocks at theirs
    optim = OptimConfig(epochs=1, batch_size=4, lr=1e-3, weight_decay=5e-4)
    training = make_training(method, optim, 1, SpeedPlan())
    assert [g["weight_decay"] for g in training.opt.param_groups] == [5e-4, 1e-4]
    assert [g["lr"] for g in training.opt.param_groups] == [1e-3, 1e-3]

    # L_amal reaches fam and the student but not the encoder (sg(F_k)); L_rec reaches
    # the encoder and decoder only
    terms = method.loss_terms(Batch(x1=x8()))
    terms["amal"].backward(retain_graph=True)
    for block in method.blocks:
        assert block.enc.weight.grad is None and block.dec.weight.grad is None
        assert block.fam.weight.grad.abs().sum() > 0
    assert any(p.grad is not None for p in method.student.backbone.parameters())
    method.zero_grad(set_to_none=True)
    terms["rec"].backward(retain_graph=True)
    for block in method.blocks:
        assert block.enc.weight.grad.abs().sum() > 0 and block.dec.weight.grad.abs().sum() > 0
        assert block.fam.weight.grad is None
    assert all(p.grad is None for p in method.student.parameters())
    method.zero_grad(set_to_none=True)
    sum(terms.values()).backward()
    for p in method.blocks.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.grad is None for t in method.teachers for p in t.parameters())


def test_without_amal_and_rec_no_block_is_built():
    method = layerwise(lambda_amal=0, lambda_rec=0)
    assert len(method.blocks) == 0 and method.param_groups(1e-3) is None
    assert set(method.loss_terms(Batch(x1=x8()))) == {"kd"}
    assert set(layerwise(lambda_rec=0).loss_terms(Batch(x1=x8()))) == {"kd", "amal"}


def test_layerwise_trains_end_to_end_through_the_harness(tmp_path):
    suite = tiny_suite(
        "layerwise",
        methods=[{"name": "layerwise"}],
        student={"arch": "small_cnn", "params": {"width": 4}},
        optim={"epochs": 2, "batch_size": 64, "lr": 0.003},
    )
    suite["datasets"][0].update(tasks=[[0, 1], [2, 3]], val_fraction=0.5)
    (run,) = expand(validate_suite(suite, "test"))
    rec = execute(run, ExecOptions(tmp_path, "cpu", progress=False))
    assert rec.status == "finished" and rec.row == "Layer-wise KA"
    assert len(rec.history) == 2
    for h in rec.history:
        assert {"loss/kd", "loss/amal", "loss/rec"} <= set(h)
        assert all(math.isfinite(h[k]) for k in ("loss", "loss/kd", "loss/amal", "loss/rec"))
    assert 0.0 <= rec.metrics.test_acc <= 1.0
