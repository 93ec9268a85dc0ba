"""The shared training loop (bench.engine.train): exact numbers against the loop as it was before
the sync-free rewrite, the non-finite check, and the compile path on the CPU.

``tests/golden/fit_history.json`` was written by ``python tests/test_train_loop.py`` from the
loop that read every loss term with ``.item()`` each step (commit 0bf4087); the rewritten
loop (device-side sums, read once per epoch) must reproduce it bit for bit on the CPU."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.core.config import OptimConfig, SpeedConfig, validate_suite
from bench.core.models import build_model
from bench.data.datasets import DATASETS
from bench.data.views import Views
from bench.engine.checkpoint import Checkpoint
from bench.engine.options import ExecOptions
from bench.engine.speed import resolve_speed
from bench.engine.train import FitOptions, LossMeter, NonFiniteLoss, epoch_steps, fit
from bench.experiment import runner
from bench.experiment.plan import expand
from methods import METHODS, MethodContext
from tests.conftest import tiny_suite

GOLDEN = Path(__file__).parent / "golden" / "fit_history.json"
GOLDEN_METHODS = ("vanilla_kd", "cka", "supervised")
TIMES = ("epoch_time", "data_time", "step_time")
HEALTH = ("feat_cos", "eff_rank")  # added to the history after the golden was recorded
# The golden's cka ran under the readings the harness had then (methods/readings.py's
# options did not exist yet): the same numbers come out of these options today.
ORIGINAL_CKA_READING = {
    "intra_negatives": "sum",
    "inter_negatives": "sum",
    "inter_normalize": True,
    "self_mask": False,
    "kernels": "sum",
    "align_normalize": True,
    "rec_target": "adapter",
    "lambda_rec": 10.0,
    "std_reduction": "mean",
    "direction": "forward",
}

QUIET = FitOptions(torch.device("cpu"), progress=False)


def tiny_digits():
    """64 training and 32 validation digits of classes 0-3, and their views."""
    src = DATASETS.get("digits")()
    keep = torch.nonzero(src.train.labels < 4).flatten()
    views = Views(src.augment, src.load_size, src.mean, src.std)
    return src.train.subset(keep[:64]), src.train.subset(keep[64:96]), views


def tiny_method(name: str, width: int = 4):
    def model(n):
        return build_model("small_cnn", num_classes=n, in_channels=1, image_size=8, width=width)

    torch.manual_seed(0)
    teachers = [model(2).eval().requires_grad_(False) for _ in range(2)]
    ctx = MethodContext(teachers, [2, 2], lambda: model(4), 1, 8)
    cls = METHODS.get(name)
    return cls(ctx, cls.Params(**(ORIGINAL_CKA_READING if name == "cka" else {})))


def golden_run(name: str, **fit_kwargs) -> dict:
    """Two epochs of ``name`` on tiny digits; every number but the timings, as float.hex."""
    train, val, views = tiny_digits()
    method = tiny_method(name)
    optim = OptimConfig(epochs=2, batch_size=16, lr=3e-3)
    result = fit(method, train, val, views, optim, torch.Generator().manual_seed(0), QUIET,
                 **fit_kwargs)  # fmt: skip
    history = [
        {
            k: (float(v).hex() if isinstance(v, float) else v)
            for k, v in h.items()
            if k not in TIMES + HEALTH
        }
        for h in result.history
    ]
    params = torch.cat([p.detach().flatten() for p in method.parameters() if p.requires_grad])
    return {
        "history": history,
        "best_val_epoch": result.best_val_epoch,
        "param_sum": float(params.double().sum()).hex(),
        "param_abs_sum": float(params.double().abs().sum()).hex(),
    }


def test_history_and_weights_are_bit_identical_to_the_per_step_item_loop():
    golden = json.loads(GOLDEN.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden was recorded with one thread (reductions split)
    try:
        for name in GOLDEN_METHODS:
            assert golden_run(name) == golden[name], name
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({m: golden_run(m) for m in GOLDEN_METHODS}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


# --- the non-finite check, exact without a per-step sync ---------------------------------


def _terms(**values):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}


def test_loss_meter_means_are_the_float64_sums_of_each_step():
    meter = LossMeter()
    for a, b in ((0.1, 2.0), (0.2, 3.0), (0.3, 4.0)):
        meter.add(torch.tensor(a + b, dtype=torch.float32), _terms(a=a, b=b))
    loss_f32 = [float(torch.tensor(v, dtype=torch.float32)) for v in (2.1, 3.2, 4.3)]
    assert meter.mean_loss() == sum(loss_f32) / 3  # the progress bar's running mean
    got = meter.read(epoch=1)
    f32 = [float(torch.tensor(v, dtype=torch.float32)) for v in (0.1, 0.2, 0.3)]
    assert got["loss/a"] == (0.0 + f32[0] + f32[1] + f32[2]) / 3  # exactly, not approx
    assert got["loss/b"] == 3.0 and list(got) == ["loss", "loss/a", "loss/b"]


def test_loss_meter_names_the_first_bad_step_and_term():
    meter = LossMeter()
    nan, inf = float("nan"), float("inf")
    meter.add(torch.tensor(1.0), _terms(intra=0.5, inter=0.5))
    meter.add(torch.tensor(nan), _terms(intra=0.5, inter=nan))  # step 2: inter
    meter.add(torch.tensor(nan), _terms(intra=inf, inter=nan))  # step 3: intra too, later
    with pytest.raises(NonFiniteLoss) as err:
        meter.read(epoch=3)
    assert (err.value.epoch, err.value.step, err.value.term) == (3, 2, "inter")
    assert str(err.value) == "epoch 3 step 2: loss term 'inter' is not finite"
    again = pickle.loads(pickle.dumps(err.value))  # crosses process boundaries intact
    assert (again.epoch, again.step, again.term, str(again)) == (3, 2, "inter", str(err.value))

    overflow = LossMeter()  # every term finite, only the weighted sum overflows float32
    overflow.add(torch.tensor(1.0), _terms(a=1.0))
    overflow.add(torch.tensor(3e38) * 10, _terms(a=3e38))
    with pytest.raises(NonFiniteLoss, match="epoch 1 step 2: loss term 'total'"):
        overflow.read(epoch=1)


def test_nan_mid_run_fails_naming_epoch_step_and_term_before_the_epoch_is_recorded(tmp_path):
    train, val, views = tiny_digits()
    method = tiny_method("cka")
    real, calls = method.compute_terms, []

    def poisoned(batch):
        calls.append(1)
        terms = real(batch)
        if len(calls) == 4 + 3:  # 4 steps per epoch: epoch 2, step 3
            terms["inter"] = terms["inter"] * float("nan")
        return terms

    method.compute_terms = poisoned
    seen, ckpt = [], Checkpoint(tmp_path / "ckpt.pt", every=1)
    with pytest.raises(NonFiniteLoss) as err:
        fit(method, train, val, views, OptimConfig(epochs=2, batch_size=16),
            torch.Generator().manual_seed(0), QUIET, callbacks=[lambda e, r: seen.append(e)],
            checkpoint=ckpt)  # fmt: skip
    assert (err.value.epoch, err.value.step, err.value.term) == (2, 3, "inter")
    assert str(err.value) == "epoch 2 step 3: loss term 'inter' is not finite"
    assert seen == [1] and ckpt.load(2)["epoch"] == 1  # epoch 2 never recorded nor saved


# --- the compile path, on the CPU ---------------------------------------------------------


@pytest.fixture
def quick_compile(monkeypatch):
    """``nn.Module.compile`` through Dynamo and AOTAutograd with the ``aot_eager`` backend:
    the compile path of the loop without inductor's C++ code generation (a cold inductor
    compile takes over a minute on two shared cores; the benchmarks run the real one).
    Returns the ``(model class, mode)`` of every compile call."""
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform")
    calls, real = [], torch.nn.Module.compile

    def compile(self, mode=None, **kwargs):
        calls.append((type(self).__name__, mode))
        real(self, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", compile)
    return calls


def test_compile_trains_with_compiled_models_and_reports_the_compile_time(quick_compile):
    train, _, views = tiny_digits()
    method = tiny_method("vanilla_kd")
    plan = resolve_speed(SpeedConfig(compile=True), "cpu")
    assert plan.compile_mode == "default" and plan.warmup_steps == 1
    result = fit(method, train, None, views, OptimConfig(epochs=2, batch_size=16, lr=3e-3),
                 torch.Generator().manual_seed(0), replace(QUIET, speed=plan))  # fmt: skip
    assert quick_compile == [("Classifier", "default")] * 3  # two teachers and the student
    assert plan.compile_models(method) == 0  # compiled once: a second call leaves them be
    assert all(m._compiled_call_impl is not None for m in [method.student, *method.teachers])
    assert all(math.isfinite(h["loss"]) for h in result.history)
    steady = result.history[1]["step_time"] / 4  # epoch 2: four steady steps
    assert result.compile_time is not None and result.compile_time > 2 * steady
    assert result.compile_time < result.history[0]["step_time"]


def test_compile_time_reaches_result_json_timings(monkeypatch, tmp_path):
    real_fit = runner.fit
    monkeypatch.setattr(
        runner, "fit", lambda *a, **k: replace(real_fit(*a, **k), compile_time=1.25)
    )
    suite = tiny_suite(methods=[{"name": "vanilla_kd"}])
    suite["teachers"]["optim"]["epochs"] = suite["optim"]["epochs"] = 1
    suite = validate_suite(suite, "t")
    (run,) = expand(suite)
    rec = runner.execute(run, ExecOptions(tmp_path, "cpu", progress=False, speed=suite.speed))
    assert rec.timings["compile"] == 1.25 and rec.speed["compile_mode"] is None
    assert rec.timings["train"] < rec.timings["total"]


def test_epoch_steps_drop_the_partial_batch_and_an_empty_split_takes_none():
    """One count for the loop, the schedule, a method's context and the estimate."""
    assert [epoch_steps(n, 64) for n in (0, 1, 63, 64, 127, 128, 1293)] == [0, 1, 1, 1, 1, 2, 20]
    train, _, views = tiny_digits()
    empty = train.subset(torch.arange(0))
    method = tiny_method("vanilla_kd")
    before = {k: v.clone() for k, v in method.state_dict().items()}
    result = fit(method, empty, None, views, OptimConfig(epochs=2, batch_size=16),
                 torch.Generator().manual_seed(0), QUIET)  # fmt: skip
    assert [h["epoch"] for h in result.history] == [1, 2]  # no step taken, nothing moved
    assert all(torch.equal(v, before[k]) for k, v in method.state_dict().items())
