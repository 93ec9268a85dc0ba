"""Data-loading time against step time in the shared training loop (``bench.engine.train.fit``).

``fit`` records per epoch ``data_time`` (waiting for the next batch) and ``step_time``
(views, forward, backward, optimiser step). This benchmark trains ``vanilla_kd`` (two
``small_cnn`` teachers, one student) for a few epochs on the same images held two ways:

* ``memory``: decoded once into a uint8 tensor (what ``in_memory`` / small images get);
* ``files-w0`` / ``files-w2``: a tiny ``image_folder`` in tmp read lazily from its PNG
  files (``in_memory: false``), with 0 or 2 DataLoader workers (persistent).

It reports ``data/step`` (above ~0.2 the loader starts to matter; above 1 it is the
bottleneck: more ``num_workers``, ``in_memory``, or a smaller ``load_size``) and the
data share of the epoch, to ``benchmark.extra_info`` and stdout. No timing is asserted.

    pytest tests/benchmarks/test_data_vs_step.py --benchmark-enable --benchmark-only -s

With benchmarks disabled (the normal test run) each case runs one tiny epoch.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.config import OptimConfig, SpeedConfig
from bench.core.models import build_model
from bench.data.datasets import DATASETS, FileImages, TensorImages
from bench.data.views import Views
from bench.engine.train import FitOptions, fit
from methods import METHODS, MethodContext

THREADS = os.environ.get("KA_BENCH_THREADS")
CASES = {"memory": (True, 0), "files-w0": (False, 0), "files-w2": (False, 2)}


def make_folder(root, classes: int, per_class: int, px: int) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 2)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (px, px, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


@pytest.mark.parametrize("case", list(CASES))
def test_data_time_vs_step_time(benchmark, tmp_path, monkeypatch, case):
    if THREADS:
        torch.set_num_threads(int(THREADS))
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))
    enabled = not benchmark.disabled
    classes, per_class, px, epochs = (4, 64, 32, 3) if enabled else (4, 8, 16, 1)
    in_memory, workers = CASES[case]
    make_folder(tmp_path / "data", classes, per_class, px)
    src = DATASETS.get("image_folder")(root=tmp_path / "data", image_size=px, in_memory=in_memory)
    assert isinstance(src.train, TensorImages if in_memory else FileImages)
    views = Views(src.augment, src.load_size, src.mean, src.std)
    half = classes // 2

    def model(n):
        return build_model("small_cnn", num_classes=n, in_channels=3, image_size=px, width=8)

    torch.manual_seed(0)
    teachers = [model(half).eval().requires_grad_(False) for _ in range(2)]
    ctx = MethodContext(teachers, [half, half], lambda: model(classes), 3, px)
    cls = METHODS.get("vanilla_kd")
    optim = OptimConfig(epochs=epochs, batch_size=32, lr=1e-3)

    def train_once():
        method = cls(ctx, cls.Params())
        how = FitOptions(torch.device("cpu"), num_workers=workers, progress=False,
                         speed=SpeedConfig(persistent_workers="on"))  # fmt: skip
        result = fit(method, src.train, None, views, optim, torch.Generator().manual_seed(0), how)
        return result.history

    history = train_once()
    later = history[1:] or history  # epoch 1 pays for worker start-up and warm-up
    data = sum(h["data_time"] for h in later)
    step = sum(h["step_time"] for h in later)
    info = {
        "images": len(src.train),
        "data_s_per_epoch": data / len(later),
        "step_s_per_epoch": step / len(later),
        "data/step": data / step,
        "data_share": data / (data + step),
        "first_epoch_data_s": history[0]["data_time"],
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{case}: {info['images']} images {px}px, per epoch data {info['data_s_per_epoch']:.3f}"
        f" s, step {info['step_s_per_epoch']:.3f} s; data/step {info['data/step']:.3f} "
        f"(data share {100 * info['data_share']:.1f}%)"
    )
    assert all(h["data_time"] >= 0 and h["step_time"] > 0 for h in history)
    benchmark.pedantic(train_once, rounds=1, warmup_rounds=0)
