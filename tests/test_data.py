"""Class layout, union label order, validation carve-out, views and accuracy metrics."""

from __future__ import annotations

import pytest
import torch

from bench.core.config import DatasetConfig
from bench.core.errors import ConfigError
from bench.data.datasets import DATASETS, AugmentDefaults, TensorImages
from bench.data.prepare import iterate_batches, prepare, resolve_tasks, stratified_carve
from bench.data.views import Views
from bench.engine.evaluate import per_task_accuracy, top1


def digits_source():
    return DATASETS.get("digits")()


def test_halves_and_union_order():
    layout = resolve_tasks("halves", digits_source())
    assert layout.tasks == ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    assert layout.sizes == [5, 5] and layout.task_slice(1) == slice(5, 10)


def test_explicit_tasks_reorder_union_labels_teacher_by_teacher():
    layout = resolve_tasks([[7, 1], ["3", 0]], digits_source())
    assert layout.class_names == ("7", "1", "3", "0")
    table = layout.source_to_union(10)
    assert table.tolist() == [3, 1, -1, 2, -1, -1, -1, 0, -1, -1]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([[0, 1], [1, 2]], "more than one teacher task"),
        ([[0, 1], [12, 2]], "class index 12 is out of range"),
        ([[0, 1], ["x", 2]], "unknown class name 'x'"),
        ([[0], [1, 2]], "at least 2 classes"),
        ("natural", "needs a dataset that defines groups"),
    ],
)
def test_bad_tasks(tasks, message):
    with pytest.raises(ConfigError, match=message):
        resolve_tasks(tasks, digits_source())


def test_prepare_drops_unused_classes_and_carves_val_from_train():
    cfg = DatasetConfig(name="digits", tasks=[[7, 1], [3, 0]], val_fraction=0.2)
    data = prepare(cfg)
    for split in (data.train, data.val, data.test):
        assert set(split.labels.tolist()) == {0, 1, 2, 3}
    source = digits_source()
    n_train = int(sum((source.train.labels == c).sum() for c in (7, 1, 3, 0)))
    assert len(data.train) + len(data.val) == n_train
    assert abs(len(data.val) - 0.2 * n_train) <= 4  # rounding per class
    # val and train are disjoint images (compare raw bytes)
    train_set = {bytes(x.numpy()) for x in data.train.images}
    assert not any(bytes(x.numpy()) in train_set for x in data.val.images[:50])
    # union label 0 is source class 7 in every split
    t7 = source.test.images[source.test.labels == 7]
    assert torch.equal(data.test.images[data.test.labels == 0], t7)
    # task-local training set of teacher 2: source classes 3, 0 as local 0, 1
    task2 = data.task_train(1)
    assert set(task2.labels.tolist()) == {0, 1}


def test_stratified_carve_is_seeded_and_per_class():
    labels = torch.tensor([0] * 10 + [1] * 20)
    keep_a, val_a = stratified_carve(labels, 0.1, seed=3)
    keep_b, val_b = stratified_carve(labels, 0.1, seed=3)
    _, val_c = stratified_carve(labels, 0.1, seed=4)
    assert val_a == val_b and val_a != val_c
    assert sorted(labels[val_a].tolist()) == [0, 1, 1]
    assert sorted(keep_a + val_a) == list(range(30))


def test_top1_and_per_task_accuracy_by_hand():
    labels = torch.tensor([0, 1, 2, 3, 4, 4])  # tasks: {0,1} and {2,3,4}
    pred = torch.tensor([0, 2, 2, 3, 1, 4])
    assert top1(pred, labels) == pytest.approx(4 / 6)
    assert per_task_accuracy(pred, labels, [2, 3]) == pytest.approx({"T1": 0.5, "T2": 0.75})


def test_iterate_batches_covers_every_image_once_per_epoch():
    images = TensorImages(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in iterate_batches(images, 4, True, gen)])
    assert sorted(seen.tolist()) == list(range(10))
    dropped = [len(y) for _, y in iterate_batches(images, 4, True, gen, drop_last=True)]
    assert dropped == [4, 4]


def test_views_shapes_ranges_and_test_crop():
    aug = AugmentDefaults(image_size=6, crop_scale=(0.5, 1.0), flip=0.5, jitter=0.4, blur=1.0)
    views = Views(aug, load_size=8, mean=(0.5,), std=(0.5,))
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    v1, v2 = views.train(x), views.train(x)
    assert v1.shape == (16, 1, 6, 6) and not torch.equal(v1, v2)
    assert v1.min() >= -1.0 - 1e-6 and v1.max() <= 1.0 + 1e-6
    t = views.test(x)  # centre 6x6 crop of the 8x8 load, normalised
    assert torch.allclose(t, (x[:, :, 1:7, 1:7].float() / 255 - 0.5) / 0.5)


@pytest.mark.parametrize(("flip", "sign"), [(1.0, -1), (0.0, 1)])
def test_flip_mirrors_every_image(flip, sign):
    """Columns brighten left to right; a flipped view must darken left to right."""
    aug = AugmentDefaults(image_size=8, crop_scale=(0.5, 1.0), flip=flip, jitter=0.0, blur=0.0)
    views = Views(aug, load_size=8, mean=(0.0,), std=(1.0,))
    x = (torch.arange(8, dtype=torch.uint8) * 30).view(1, 1, 1, 8).repeat(32, 1, 8, 1)
    out = views.train(x)
    steps = out[..., 1:] - out[..., :-1]
    assert bool((steps * sign >= -1e-6).all()) and bool((steps * sign > 1e-3).any())


# Hand-made label vectors (unsorted, uneven, a singleton class, gaps in the class ids)
# and the indices the image_folder loader's own split (common.stratified_split, now gone)
# gave them: the one split left, stratified_carve, gives the same.
CARVE_CASES = [
    ([0, 1, 0, 1, 0, 1, 2, 2, 2, 2], 0.2, 0, [4, 5, 6]),
    ([3, 3, 3, 0, 0, 7, 7, 7, 7, 7, 7, 0], 0.5, 1, [0, 2, 3, 4, 8, 9, 10]),
    ([1] * 7 + [0] * 5 + [2], 0.3, 5, [5, 6, 10, 11]),
    ([4, 2, 4, 2, 4, 2, 4, 9, 9, 9, 9, 9, 9, 9, 9], 0.25, 11, [2, 3, 9, 12]),
]


@pytest.mark.parametrize("labels, fraction, seed, carved", CARVE_CASES)
def test_stratified_carve_keeps_the_old_image_folder_split(labels, fraction, seed, carved):
    rest = [i for i in range(len(labels)) if i not in carved]
    assert stratified_carve(labels, fraction, seed) == (rest, carved)
    assert stratified_carve(torch.tensor(labels), fraction, seed) == (rest, carved)
