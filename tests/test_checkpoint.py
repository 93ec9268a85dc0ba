"""Per-epoch checkpoints: RNG capture and checkpoint validity. (A run stopped after epoch
k and resumed from its checkpoint ending with the uninterrupted metrics is tested in
tests/test_tracking.py, which shares a trained teacher cache and a reference run.)"""

from __future__ import annotations

import random

import numpy as np
import torch

from bench.engine.checkpoint import Checkpoint, rng_state, set_rng_state


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(3)
    state = rng_state(gen)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.randperm(9, generator=gen))
    set_rng_state(state, gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.randperm(9, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    ckpt = Checkpoint(tmp_path / "checkpoint.pt", every=1, key="aaaa")
    ckpt.save({"epoch": 1})
    assert Checkpoint(ckpt.path, every=1, key="bbbb").load(epochs=3) is None
    assert ckpt.load(epochs=3)["epoch"] == 1
    assert not ckpt.due(3, 3) and ckpt.due(2, 3) and not Checkpoint(ckpt.path, 0).due(2, 3)
