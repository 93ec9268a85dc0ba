"""GPU speed switches: ``auto`` resolution for every device, and the CPU-runnable paths
(bf16 autocast step, disabled GradScaler, channels_last, pinned batches, data/step time)."""

from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from bench.core.config import SpeedConfig, validate_suite
from bench.core.errors import BenchError
from bench.data.datasets import DATASETS, FileImages, TensorImages
from bench.data.prepare import EpochBatches, iterate_batches
from bench.engine.options import ExecOptions
from bench.engine.speed import SpeedPlan, resolve_speed
from bench.engine.train import FitOptions, fit
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from methods import METHODS, MethodContext
from tests.conftest import tiny_suite

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


# --- resolution ---------------------------------------------------------------------


def test_defaults_are_all_auto_and_off_on_cpu():
    cfg = SpeedConfig()
    assert (cfg.amp, cfg.channels_last, cfg.cudnn_benchmark, cfg.compile) == (
        "auto", "auto", "auto", False)  # fmt: skip
    plan = resolve_speed(cfg, CPU, num_workers=4)
    assert plan == SpeedPlan(device_type="cpu")  # every switch off: CPU runs unchanged
    assert plan.describe()["amp_dtype"] == "off" and not plan.non_blocking


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_cuda(bf16):
    plan = resolve_speed(SpeedConfig(), CUDA, num_workers=4, bf16_supported=bf16)
    assert plan.amp_dtype == (torch.bfloat16 if bf16 else torch.float16)
    assert plan.use_scaler is (not bf16)  # fp16 needs loss scaling, bf16 does not
    assert plan.channels_last and plan.cudnn_benchmark and plan.pin_memory
    assert plan.persistent_workers and plan.non_blocking and not plan.compile
    assert not resolve_speed(SpeedConfig(), CUDA, 0, bf16).persistent_workers  # no workers


SWITCHES = ("channels_last", "cudnn_benchmark", "pin_memory", "persistent_workers")


@pytest.mark.parametrize(
    "key,value,device", list(itertools.product(SWITCHES, ("auto", "on", "off"), ("cpu", "cuda")))
)
def test_every_switch_value_on_every_device(key, value, device):
    plan = resolve_speed(SpeedConfig(**{key: value}), device, num_workers=2, bf16_supported=True)
    cuda = device == "cuda"
    want = cuda if value == "auto" else value == "on"
    if key in ("cudnn_benchmark", "pin_memory"):
        want = want and cuda  # meaningless without a GPU: stays off on the CPU
    assert getattr(plan, key) is want


@pytest.mark.parametrize(
    "amp,device,bf16,dtype,scaler",
    [
        ("auto", "cpu", True, None, False),
        ("auto", "cuda", True, torch.bfloat16, False),
        ("auto", "cuda", False, torch.float16, True),
        ("bf16", "cpu", None, torch.bfloat16, False),
        ("bf16", "cuda", True, torch.bfloat16, False),
        ("fp16", "cpu", None, torch.float16, False),  # no GradScaler off CUDA
        ("fp16", "cuda", True, torch.float16, True),
        ("off", "cuda", True, None, False),
        ("off", "cpu", None, None, False),
    ],
)
def test_amp_resolution(amp, device, bf16, dtype, scaler):
    plan = resolve_speed(SpeedConfig(amp=amp), device, bf16_supported=bf16)
    assert plan.amp_dtype == dtype and plan.use_scaler is scaler


def test_bf16_forced_on_a_gpu_without_bf16_is_an_error():
    with pytest.raises(BenchError, match="bf16"):
        resolve_speed(SpeedConfig(amp="bf16"), CUDA, bf16_supported=False)


def test_yaml_on_off_booleans_and_suite_level_keys_do_not_change_run_keys():
    cfg = SpeedConfig.model_validate({"amp": False, "channels_last": True, "pin_memory": False})
    assert (cfg.amp, cfg.channels_last, cfg.pin_memory) == ("off", "on", "off")
    with pytest.raises(ValueError):
        SpeedConfig.model_validate({"amp": "fp8"})
    plain = validate_suite(tiny_suite(), "t")
    fast = validate_suite(tiny_suite(speed={"amp": "bf16", "compile": True}), "t")
    assert fast.speed.amp == "bf16"
    assert [r.key for r in expand(plain)] == [r.key for r in expand(fast)]


# --- the paths, run on the CPU ------------------------------------------------------


def _method(name="vanilla_kd"):
    from bench.core.models import build_model

    def model(n):
        return build_model("small_cnn", num_classes=n, in_channels=1, image_size=8, width=4)

    teachers = [model(2).eval().requires_grad_(False) for _ in range(2)]
    ctx = MethodContext(teachers, [2, 2], lambda: model(4), 1, 8)
    cls = METHODS.get(name)
    return cls(ctx, cls.Params())


def _tiny_data():
    src = DATASETS.get("digits")()
    keep = torch.nonzero(src.train.labels < 4).flatten()[:32]
    from bench.data.views import Views

    return src.train.subset(keep), Views(src.augment, src.load_size, src.mean, src.std)


def test_fit_with_bf16_autocast_channels_last_and_disabled_scaler_on_cpu():
    from bench.core.config import OptimConfig

    train, views = _tiny_data()
    torch.manual_seed(0)
    method = _method("cka")
    plan = SpeedPlan(amp_dtype=torch.bfloat16, channels_last=True, device_type="cpu")
    assert not plan.make_scaler().is_enabled()  # GradScaler("cpu", enabled=False)
    optim = OptimConfig(epochs=1, batch_size=32, lr=1e-3)
    before = [p.detach().clone() for p in method.parameters() if p.requires_grad]
    result = fit(method, train, None, views, optim, torch.Generator().manual_seed(0),
                 FitOptions(CPU, progress=False, speed=plan))  # fmt: skip
    after = [p for p in method.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # it trained
    conv = next(m for m in method.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    (record,) = result.history
    assert torch.isfinite(torch.tensor(record["loss"]))
    assert record["data_time"] >= 0 and record["step_time"] > 0
    assert record["data_time"] + record["step_time"] == pytest.approx(record["epoch_time"])


def test_autocast_really_runs_the_step_in_bf16_on_cpu():
    plan = SpeedPlan(amp_dtype=torch.bfloat16, device_type="cpu")
    lin = torch.nn.Linear(4, 4)
    with plan.autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with SpeedPlan().autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.float32


def test_compile_switch_compiles_the_models_not_the_loss(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(a) or a[0])
    monkeypatch.setattr(torch.nn.Module, "compile", lambda m, mode=None: calls.append((m, mode)))
    method = _method("cka")
    for device, mode in (("cpu", "default"), ("cuda", "reduce-overhead")):
        calls.clear()
        plan = resolve_speed(SpeedConfig(compile=True), device, bf16_supported=True)
        assert plan.compile_mode == mode and plan.cuda_graphs is (device == "cuda")
        assert plan.compile_models(method) == 3
        assert [(m, md) for m, md in calls] == [(t, mode) for t in method.teachers] + [
            (method.student, mode)]  # fmt: skip
    assert resolve_speed(SpeedConfig(), CUDA, bf16_supported=True).compile_mode is None
    assert SpeedPlan().compile_models(method) == 0


def _files(tmp_path, n=12):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.new("L", (8, 8), 20 * i).save(p)
        paths.append(p)
    return FileImages(paths, [i % 2 for i in range(n)], load_size=8, channels=1)


@pytest.mark.parametrize("kind", ["memory", "files"])
def test_epoch_batches_match_iterate_batches(tmp_path, kind):
    files = _files(tmp_path)
    images = files if kind == "files" else TensorImages(
        torch.stack([files[i][0] for i in range(len(files))]), files.labels)  # fmt: skip
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    reused = EpochBatches(images, 5, True, g1, drop_last=True, num_workers=0)
    g3 = torch.Generator().manual_seed(3)
    for _ in range(3):  # three epochs: one reused loader vs a new one each epoch
        a = list(reused)
        b = list(iterate_batches(images, 5, True, g2, drop_last=True, with_index=True))
        plain = list(iterate_batches(images, 5, True, g3, drop_last=True))  # no index
        assert len(a) == len(b) == len(plain) == 2
        for (xa, ya, ia), (xb, yb, ib), (xc, yc) in zip(a, b, plain):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
            assert torch.equal(xa, xc) and torch.equal(ya, yc)  # indices draw nothing
            assert torch.equal(ya, images.labels[ia])  # and name the batch's images
            assert all(torch.equal(xa[j], images[int(i)][0]) for j, i in enumerate(ia))


def test_persistent_workers_survive_epochs(tmp_path):
    files = _files(tmp_path)
    batches = EpochBatches(files, 4, True, torch.Generator().manual_seed(0), num_workers=1,
                           persistent_workers=True)  # fmt: skip
    assert batches._loader.persistent_workers
    list(batches)
    first = batches._loader._iterator
    list(batches)
    assert first is not None and batches._loader._iterator is first  # same worker pool
    del batches


def test_record_says_what_speed_plan_ran(tmp_path):
    suite = tiny_suite(methods=[{"name": "ensemble"}])
    suite["teachers"]["optim"]["epochs"] = 1
    suite = validate_suite(suite, "t")
    (run,) = expand(suite)
    rec = execute(run, ExecOptions(tmp_path, CPU, progress=False, speed=suite.speed))
    assert rec.speed["amp_dtype"] == "off" and rec.speed["channels_last"] is False
