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


def test_a_finished_runs_stale_checkpoint_is_removed_when_it_is_skipped(tmp_path):
    """``skip_finished`` removes a finished run's checkpoint through ``Checkpoint.remove``
    (the one that lives beside its ``result.json``); a pending run's stays."""
    import io

    from bench.core.config import validate_suite
    from bench.core.record import RunRecord
    from bench.core.store import RunStore
    from bench.experiment.plan import expand
    from bench.launch.suite import SuiteOutcome, skip_finished
    from tests.conftest import tiny_suite

    done, todo = expand(validate_suite(tiny_suite(), "t"))[:2]
    store = RunStore(tmp_path / "tiny")
    store.write(RunRecord.for_run(done, "finished"))
    ckpts = [Checkpoint.of_run(store.run_dir(r.key), 1, r.key) for r in (done, todo)]
    assert ckpts[0].path == store.run_dir(done.key) / "checkpoint.pt"
    for c in ckpts:
        c.save({"epoch": 1})
    outcome, out = SuiteOutcome(store.suite_dir), io.StringIO()
    assert skip_finished([done, todo], store, outcome, out) == [todo]
    assert outcome.skipped == [done.key] and "skipping 1 finished run(s)" in out.getvalue()
    assert not ckpts[0].exists() and ckpts[1].exists()
    ckpts[1].remove()
    ckpts[1].remove()  # already gone: no error
    assert not ckpts[1].exists()
