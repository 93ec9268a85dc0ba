"""The shared training loop (bench.train): exact numbers against the loop as it was before
the sync-free rewrite, the non-finite check, and the compile path on the CPU.

``tests/golden/fit_history.json`` was written by ``python tests/test_train_loop.py`` from the
loop that read every loss term with ``.item()`` each step (commit 0bf4087); the rewritten
loop (device-side sums, read once per epoch) must reproduce it bit for bit on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.config import OptimConfig
from bench.datasets import DATASETS
from bench.models import build_model
from bench.train import fit
from bench.views import Views
from methods import METHODS, MethodContext

GOLDEN = Path(__file__).parent / "golden" / "fit_history.json"
GOLDEN_METHODS = ("vanilla_kd", "cka", "supervised")
TIMES = ("epoch_time", "data_time", "step_time")


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
    return cls(ctx, cls.Params())


def golden_run(name: str, **fit_kwargs) -> dict:
    """Two epochs of ``name`` on tiny digits; every number but the timings, as float.hex."""
    train, val, views = tiny_digits()
    method = tiny_method(name)
    optim = OptimConfig(epochs=2, batch_size=16, lr=3e-3)
    result = fit(method, train, val, views, optim, torch.device("cpu"),
                 torch.Generator().manual_seed(0), progress=False, **fit_kwargs)  # fmt: skip
    history = [
        {k: (float(v).hex() if isinstance(v, float) else v) for k, v in h.items() if k not in TIMES}
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
