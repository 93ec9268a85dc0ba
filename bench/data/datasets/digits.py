"""scikit-learn's bundled 8x8 handwritten digits: the embedded, offline default."""

from __future__ import annotations

import numpy as np
import torch

from bench.data.datasets.base import AugmentDefaults, LabelListing, SourceData, TensorImages
from bench.data.datasets.loader import Dataset
from bench.data.datasets.params import OpenFraction, Params

CLASSES = [str(d) for d in range(10)]


class Digits(Dataset, name="digits"):
    """1,797 grey 8x8 digits (0-16 intensities, scaled to 0-255); a fixed stratified
    train/test split (``test_fraction``) since the data ships as one set."""

    class Params(Params):
        test_fraction: OpenFraction = 0.2
        split_seed: int = 0

    def load(self, root, p: Params) -> SourceData:
        bunch, labels, idx_train, idx_test = _split(p.test_fraction, p.split_seed)
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
        imgs, labs = torch.from_numpy(images), torch.from_numpy(labels)
        return SourceData(
            train=TensorImages(imgs[idx_train], labs[idx_train]),
            test=TensorImages(imgs[idx_test], labs[idx_test]),
            class_names=CLASSES,
            channels=1,
            load_size=8,
            # 8 px: gentle crops, no flips (a flipped digit is another symbol), light blur.
            augment=AugmentDefaults(
                image_size=8,
                crop_scale=(0.7, 1.0),
                flip=0.0,
                jitter=0.3,
                blur=0.3,
                blur_sigma=(0.1, 0.6),
            ),
            mean=(0.5,),
            std=(0.5,),
        )

    def list_labels(self, root, p: Params) -> LabelListing:
        """The split's labels (scikit-learn's bundled table; no tensor built)."""
        _, labels, idx_train, idx_test = _split(p.test_fraction, p.split_seed)
        return LabelListing(CLASSES, labels[idx_train].tolist(), labels[idx_test].tolist())


def _split(test_fraction: float, split_seed: int):
    """The bundled set, its labels and the sorted train / test indices of the fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    return bunch, labels, np.sort(idx_train), np.sort(idx_test)
