"""Loaders are classes (bench.data.datasets.loader): a user's dataset is one FileDataset
subclass over real image files; the harness asks its hooks, never hasattr."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.core.config import DatasetConfig
from bench.core.errors import ConfigError
from bench.data.datasets import DATASETS, DatasetError, FileDataset, FileParams, NotListed
from bench.data.datasets.base import Listing
from bench.data.datasets.common import layout_error, resolve_root
from bench.experiment.plan import counts_tasks, num_tasks
from bench.experiment.preflight import check_dataset

COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


class ListedJpegs(FileDataset):  # a user's file says name="..." to register at import
    """Test-only: ``list.txt`` lines ``<split> <file> <label>`` beside the images."""

    name = "listed_jpegs_test"

    def list_files(self, root, p: FileParams) -> Listing:
        root = resolve_root(self.name, root, None)
        self.check_layout(root, p)
        pairs = {"train": [], "test": []}
        for line in (root / "list.txt").read_text().splitlines():
            split, file, label = line.split()
            pairs[split].append((root / file, int(label)))
        return Listing(self.name, root, "list.txt", ["red", "green", "blue"], **pairs)

    def check_layout(self, root, p: FileParams) -> None:
        if not (Path(root) / "list.txt").is_file():
            raise layout_error(self.name, Path(root), "listed-JPEG", "list.txt and its images")


@pytest.fixture
def listed(tmp_path):
    lines = []
    for i in range(12):
        label = i % 3
        Image.new("RGB", (20, 16), COLOURS[label]).save(tmp_path / f"{i}.jpg", quality=95)
        lines.append(f"{'test' if i >= 9 else 'train'} {i}.jpg {label}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    DATASETS.register(ListedJpegs.name)(ListedJpegs())
    yield tmp_path
    DATASETS._items.pop("listed_jpegs_test", None)


def test_a_subclass_is_a_registered_loader(listed):
    loader = DATASETS.get("listed_jpegs_test")
    src = loader(root=listed, image_size=8, train_per_class=2)
    assert src.class_names == ["red", "green", "blue"]
    assert torch.bincount(src.train.labels).tolist() == [2, 2, 2]
    assert src.test.labels.tolist() == [0, 1, 2]
    means = src.train.images.float().mean((2, 3))  # the pixels match their labels
    want = torch.tensor([COLOURS[int(y)] for y in src.train.labels], dtype=torch.float)
    assert torch.allclose(means, want, atol=8)
    listing = loader.list_labels(listed, loader.parse({"train_per_class": 2}))
    assert listing.train == src.train.labels.tolist() and listing.test == [0, 1, 2]
    assert loader.lists_files() and not DATASETS.get("cifar10").lists_files()
    with pytest.raises(TypeError, match="unexpected keyword argument 'image_sise'"):
        loader(root=listed, image_sise=8)


def test_preflight_asks_the_loader(listed, tmp_path):
    check_dataset("listed_jpegs_test", str(listed), {"image_size": 8}, "datasets.0")
    with pytest.raises(ConfigError, match=r"^datasets\.0\.params\.image_sise: unknown key$"):
        check_dataset("listed_jpegs_test", str(listed), {"image_sise": 8}, "datasets.0")
    with pytest.raises(ConfigError, match=r"^datasets\.0\.root: listed_jpegs_test: .* does not"):
        check_dataset("listed_jpegs_test", str(tmp_path / "nowhere"), {}, "datasets.0")
    part = {"name": "listed_jpegs_test", "root": str(listed), "params": {"channel": 1}}
    parts = {"parts": [{"name": "digits"}, part]}
    with pytest.raises(ConfigError, match=r"datasets\.0\.params\.parts\.1\.params\.channel: unk"):
        check_dataset("merge", None, parts, "datasets.0")


def test_natural_tasks_defaults_to_unknown_and_merge_counts_its_parts(listed):
    mine = DatasetConfig(name="listed_jpegs_test", root=str(listed), tasks="natural")
    assert not counts_tasks(mine)
    merged = DatasetConfig(
        name="merge", params={"parts": [{"name": "digits"}] * 3}, tasks="natural"
    )
    assert counts_tasks(merged) and num_tasks(merged) == 3
    with pytest.raises(NotListed):
        DATASETS.get("cifar10").list_files(None, DATASETS.get("cifar10").parse({}))
    with pytest.raises(DatasetError, match="no data root"):
        DATASETS.get("listed_jpegs_test")()
