"""File-based dataset loaders on tiny fake datasets in each official layout."""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image

from bench.data.datasets import (
    DATASETS,
    DatasetError,
    FileImages,
    MappedImages,
    TensorImages,
    decode,
)
from bench.data.datasets.archive import unpack_archive

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
LOADERS = ["image_folder", "cifar10", "mnist", "cub200", "stanford_dogs", "stanford_cars",
           "fgvc_aircraft"]  # fmt: skip


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KA_BENCH_DATA", raising=False)


def load(name, root, **params):
    return DATASETS.get(name)(root=root, **params)


def img(path: Path, c: int, size=(12, 10)) -> Path:
    """A solid image of class colour ``c`` (size varies to exercise resize + crop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[c]).save(path)
    return path


def folder_tree(root: Path, classes, per_class: int, ext=".png") -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            img(root / name / f"{i:03d}{ext}", c, size=(12 + i, 10 + 2 * i))


def assert_colours(images: TensorImages, label_colours) -> None:
    """Each image's mean colour is its label's colour (labels really match images)."""
    means = images.images.float().mean((2, 3))
    want = torch.tensor([label_colours[int(y)] for y in images.labels], dtype=torch.float)
    assert torch.allclose(means, want, atol=6), (means, want)


def per_class(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels).tolist()


# --- image_folder -----------------------------------------------------------------------


def test_image_folder_split_layout(tmp_path):
    root = tmp_path / "data"
    folder_tree(root / "train", ["dog", "cat", "bird"], 3)
    folder_tree(root / "test", ["dog", "cat", "bird"], 2)
    img(root / "train" / "dog" / "upper.JPG", 0)  # extensions are case-insensitive
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    src = load("image_folder", root, image_size=16)
    assert src.class_names == ["bird", "cat", "dog"]
    assert isinstance(src.train, TensorImages) and isinstance(src.test, TensorImages)
    assert src.train.images.shape == (10, 3, 16, 16) and src.train.images.dtype == torch.uint8
    assert per_class(src.train.labels) == [3, 3, 4] and per_class(src.test.labels) == [2, 2, 2]
    # folder "dog" was written with colour 0 and is class 2, etc.
    assert_colours(src.train, {0: COLOURS[2], 1: COLOURS[1], 2: COLOURS[0]})
    assert src.load_size == 16 and src.channels == 3 and src.mean == (0.485, 0.456, 0.406)
    aug = src.augment
    assert (aug.image_size, aug.crop_scale, aug.flip, aug.jitter) == (16, (0.5, 1.0), 0.5, 0.4)
    assert (aug.blur, aug.blur_sigma) == (0.2, (0.1, 1.0))


def test_image_folder_single_folder_is_split_per_class(tmp_path):
    folder_tree(tmp_path / "d", ["a", "b"], 5)
    src = load("image_folder", tmp_path / "d", image_size=8, test_fraction=0.4, split_seed=3)
    assert per_class(src.train.labels) == [3, 3] and per_class(src.test.labels) == [2, 2]
    again = load("image_folder", tmp_path / "d", image_size=8, test_fraction=0.4, split_seed=3)
    assert torch.equal(src.test.images, again.test.images)
    assert_colours(src.test, COLOURS)


def test_image_folder_large_images_are_mapped_with_paper_views(tmp_path):
    folder_tree(tmp_path / "d" / "train", ["a", "b"], 2)
    folder_tree(tmp_path / "d" / "test", ["a", "b"], 1)
    src = load("image_folder", tmp_path / "d", image_size=224)
    assert src.load_size == 256 and isinstance(src.train, MappedImages)
    x, y = src.train[3]
    assert x.shape == (3, 256, 256) and x.dtype == torch.uint8 and y == 1
    aug = src.augment
    assert (aug.crop_scale, aug.flip, aug.jitter, aug.blur, aug.blur_sigma) == (
        (0.08, 1.0), 0.5, 0.4, 0.5, (0.1, 2.0))  # fmt: skip
    small = load("image_folder", tmp_path / "d", image_size=16, load_size=20, in_memory=False)
    assert isinstance(small.train, FileImages) and small.train[0][0].shape == (3, 20, 20)


def test_image_folder_grey(tmp_path):
    folder_tree(tmp_path / "d", ["a", "b"], 4)
    src = load("image_folder", tmp_path / "d", image_size=8, channels=1)
    assert src.train.images.shape[1:] == (1, 8, 8) and src.mean == (0.5,) and src.std == (0.5,)


# --- corrupt files and the decode cache -------------------------------------------------


def _with_corrupt(root: Path) -> Path:
    folder_tree(root / "train", ["a", "b"], 3)
    folder_tree(root / "test", ["a", "b"], 1)
    bad = root / "train" / "b" / "broken.png"
    bad.write_bytes(b"this is not a png")
    return bad


def test_corrupt_image_is_named_or_skipped(tmp_path, caplog):
    bad = _with_corrupt(tmp_path / "d")
    with pytest.raises(DatasetError, match="broken.png") as err:
        load("image_folder", tmp_path / "d", image_size=8)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with caplog.at_level(logging.WARNING):
        src = load("image_folder", tmp_path / "d", image_size=8, skip_corrupt=True)
    assert per_class(src.train.labels) == [3, 3] and len(src.train.images) == 6
    assert "skipped 1 unreadable image(s) of 7" in caplog.text
    assert_colours(src.train, COLOURS)


def test_corrupt_image_lazy(tmp_path, caplog):
    bad = _with_corrupt(tmp_path / "d")
    lazy = load("image_folder", tmp_path / "d", image_size=8, in_memory=False)
    assert len(lazy.train) == 7  # not checked up front...
    with pytest.raises(DatasetError, match=str(bad)):
        [lazy.train[i] for i in range(len(lazy.train))]  # ...but named when read
    with caplog.at_level(logging.WARNING):
        checked = load("image_folder", tmp_path / "d", image_size=8, in_memory=False,
                       skip_corrupt=True)  # fmt: skip
    assert str(bad) not in checked.train.paths and len(checked.train) == 6
    assert "skipped 1" in caplog.text


def test_decoded_images_are_cached(tmp_path, monkeypatch):
    folder_tree(tmp_path / "d", ["a", "b"], 4)
    first = load("image_folder", tmp_path / "d", image_size=8)
    assert len(list((tmp_path / "cache" / "decoded").glob("image_folder-*.pt"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "decode_image", no_decoding)
    second = load("image_folder", tmp_path / "d", image_size=8)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.train.labels, second.train.labels)
    img(tmp_path / "d" / "a" / "000.png", 1, size=(30, 30))  # a changed file: new key
    with pytest.raises(AssertionError, match="decoded again"):
        load("image_folder", tmp_path / "d", image_size=8)


# --- roots ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOADERS)
def test_missing_or_malformed_root(tmp_path, name):
    with pytest.raises(DatasetError) as err:
        load(name, tmp_path / "nowhere")
    msg = str(err.value)
    assert msg.startswith(f"{name}: {tmp_path / 'nowhere'} does not exist: expected ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        load(name, tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "expected" in msg and "\n" not in msg


@pytest.mark.parametrize("name", LOADERS)
def test_no_root_and_no_env(name):
    with pytest.raises(DatasetError, match="root:") as err:
        load(name, None)
    assert err.value.args[0].startswith(name)
    if name != "image_folder":
        assert "KA_BENCH_DATA" in str(err.value)


def test_data_env_fallback(tmp_path, monkeypatch):
    folder_tree(tmp_path / "data" / "mnist" / "train", ["0", "1"], 2)
    folder_tree(tmp_path / "data" / "mnist" / "test", ["0", "1"], 1)
    monkeypatch.setenv("KA_BENCH_DATA", str(tmp_path / "data"))
    src = load("mnist", None)
    assert src.class_names == ["0", "1"] and src.train.images.shape == (4, 1, 28, 28)
    assert src.augment.flip == 0.0


# --- cifar10 / mnist --------------------------------------------------------------------


def test_cifar10_folder_layout_per_class_limits(tmp_path):
    classes = ["airplane", "automobile", "bird"]
    folder_tree(tmp_path / "cifar10" / "train", classes, 5, ext=".jpg")
    folder_tree(tmp_path / "cifar10" / "test", classes, 3, ext=".jpg")
    src = load("cifar10", tmp_path / "cifar10", train_per_class=2, test_per_class=1)
    assert src.class_names == classes and src.load_size == 32
    assert src.train.images.shape == (6, 3, 32, 32)
    assert per_class(src.train.labels) == [2, 2, 2] and per_class(src.test.labels) == [1, 1, 1]
    assert_colours(src.train, COLOURS)
    again = load("cifar10", tmp_path / "cifar10", train_per_class=2, test_per_class=1)
    assert torch.equal(src.train.images, again.train.images)


def _cifar_batches(folder: Path, protocol: int, per_batch: int = 3) -> None:
    """A python-format CIFAR folder as the release has it: pickled dicts (bytes keys, as
    Python 2 wrote them) of uint8 N x 3072 arrays (planar RGB) and label lists."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"label_names": [b"airplane", b"automobile", b"bird"], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 3 for i in range(per_batch)]
        planes = np.stack(
            [np.full((32, 32, 3), COLOURS[t], np.uint8).transpose(2, 0, 1) for t in labels]
        )
        batch = {b"data": planes.reshape(per_batch, 3072), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python_format(tmp_path, protocol):
    (tmp_path / "c" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DatasetError, match="batches.meta is missing"):
        load("cifar10", tmp_path / "c")
    _cifar_batches(tmp_path / "c" / "cifar-10-batches-py", protocol)
    src = load("cifar10", tmp_path / "c", image_size=16, train_per_class=2)
    assert src.class_names == ["airplane", "automobile", "bird"]
    assert src.train.images.shape == (6, 3, 16, 16) and per_class(src.test.labels) == [1, 1, 1]
    assert_colours(src.train, COLOURS)
    full = load("cifar10", tmp_path / "c" / "cifar-10-batches-py", channels=1)
    assert full.train.images.shape == (15, 1, 32, 32)  # 5 batches of 3


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar10_batches_never_unpickle_objects(tmp_path, monkeypatch):
    """A batch that pickles a callable is refused by the restricted unpickler, unrun."""
    folder = tmp_path / "c" / "cifar-10-batches-py"
    _cifar_batches(folder, 5)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload(), b"labels": []}))
    calls = []
    monkeypatch.setattr(os, "system", calls.append)
    with pytest.raises(
        DatasetError,
        match=r"data_batch_3 is not a CIFAR-10 python batch: "
        r"refusing global posix.system",
    ):
        load("cifar10", tmp_path / "c")
    assert calls == [] and not (tmp_path / "pwned").exists()


def _idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX (ubyte) file as in the MNIST release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(head + array.astype(np.uint8).tobytes())


def test_mnist_raw_format(tmp_path):
    raw = tmp_path / "m" / "MNIST" / "raw"
    for prefix, n in (("train", 30), ("t10k", 10)):
        labels = np.arange(n) % 10
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        _idx(
            raw / f"{prefix}-images-idx3-ubyte", np.repeat(labels * 20, 28 * 28).reshape(n, 28, 28)
        )
    src = load("mnist", tmp_path / "m", train_per_class=2)
    assert src.class_names == [str(d) for d in range(10)]
    assert src.train.images.shape == (20, 1, 28, 28) and len(src.test) == 10
    assert torch.equal(src.train.images[:, 0, 5, 5], (src.train.labels * 20).to(torch.uint8))
    assert src.augment.flip == 0.0 and src.mean == (0.5,)
    same = load("mnist", raw.parent, train_per_class=2)  # the MNIST folder itself
    assert torch.equal(same.train.labels, src.train.labels)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="not a complete MNIST raw folder"):
        load("mnist", tmp_path / "m")


# --- fine-grained datasets --------------------------------------------------------------


def make_cub(root: Path) -> None:
    classes = ["001.Albatross", "002.Auklet", "003.Blackbird"]
    lines = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": []}
    i = 0
    for c, name in enumerate(classes):
        for k in range(3):
            i += 1
            img(root / "images" / name / f"{name}_{k}.jpg", c, size=(40, 30))
            lines["images.txt"].append(f"{i} {name}/{name}_{k}.jpg")
            lines["image_class_labels.txt"].append(f"{i} {c + 1}")
            lines["train_test_split.txt"].append(f"{i} {int(k < 2)}")
    lines["classes.txt"] = [f"{c + 1} {n}" for c, n in enumerate(classes)]
    for f, rows in lines.items():
        (root / f).write_text("\n".join(rows) + "\n")


def test_cub200(tmp_path):
    root = tmp_path / "CUB_200_2011"
    make_cub(root)
    src = load("cub200", root)
    assert src.class_names == ["001.Albatross", "002.Auklet", "003.Blackbird"]
    assert isinstance(src.train, MappedImages) and src.load_size == 256
    assert per_class(src.train.labels) == [2, 2, 2] and per_class(src.test.labels) == [1, 1, 1]
    assert src.test[2][0].shape == (3, 256, 256)
    small = load("cub200", tmp_path, image_size=16, in_memory=True)  # the parent works too
    assert small.train.images.shape == (6, 3, 16, 16)
    assert_colours(small.train, COLOURS)
    (root / "classes.txt").unlink()  # optional: names then come from the folders
    assert load("cub200", root).class_names == src.class_names


def test_cub200_malformed(tmp_path):
    root = tmp_path / "CUB_200_2011"
    make_cub(root)
    (root / "image_class_labels.txt").write_text("1 1\n2\n")
    with pytest.raises(DatasetError, match="image_class_labels.txt line 2"):
        load("cub200", root)
    (root / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match="is not a CUB-200-2011 root: expected images.txt"):
        load("cub200", root)


def _cell(strings) -> np.ndarray:
    cell = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        cell[i, 0] = s
    return cell


def test_stanford_dogs(tmp_path):
    root = tmp_path / "stanford_dogs"
    folders = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    for split, n in (("train", 3), ("test", 2)):
        files, labels = [], []
        for c, f in enumerate(folders):
            for k in range(n):
                name = f"{f}/{f.split('-')[0]}_{split}{k}.jpg"
                img(root / "Images" / name, c, size=(50, 40))
                files.append(name)
                labels.append(c + 1)
        (root / "lists").mkdir(exist_ok=True)
        sio.savemat(root / "lists" / f"{split}_list.mat",
                    {"file_list": _cell(files), "labels": np.array(labels)[:, None]})  # fmt: skip
    src = load("stanford_dogs", root, image_size=24, train_per_class=2)
    assert src.class_names == ["Chihuahua", "Japanese_spaniel"]
    assert per_class(src.train.labels) == [2, 2] and per_class(src.test.labels) == [2, 2]
    assert src.train.images.shape == (4, 3, 24, 24)
    assert_colours(src.test, COLOURS)
    (root / "lists" / "test_list.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="test_list.mat is not a split list"):
        load("stanford_dogs", root)


def test_stanford_cars(tmp_path):
    base = tmp_path / "stanford_cars"
    names = np.empty((1, 2), dtype=object)
    names[0, :] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    for split, n, mat in (("train", 4, "devkit/cars_train_annos.mat"),
                          ("test", 2, "cars_test_annos_withlabels.mat")):  # fmt: skip
        ann = np.zeros((1, n), dtype=[("bbox_x1", "O"), ("fname", "O"), ("class", "O")])
        for i in range(n):
            ann[0, i] = (np.array([[1]]), f"{i + 1:05d}.jpg", np.array([[i % 2 + 1]], np.uint8))
            img(base / f"cars_{split}" / f"{i + 1:05d}.jpg", i % 2, size=(60, 30))
        sio.savemat(base / mat, {"annotations": ann})
    src = load("stanford_cars", base, image_size=16)  # the folder or its parent
    assert src.class_names == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    assert per_class(src.train.labels) == [2, 2] and per_class(src.test.labels) == [1, 1]
    assert_colours(src.train, COLOURS)
    lazy = load("stanford_cars", tmp_path, in_memory=False)
    assert isinstance(lazy.test, FileImages) and lazy.test.paths[0].endswith("cars_test/00001.jpg")
    (base / "devkit" / "cars_meta.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="could not be read by torchvision"):
        load("stanford_cars", tmp_path)


def test_fgvc_aircraft(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "F/A-18"]
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    ident = 1000000
    for split, n in (("trainval", 2), ("test", 1)):
        rows = []
        for c, v in enumerate(variants):
            for _ in range(n):
                ident += 1
                img(data / "images" / f"{ident}.jpg", c, size=(40, 32))
                rows.append(f"{ident} {v}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    src = load("fgvc_aircraft", data.parent, image_size=16)
    assert src.class_names == variants
    assert per_class(src.train.labels) == [2, 2, 2] and per_class(src.test.labels) == [1, 1, 1]
    assert_colours(src.train, COLOURS)
    assert isinstance(load("fgvc_aircraft", tmp_path).train, MappedImages)
    with pytest.raises(DatasetError, match="images_variant_train.txt"):
        load("fgvc_aircraft", tmp_path, train_split="train")


# --- archives ---------------------------------------------------------------------------


def test_unpack_archive_once(tmp_path, monkeypatch):
    folder_tree(tmp_path / "src" / "tiny" / "train", ["a", "b"], 2)
    folder_tree(tmp_path / "src" / "tiny" / "test", ["a", "b"], 1)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "tiny", arcname="tiny")
    top = unpack_archive(archive, tmp_path / "unpacked")
    assert top.name == "tiny" and (top / "train" / "a" / "000.png").is_file()
    assert [p.name for p in (tmp_path / "unpacked").iterdir()] == [top.parent.name]

    def no_reopen(*args, **kwargs):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(tarfile, "open", no_reopen)
    assert unpack_archive(archive, tmp_path / "unpacked") == top
    assert len(load("image_folder", top, image_size=8).train) == 4


def test_unpack_archive_refuses_unsafe_members(tmp_path):
    (tmp_path / "evil.txt").write_text("x")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "evil.txt", arcname="../evil.txt")
    with pytest.raises(DatasetError, match="cannot unpack archive"):
        unpack_archive(archive, tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists() or not any((tmp_path / "unpacked").iterdir())
    with pytest.raises(DatasetError, match="does not exist"):
        unpack_archive(tmp_path / "missing.tar.gz", tmp_path / "unpacked")


def test_archive_param_unpacks_once_and_excludes_root(tmp_path, monkeypatch):
    folder_tree(tmp_path / "src" / "tiny" / "train", ["a", "b"], 2)
    folder_tree(tmp_path / "src" / "tiny" / "test", ["a", "b"], 1)
    with tarfile.open(tmp_path / "tiny.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "tiny", arcname="tiny")
    monkeypatch.chdir(tmp_path)  # a relative archive path is taken from the current dir
    src = load("image_folder", None, archive="tiny.tar.gz", image_size=8)
    assert src.class_names == ["a", "b"] and len(src.train) == 4
    assert len(list((tmp_path / "cache" / "archives").iterdir())) == 1
    assert_colours(src.train, COLOURS)
    with pytest.raises(DatasetError, match="either `root:` or `params.archive`"):
        load("cifar10", tmp_path / "src", archive="tiny.tar.gz")
    with pytest.raises(DatasetError, match=r"^mnist: archive .*missing.tar.gz does not exist"):
        load("mnist", None, archive="missing.tar.gz")


# --- the real shared archives, cut down -------------------------------------------------
# The full archives hold 60-70k files (unpacking MNIST alone takes ~50 s). These tests
# stream a real archive once, keep the first few images of every class of each split in a
# small tar.gz with the same layout, and run unpack_archive + the loader on that: real
# pixels, real archive code path, a few seconds.

SHARED = Path(__file__).resolve().parents[2] / "shared/data"


def cut_archive(archive: Path, dest: Path, per_class: int) -> Path:
    """``<top>/<split>/<class>/<file>`` members of ``archive``: the first ``per_class`` of
    each (split, class), in archive order, written to ``dest`` (a .tar.gz).

    The archive is gunzipped in one go and its ustar headers are walked directly
    (``tarfile`` building 70k TarInfo objects is what makes a full pass slow)."""
    if not archive.is_file():
        pytest.skip(f"{archive} is not here")
    data = gzip.decompress(archive.read_bytes())
    counts: dict[tuple[str, str], int] = {}
    pos = 0
    with tarfile.open(dest, "w:gz") as out:
        while pos + 512 <= len(data) and data[pos : pos + 512].strip(b"\0"):
            head = data[pos : pos + 512]
            name = head[:100].rstrip(b"\0").decode()
            size = int(head[124:136].strip(b"\0 ") or b"0", 8)
            start, pos = pos + 512, pos + 512 + (size + 511) // 512 * 512
            parts = name.split("/")
            if head[156:157] not in (b"0", b"\0") or len(parts) != 4:
                continue  # folders (and anything else) are not images
            key = (parts[1], parts[2])
            if counts.get(key, 0) < per_class:
                counts[key] = counts.get(key, 0) + 1
                info = tarfile.TarInfo(name)
                info.size = size
                out.addfile(info, io.BytesIO(data[start : start + size]))
    assert counts, f"no <top>/<split>/<class>/<file> members in {archive}"
    return dest


def test_real_mnist_archive(tmp_path):
    small = cut_archive(SHARED / "mnist.tar.gz", tmp_path / "mnist.tar.gz", per_class=12)
    root = unpack_archive(small, tmp_path / "unpacked")
    assert root.name == "mnist" and sorted(os.listdir(root / "train")) == list("0123456789")
    src = load("mnist", root, train_per_class=10, test_per_class=5)
    assert src.class_names == [str(d) for d in range(10)]
    assert src.train.images.shape == (100, 1, 28, 28) and src.test.images.shape == (50, 1, 28, 28)
    assert per_class(src.train.labels) == [10] * 10 and per_class(src.test.labels) == [5] * 10
    assert 20 < src.train.images.float().mean() < 60  # dark background, bright strokes
    assert src.train.images.amax() == 255 and src.augment.flip == 0.0
    via_param = load("mnist", None, archive=str(small), train_per_class=10, test_per_class=5)
    assert torch.equal(via_param.train.images, src.train.images)


def test_real_cifar10_archive(tmp_path):
    small = cut_archive(SHARED / "cifar10.tar.gz", tmp_path / "cifar10.tar.gz", per_class=6)
    src = load("cifar10", None, archive=str(small), test_per_class=4)
    assert src.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                               "horse", "ship", "truck"]  # fmt: skip
    assert src.train.images.shape == (60, 3, 32, 32) and src.test.images.shape == (40, 3, 32, 32)
    assert per_class(src.train.labels) == [6] * 10 and per_class(src.test.labels) == [4] * 10
    x = src.train.images.float()
    assert 60 < x.mean() < 180 and x.std() > 30  # natural photos, not blank or constant
    assert (x[:, 0] - x[:, 2]).abs().mean() > 1  # colour, not grey copies
    small16 = load("cifar10", None, archive=str(small), image_size=16)
    assert small16.train.images.shape == (60, 3, 16, 16) and small16.load_size == 16
