"""The memory-mapped decoded-image cache (bench.data.datasets.mapped / memory.mapped_images) on a
tiny generated JPEG image folder: same pixels as reading the files, reused on the second
load, rebuilt when a file changes, skip_corrupt, merge, pickling, and no room on disk."""

from __future__ import annotations

import logging
import pickle
from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.datasets import DATASETS, DatasetError, FileImages, MappedImages, decode, memory
from bench.data.datasets.merge import concat_images
from bench.data.prepare import iterate_batches

SIZE = 72  # image_size; load size round(72 * 256 / 224) = 82 > 64: mapped by default


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))


def jpeg_folder(root, classes=("cat", "dog"), train=3, test=1, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                w, h = int(rng.integers(70, 120)), int(rng.integers(70, 120))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg", quality=90)
    return root


def load(root, **params):
    return DATASETS.get("image_folder")(root=root, image_size=SIZE, **params)


def cache_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache" / "decoded").iterdir())


def test_mapped_pixels_equal_the_files_and_the_cache_is_reused(tmp_path, monkeypatch):
    root = jpeg_folder(tmp_path / "d")
    src = load(root)
    lazy = load(root, in_memory=False)
    assert isinstance(src.train, MappedImages) and isinstance(lazy.train, FileImages)
    assert src.load_size == 82 and len(src.train) == 6 and len(src.test) == 2
    for mapped, files in ((src.train, lazy.train), (src.test, lazy.test)):
        assert torch.equal(mapped.labels, files.labels)
        for i in range(len(files)):
            assert torch.equal(mapped[i][0], files[i][0]) and mapped[i][1] == files[i][1]
    # shuffled batches gathered from the map == the files in that order (same as in memory)
    got = list(iterate_batches(src.train, 4, True, torch.Generator().manual_seed(3)))
    order = torch.randperm(6, generator=torch.Generator().manual_seed(3)).tolist()
    assert [len(x) for x, _ in got] == [4, 2]
    assert torch.equal(
        torch.cat([x for x, _ in got]), torch.stack([lazy.train[i][0] for i in order])
    )
    assert torch.cat([y for _, y in got]).tolist() == [lazy.train[i][1] for i in order]
    names = cache_files(tmp_path)
    assert len(names) == 4 and sum(n.endswith(".kept.npy") for n in names) == 2  # no temp
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "decoded").iterdir()}

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "decode_image", no_decoding)
    again = load(root)
    assert torch.equal(again.train.take(torch.arange(6)), src.train.take(torch.arange(6)))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert isinstance(again.train.array(), np.memmap) and not again.train.array().flags.writeable


def test_a_changed_file_gets_a_new_cache_entry(tmp_path):
    root = jpeg_folder(tmp_path / "d")
    first = load(root).train
    path = root / "train" / "dog" / "1.jpg"
    Image.new("RGB", (90, 90), (250, 10, 10)).save(path)
    second = load(root).train
    assert second.files != first.files and len(cache_files(tmp_path)) == 6
    i = 4  # dog/1.jpg: classes sorted, three per class
    red = second[i][0]
    assert torch.equal(red, decode.decode_image(str(path), 82, 3))
    assert red[0].float().mean() > 240 and not torch.equal(red, first[i][0])


def test_corrupt_files_fail_or_are_skipped(tmp_path, caplog):
    root = jpeg_folder(tmp_path / "d")
    (root / "train" / "cat" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"cat/1.jpg.*skip_corrupt: true skips such files"):
        load(root)
    assert not (tmp_path / "cache" / "decoded").exists() or cache_files(tmp_path) == []
    with caplog.at_level(logging.WARNING):
        src = load(root, skip_corrupt=True)
    assert "skipped 1 unreadable image(s) of 6" in caplog.text
    lazy = load(root, in_memory=False, skip_corrupt=True)  # verified and dropped up front
    assert src.train.labels.tolist() == [0, 0, 1, 1, 1] == lazy.train.labels.tolist()
    assert list(src.train.row) == [0, 2, 3, 4, 5]
    assert torch.equal(src.train.take(torch.arange(5)), torch.stack([x for x, _ in lazy.train]))


def test_subsets_pickle_by_path_and_merge_across_files(tmp_path):
    a = load(jpeg_folder(tmp_path / "a", seed=1)).train
    b = load(jpeg_folder(tmp_path / "b", seed=2)).train
    sub = a.subset([5, 1, 2])
    blob = pickle.dumps(sub)
    assert len(blob) < 2000  # the path and indices, not the pixels
    back = pickle.loads(blob)
    assert torch.equal(back.take(torch.arange(3)), a.take(torch.tensor([5, 1, 2])))
    merged = concat_images([a, b], [0, 2])
    assert (
        isinstance(merged, MappedImages)
        and merged.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    )
    x = merged.take(torch.tensor([7, 0, 11]))
    assert torch.equal(x[0], b[1][0]) and torch.equal(x[1], a[0][0]) and torch.equal(x[2], b[5][0])


def test_no_room_for_the_cache_reads_the_files(tmp_path, monkeypatch, caplog):
    root = jpeg_folder(tmp_path / "d")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(memory.shutil, "disk_usage", lambda _: usage(10**6, 10**6, 1000))
    with caplog.at_level(logging.WARNING):
        src = load(root)
    assert isinstance(src.train, FileImages) and "does not fit in" in caplog.text
