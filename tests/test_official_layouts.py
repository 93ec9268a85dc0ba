"""The four fine-grained datasets exactly as their official archives unpack (miniature
replicas built in tmp_path: the same folders, file names, text formats and .mat
structures, a few tiny images per class), loaded through the registered loaders, checked
by ``bench data check`` and by the pre-run checks against the official manifest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image

from bench.cli import main
from bench.core.errors import ConfigError
from bench.data.datasets import DATASETS, DatasetError
from bench.data.datasets import manifest as manifest_mod
from bench.data.datasets.manifest import OFFICIAL, Official, compare, official, sentence
from bench.experiment.preflight import check_dataset
from tests.conftest import tiny_suite, write_suite

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("KA_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KA_BENCH_DATA", raising=False)


def jpg(path: Path, c: int, size=(20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[c]).save(path, "JPEG", quality=95)


def cell(strings) -> np.ndarray:
    """A MATLAB N x 1 cell of char arrays, as the real .mat files hold."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = s
    return out


def pairs_of(split) -> list[tuple[str, int]]:
    """Every (file, label) pair of a lazily loaded split (FileImages)."""
    return [(p, int(y)) for p, y in zip(split.paths, split.labels)]


def load(name, root, **params):
    return DATASETS.get(name)(root=root, image_size=16, in_memory=False, **params)


def data_check(capsys, *args) -> tuple[int, str, str]:
    code = main(["data", "check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def truncate(path: Path) -> None:
    """A JPEG cut in half, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- CUB-200-2011: CUB_200_2011.tgz unpacks attributes.txt + CUB_200_2011/ ---------------

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross",
               "004.Groove_billed_Ani"]  # fmt: skip


def make_cub(parent: Path) -> tuple[list, list]:
    """The tarball's layout under ``parent``; returns the expected train and test pairs."""
    root = parent / "CUB_200_2011"
    root.mkdir(parents=True)
    (parent / "attributes.txt").write_text("1 has_bill_shape::curved_(up_or_down)\n")
    images, labels, split, boxes = [], [], [], []
    train, test = [], []
    i = 0
    for c, cls in enumerate(CUB_CLASSES):
        bird = "_".join(w.capitalize() for w in cls[4:].split("_"))
        for k in range(3):
            i += 1
            rel = f"{cls}/{bird}_{k + 1:04d}_{700 + i}.jpg"
            jpg(root / "images" / rel, c, size=(24 + k, 18))
            is_train = int(k != 1)  # train and test interleave as in the real list
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c + 1}")
            split.append(f"{i} {is_train}")
            boxes.append(f"{i} 1.0 2.0 10.0 12.0")
            (train if is_train else test).append((str(root / "images" / rel), c))
    for name, rows in (("images.txt", images), ("image_class_labels.txt", labels),
                       ("train_test_split.txt", split), ("bounding_boxes.txt", boxes),
                       ("classes.txt", [f"{c + 1} {n}" for c, n in enumerate(CUB_CLASSES)])):  # fmt: skip
        (root / name).write_text("\n".join(rows) + "\n")
    (root / "README").write_text("CUB-200-2011\n")
    (root / "parts").mkdir()
    (root / "attributes").mkdir()
    return train, test


@pytest.mark.parametrize("given", ["parent", "folder"])
def test_cub200_as_the_tarball_unpacks(tmp_path, given):
    train, test = make_cub(tmp_path / "data")
    root = tmp_path / "data" if given == "parent" else tmp_path / "data" / "CUB_200_2011"
    src = load("cub200", root)
    assert src.class_names == CUB_CLASSES
    assert pairs_of(src.train) == train and pairs_of(src.test) == test
    assert (len(train), len(test)) == (8, 4)
    cub = DATASETS.get("cub200")
    listing = cub.list_files(root, cub.parse({}))
    assert listing.root == tmp_path / "data" / "CUB_200_2011"
    assert [(str(p), y) for p, y in listing.train] == train


def test_cub200_data_check(tmp_path, capsys):
    make_cub(tmp_path)
    code, out, err = data_check(capsys, "cub200", tmp_path)
    assert code == 0 and err == ""
    assert f"cub200: {tmp_path / 'CUB_200_2011'}" in out
    assert "official         200     5,994     5,794" in out
    assert "found              4         8         4" in out
    assert "classes: 0 001.Black_footed_Albatross, 1 002.Laysan_Albatross" in out
    assert "missing: none (of 12)" in out
    assert out.rstrip().endswith(
        "a subset: 4 of 200 classes, 8 of 5,994 train images, 4 of 5,794 test images"
    )


# --- Stanford Dogs: images.tar -> Images/, lists.tar -> three .mat files at the top -------

DOG_FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog",
               "n02116738-African_hunting_dog"]  # fmt: skip
DOG_BREEDS = ["Chihuahua", "Japanese_spaniel", "Maltese_dog", "African_hunting_dog"]


def make_dogs(root: Path, lists_in: str = "top", train_n: int = 3, test_n: int = 2) -> tuple:
    """images.tar and lists.tar unpacked into ``root`` (lists at the top, as the tarball
    has them, or moved into ``lists/``); returns the expected train and test pairs."""
    expected = {"train": [], "test": []}
    rows = {"train": [], "test": []}
    for c, folder in enumerate(DOG_FOLDERS):
        wnid = folder.split("-")[0]
        for k in range(train_n + test_n):
            rel = f"{folder}/{wnid}_{1000 + 7 * k + c}.jpg"
            jpg(root / "Images" / rel, c, size=(30 + k, 24))
            split = "train" if k < train_n else "test"
            rows[split].append((rel, c + 1))
            expected[split].append((str(root / "Images" / rel), c))
    (root / "Annotation" / DOG_FOLDERS[0]).mkdir(parents=True)  # annotation.tar
    where = root if lists_in == "top" else root / "lists"
    where.mkdir(exist_ok=True)
    for split in ("train", "test", "file"):
        chosen = rows["train"] + rows["test"] if split == "file" else rows[split]
        files = [r for r, _ in chosen]
        sio.savemat(where / f"{split}_list.mat", {
            "file_list": cell(files),
            "annotation_list": cell([f[: -len(".jpg")] for f in files]),
            "labels": np.array([[float(y)] for _, y in chosen]),  # MATLAB doubles, 1-based
        })  # fmt: skip
    return expected["train"], expected["test"]


def test_dogs_replica_mat_structure(tmp_path):
    """The replica's train_list.mat reads back as the real one does."""
    make_dogs(tmp_path)
    mat = sio.loadmat(tmp_path / "train_list.mat")
    assert {"file_list", "annotation_list", "labels"} <= set(mat)
    assert mat["file_list"].shape == (12, 1) and mat["labels"].shape == (12, 1)
    assert mat["file_list"][0, 0][0] == "n02085620-Chihuahua/n02085620_1000.jpg"
    assert mat["annotation_list"][0, 0][0] == "n02085620-Chihuahua/n02085620_1000"
    assert mat["labels"].dtype == np.float64 and mat["labels"][-1, 0] == 4.0


@pytest.mark.parametrize("lists_in", ["top", "lists"])
def test_dogs_both_list_places(tmp_path, lists_in):
    root = tmp_path / "stanford_dogs"
    train, test = make_dogs(root, lists_in)
    src = load("stanford_dogs", root)
    assert src.class_names == DOG_BREEDS
    assert pairs_of(src.train) == train and pairs_of(src.test) == test
    assert torch.bincount(src.train.labels).tolist() == [3, 3, 3, 3]
    small = DATASETS.get("stanford_dogs")(root=root, image_size=8, train_per_class=1)
    means = small.train.images.float().mean((2, 3))  # the pixels match their labels
    want = torch.tensor([COLOURS[int(y)] for y in small.train.labels], dtype=torch.float)
    assert torch.allclose(means, want, atol=8)
    where = "at the top level" if lists_in == "top" else "in lists/"
    dogs = DATASETS.get("stanford_dogs")
    assert where in dogs.list_files(root, dogs.parse({})).layout


def test_dogs_lists_in_both_places(tmp_path):
    root = tmp_path / "stanford_dogs"
    train, _ = make_dogs(root, "top")
    (root / "lists").mkdir()
    for f in ("train_list.mat", "test_list.mat"):
        shutil.copy(root / f, root / "lists" / f)
    assert pairs_of(load("stanford_dogs", root).train) == train  # identical: fine
    sio.savemat(root / "lists" / "test_list.mat",
                {"file_list": cell([f"{DOG_FOLDERS[0]}/x.jpg"]), "labels": np.array([[1.0]])})  # fmt: skip
    with pytest.raises(DatasetError) as err:
        load("stanford_dogs", root)
    msg = str(err.value)
    assert msg == (
        f"stanford_dogs: {root / 'test_list.mat'} and {root / 'lists' / 'test_list.mat'} "
        "differ: keep one set of split lists (the top level, as lists.tar unpacks them, or lists/)"
    )
    with pytest.raises(DatasetError, match="differ"):
        dogs = DATASETS.get("stanford_dogs")
        dogs.check_layout(root, dogs.parse({}))


def test_dogs_missing_list_file(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    make_dogs(root, "top")
    (root / "test_list.mat").unlink()
    code, out, err = data_check(capsys, "stanford_dogs", root)
    assert code == 2 and out == ""
    assert err == (
        f"error: stanford_dogs: {root / 'test_list.mat'} is missing: expected "
        "Images/<wnid>-<breed>/*.jpg with train_list.mat and test_list.mat either at the top "
        "level (as lists.tar unpacks them) or in lists/\n"
    )
    (root / "train_list.mat").unlink()  # no lists at all: the layout, both places named
    with pytest.raises(DatasetError, match="is not a Stanford Dogs root: expected .* or in lists/"):
        load("stanford_dogs", root)


def test_dogs_data_check_output(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    make_dogs(root, "top")
    code, out, err = data_check(capsys, "stanford_dogs", root)
    assert code == 0 and err == ""
    assert out == (
        f"stanford_dogs: {root}\n"
        "layout: Images/<wnid>-<breed>/*.jpg; split lists at the top level (as lists.tar "
        "unpacks them)\n"
        "root holds: Annotation/ (1 entry), Images/ (4 entries), file_list.mat, "
        "test_list.mat, train_list.mat\n"
        "             classes     train      test\n"
        "found              4        12         8\n"
        "official         120    12,000     8,580\n"
        "(Stanford Dogs)\n"
        "classes: 0 Chihuahua, 1 Japanese_spaniel, 2 Maltese_dog, 3 African_hunting_dog\n"
        "missing: none (of 20)\n"
        "corrupt: not checked (--decode opens every image)\n"
        "a subset: 4 of 120 classes, 12 of 12,000 train images, 8 of 8,580 test images\n"
    )


def test_dogs_data_check_default_root_in_a_subprocess(tmp_path):
    make_dogs(tmp_path / "data" / "stanford_dogs", "lists")
    env = {**os.environ, "KA_BENCH_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bench", "data", "check", "stanford_dogs"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"stanford_dogs: {tmp_path / 'data' / 'stanford_dogs'}\n" in done.stdout
    assert "split lists in lists/" in done.stdout
    assert "a subset: 4 of 120 classes, 12 of 12,000 train images" in done.stdout


def test_dogs_corrupt_image(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    train, _ = make_dogs(root, "top")
    bad = Path(train[4][0])
    truncate(bad)
    with pytest.raises(DatasetError, match="skip_corrupt: true skips such files") as err:
        DATASETS.get("stanford_dogs")(root=root, image_size=8)
    assert str(bad) in str(err.value)
    src = DATASETS.get("stanford_dogs")(root=root, image_size=8, skip_corrupt=True)
    assert len(src.train) == 11 and torch.bincount(src.train.labels).tolist() == [3, 2, 3, 3]

    assert data_check(capsys, "stanford_dogs", root)[0] == 0  # no --decode: not opened
    code, out, err = data_check(capsys, "stanford_dogs", root, "--decode")
    assert code == 2
    assert f"corrupt: 1 of 20 image(s) do not decode: {bad} (" in out
    assert err.startswith(f"error: stanford_dogs: cannot read image {bad} (1 corrupt image(s);")
    assert err.count("\n") == 1
    code, out, err = data_check(capsys, "stanford_dogs", root, "--decode", "--skip-corrupt")
    assert code == 0 and err == ""
    assert "skip_corrupt: the loader would skip 1 corrupt image(s)" in out


def test_dogs_listed_file_not_on_disk(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    _, test = make_dogs(root, "top")
    gone = Path(test[0][0])
    gone.unlink()
    code, out, err = data_check(capsys, "stanford_dogs", root)
    assert code == 2
    assert f"missing: 1 of 20 listed file(s) not on disk: {gone}\n" in out
    assert err == f"error: stanford_dogs: {gone} is listed but not on disk (1 such file(s))\n"


def test_data_check_bad_input(tmp_path, capsys):
    code, out, err = data_check(capsys, "stanford_dogs", tmp_path / "nowhere")
    assert code == 2 and err.startswith(f"error: stanford_dogs: {tmp_path / 'nowhere'} does not")
    code, out, err = data_check(capsys, "digits", tmp_path)
    assert code == 2 and "'digits' cannot be checked (checkable: " in err
    code, out, err = data_check(capsys, "stanford_dogs", tmp_path, "--param", "oops")
    assert code == 2 and err == "error: --param: expected KEY=VALUE, got 'oops'\n"


# --- Stanford Cars: torchvision's StanfordCars layout ------------------------------------

CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "smart fortwo Convertible 2012"]


def _annotations(rows, labelled: bool = True) -> np.ndarray:
    """A 1 x N struct array with the devkit's fields, as cars_train_annos.mat holds it
    (cars_test_annos.mat, unlabelled, lacks ``class``)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    if not labelled:
        fields.remove("class")
    ann = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (fname, label) in enumerate(rows):
        box = [np.array([[v]], dtype=np.uint8) for v in (1, 2, 15, 12)]
        cls = [np.array([[label]], dtype=np.uint8)] if labelled else []
        ann[0, i] = (*box, *cls, fname)
    return ann


def make_cars(base: Path) -> tuple[list, list]:
    """car_devkit.tgz, cars_train.tgz, cars_test.tgz and cars_test_annos_withlabels.mat
    in one ``stanford_cars`` folder; returns the expected train and test pairs."""
    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    names[0, :] = CAR_CLASSES
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    (base / "devkit" / "README.txt").write_text("cars devkit\n")
    expected = {}
    for split, n, mat in (("train", 7, "devkit/cars_train_annos.mat"),
                          ("test", 5, "cars_test_annos_withlabels.mat")):  # fmt: skip
        rows = [(f"{i + 1:05d}.jpg", (i * 2) % 3 + 1) for i in range(n)]  # labels shuffled
        for fname, label in rows:
            jpg(base / f"cars_{split}" / fname, label - 1, size=(36, 20))
        sio.savemat(base / mat, {"annotations": _annotations(rows)})
        expected[split] = [(str(base / f"cars_{split}" / f), y - 1) for f, y in rows]
    test_unlabelled = _annotations(rows, labelled=False)
    sio.savemat(base / "devkit" / "cars_test_annos.mat", {"annotations": test_unlabelled})
    return expected["train"], expected["test"]


@pytest.mark.parametrize("given", ["folder", "parent"])
def test_stanford_cars_torchvision_layout(tmp_path, given, capsys):
    train, test = make_cars(tmp_path / "stanford_cars")
    src = load("stanford_cars", tmp_path / "stanford_cars" if given == "folder" else tmp_path)
    assert src.class_names == CAR_CLASSES
    assert pairs_of(src.train) == train and pairs_of(src.test) == test
    code, out, _ = data_check(capsys, "stanford_cars", tmp_path)
    assert code == 0
    assert "official         196     8,144     8,041" in out
    assert "a subset: 3 of 196 classes, 7 of 8,144 train images, 5 of 8,041 test images" in out


# --- FGVC-Aircraft 2013b: fgvc-aircraft-2013b.tar.gz ---------------------------------------

VARIANTS = ["707-320", "Boeing 717", "F/A-18", "Cessna 172"]
FAMILIES = ["Boeing 707", "Boeing 717", "F/A-18", "Cessna 172"]
MANUFACTURERS = ["Boeing", "McDonnell Douglas", "Cessna"]
MAKER = [0, 0, 1, 2]  # manufacturer of each variant


def make_aircraft(parent: Path) -> dict:
    """The tarball under ``parent``: the release's lists for all three levels and the
    train / val / trainval / test splits; returns the expected pairs per (level, split)."""
    top = parent / "fgvc-aircraft-2013b"
    data = top / "data"
    (top / "README.html").parent.mkdir(parents=True)
    (top / "README.html").write_text("<html>FGVC-Aircraft</html>\n")
    (top / "evaluation.m").write_text("% evaluation\n")
    for f, names in (("variants.txt", VARIANTS), ("families.txt", FAMILIES),
                     ("manufacturers.txt", MANUFACTURERS)):  # fmt: skip
        (data / f).parent.mkdir(parents=True, exist_ok=True)
        (data / f).write_text("\n".join(names) + "\n")
    ident = 34300
    ids = {"train": [], "val": [], "test": []}
    for k in range(3):
        for c in range(len(VARIANTS)):
            ident += 7
            ids[("train", "val", "test")[k]].append((f"{ident:07d}", c))
            jpg(data / "images" / f"{ident:07d}.jpg", c, size=(40, 30))
    ids["trainval"] = sorted(ids["train"] + ids["val"])
    expected = {}
    for level, names in (("variant", VARIANTS), ("family", FAMILIES),
                         ("manufacturer", MANUFACTURERS)):  # fmt: skip
        for split, rows in ids.items():
            label = (lambda c: MAKER[c]) if level == "manufacturer" else (lambda c: c)
            lines = [f"{i} {names[label(c)]}" for i, c in rows]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
            expected[level, split] = [
                (str(data / "images" / f"{i}.jpg"), label(c)) for i, c in rows
            ]
    (data / "images_box.txt").write_text("\n".join(f"{i} 1 2 30 20" for i, _ in ids["trainval"]))
    return expected


@pytest.mark.parametrize("given", ["parent", "folder", "data"])
def test_fgvc_aircraft_release_layout(tmp_path, given):
    expected = make_aircraft(tmp_path)
    root = {"parent": tmp_path, "folder": tmp_path / "fgvc-aircraft-2013b",
            "data": tmp_path / "fgvc-aircraft-2013b" / "data"}[given]  # fmt: skip
    src = load("fgvc_aircraft", root)
    assert src.class_names == VARIANTS
    assert pairs_of(src.train) == expected["variant", "trainval"]
    assert pairs_of(src.test) == expected["variant", "test"]
    maker = load("fgvc_aircraft", root, annotation_level="manufacturer", train_split="train")
    assert maker.class_names == MANUFACTURERS
    assert pairs_of(maker.train) == expected["manufacturer", "train"]
    assert pairs_of(maker.test) == expected["manufacturer", "test"]


def test_fgvc_aircraft_data_check_levels(tmp_path, capsys):
    make_aircraft(tmp_path)
    code, out, _ = data_check(capsys, "fgvc_aircraft", tmp_path)
    assert code == 0
    assert "             classes  trainval      test\n" in out
    assert "official         100     6,667     3,333\n" in out
    assert "a subset: 4 of 100 classes, 8 of 6,667 trainval images, 4 of 3,333 test images" in out
    code, out, _ = data_check(capsys, "fgvc_aircraft", tmp_path, "--param",
                              "annotation_level=family", "--param", "train_split=train")  # fmt: skip
    assert code == 0 and "official          70     3,334     3,333\n" in out


# --- the manifest and the pre-run warning -------------------------------------------------


def test_manifest_counts():
    assert {n: o.counts() for n, o in OFFICIAL.items()} == {
        "cub200": (200, 5994, 5794),
        "stanford_dogs": (120, 12000, 8580),
        "stanford_cars": (196, 8144, 8041),
        "fgvc_aircraft": (100, 6667, 3333),
        "cifar10": (10, 50000, 10000),
        "mnist": (10, 60000, 10000),
    }
    assert official("fgvc_aircraft", annotation_level="manufacturer").counts() == (30, 6667, 3333)
    dogs = OFFICIAL["stanford_dogs"]
    assert sentence((120, 12000, 8580), dogs) == "official distribution: complete"
    assert compare((120, 240, 8580), dogs) == ("subset", "240 of 12,000 train images")
    assert compare((120, 12001, 100), dogs) == (
        "differs", "12,001 train images (official 12,000), 100 test images (official 8,580)")  # fmt: skip
    assert compare((121, 12000, 8580), dogs)[0] == "differs"


def test_preflight_warns_on_a_subset(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    make_dogs(root, "top")
    check_dataset("stanford_dogs", str(root), {}, "datasets.0")
    assert capsys.readouterr().err == (
        f"warning: datasets.0.root: stanford_dogs at {root}: 4 of 120 classes, 12 of 12,000 "
        "train images, 8 of 8,580 test images (a subset)\n"
    )


def test_preflight_warns_on_other_counts(tmp_path, capsys, monkeypatch):
    root = tmp_path / "stanford_dogs"
    make_dogs(root, "top")
    monkeypatch.setitem(manifest_mod.OFFICIAL, "stanford_dogs", Official("Dogs", 3, 12, 8))
    check_dataset("stanford_dogs", str(root), {}, "datasets.0")
    assert capsys.readouterr().err == (
        f"warning: datasets.0.root: stanford_dogs at {root}: differs from the official "
        "distribution: 4 classes (official 3)\n"
    )
    monkeypatch.setitem(manifest_mod.OFFICIAL, "stanford_dogs", Official("Dogs", 4, 12, 8))
    check_dataset("stanford_dogs", str(root), {}, "datasets.0")
    assert capsys.readouterr().err == ""  # the whole distribution: nothing to say
    (root / "train_list.mat").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"^datasets\.0\.root: stanford_dogs: .*train_list.mat"):
        check_dataset("stanford_dogs", str(root), {}, "datasets.0")


def test_dry_run_warns_and_goes_on(tmp_path, capsys):
    root = tmp_path / "stanford_dogs"
    make_dogs(root, "lists", train_n=2, test_n=1)
    suite = tiny_suite(datasets=[{"name": "stanford_dogs", "root": str(root), "tasks": "halves",
                                  "params": {"image_size": 16}}])  # fmt: skip
    path = write_suite(tmp_path / "dogs.yaml", suite)
    code = main(["run", str(path), "--dry-run", "--no-mlflow", "--results", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == (
        f"warning: datasets.0.root: stanford_dogs at {root}: 4 of 120 classes, 8 of 12,000 "
        "train images, 4 of 8,580 test images (a subset)\n"
    )
    assert "suite tiny" in out
