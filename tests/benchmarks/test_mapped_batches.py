"""Batches per second at paper scale (224 px views, 256 px load size) from JPEG files:
read per batch (``in_memory: false``, DataLoader with 0 or 2 workers) against the
memory-mapped decoded cache (the default for large images, bench.data.datasets.mapped).

An epoch of shuffled batches of 32 is iterated the way ``fit`` does (``EpochBatches``),
without training, so the figure is the loader's own cost: ``files/mapped`` (seconds per
epoch, > 1: the cache is that many times faster) and images/s, to ``extra_info`` and
stdout. The cache is built once beforehand (its one-off cost is reported too). No timing
is asserted.

    pytest tests/benchmarks/test_mapped_batches.py --benchmark-enable --benchmark-only -s

With benchmarks disabled (the normal test run) a handful of small images goes through once.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from bench.data.datasets import DATASETS, FileImages, MappedImages
from bench.data.prepare import EpochBatches


def jpeg_folder(root, n_per_class: int, px: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        (root / "test" / c).mkdir(parents=True)
        for i in range(n_per_class):
            # smooth content (like photos) so JPEG sizes and decode times are realistic
            base = rng.integers(0, 256, (px[1] // 8, px[0] // 8, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize(px, Image.BILINEAR)
            img.save(root / "train" / c / f"{i}.jpg", quality=90)
        img.save(root / "test" / c / "0.jpg", quality=90)


def epoch_seconds(images, workers: int) -> float:
    batches = EpochBatches(images, 32, True, torch.Generator().manual_seed(0),
                           drop_last=True, num_workers=workers, persistent_workers=True)  # fmt: skip
    list(batches)  # first epoch: workers start, page cache warms
    start = time.perf_counter()
    n = sum(len(x) for x, _, _ in batches)
    assert n == len(images) - len(images) % 32
    return time.perf_counter() - start


def test_mapped_cache_against_files(benchmark, tmp_path, monkeypatch):
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))
    enabled = not benchmark.disabled
    per_class, px, size = (128, (400, 300), 224) if enabled else (16, (90, 80), 72)
    jpeg_folder(tmp_path / "d", per_class, px)
    loader = DATASETS.get("image_folder")
    start = time.perf_counter()
    mapped = loader(root=tmp_path / "d", image_size=size).train
    build_s = time.perf_counter() - start
    files = loader(root=tmp_path / "d", image_size=size, in_memory=False).train
    assert isinstance(mapped, MappedImages) and isinstance(files, FileImages)
    timings = {}

    def measure():
        timings["mapped"] = epoch_seconds(mapped, 0)
        timings["files-w0"] = epoch_seconds(files, 0)
        if enabled:
            timings["files-w2"] = epoch_seconds(files, 2)

    benchmark.pedantic(measure, rounds=1, warmup_rounds=0)
    n = len(mapped)
    info = {"images": n, "cache_build_s": build_s}
    for k, v in timings.items():
        info[f"{k}_img_per_s"] = n / v
        info[f"{k}/mapped"] = v / timings["mapped"]
    benchmark.extra_info.update(info)
    print(
        f"\n{n} JPEGs {px[0]}x{px[1]} -> {mapped.array().shape[-1]} px; cache built in "
        f"{build_s:.2f} s; "
        + ", ".join(f"{k} {n / v:.0f} img/s ({v / timings['mapped']:.1f}x mapped)" for k, v in timings.items())
    )  # fmt: skip
