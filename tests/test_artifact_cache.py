"""The artifact cache of teachers and pretrain stages (bench.core.artifacts,
bench.engine.cache): one definition of "cached" used by the engine, the dry-run and the
estimate; one process trains an entry, a second claimant waits and loads it."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest
import torch

from bench.core.artifacts import STAGE, TEACHER
from bench.core.atomic import atomic_write_json
from bench.core.config import validate_suite
from bench.engine.options import ExecOptions
from bench.experiment.dryrun import describe_stages
from bench.experiment.plan import expand
from tests.test_pretrain import pre_suite


def stage_spec():
    """The digits 0-4 stage of the pretrain tests (width 8, one epoch)."""
    runs = expand(validate_suite(pre_suite(), "t"))
    return next(r.spec.pretrain for r in runs if r.spec.pretrain is not None)


def test_cached_means_meta_and_weights_in_the_layout_of_the_options(tmp_path):
    options = ExecOptions(tmp_path)
    entry = options.artifact(TEACHER, "abc")
    assert entry.folder == tmp_path / "teachers" / "abc" and entry.key == "abc"
    assert entry.weights == tmp_path / "teachers" / "abc" / "teacher.pt"
    assert options.artifact(STAGE, "abc").weights == tmp_path / "pretrain" / "abc" / "backbone.pt"
    assert not entry.cached()
    atomic_write_json(entry.meta_path, {"key": "abc"})
    assert not entry.cached()  # meta.json alone: the weights are missing
    torch.save({}, entry.weights)
    assert entry.cached() and entry.meta() == {"key": "abc"}
    entry.meta_path.write_text('{"key": ')  # torn
    assert not entry.cached() and entry.meta() is None


def test_dry_run_calls_a_stage_cached_only_with_its_backbone(tmp_path):
    spec = stage_spec()
    entry = STAGE.entry(tmp_path, spec.key)
    atomic_write_json(entry.meta_path, {"key": spec.key})

    def state() -> str:
        (line,) = describe_stages([(spec, "pretrained")], tmp_path)[1:]
        return line.split()[1]

    assert state() == "to"  # "to train": meta.json without backbone.pt
    torch.save({}, entry.weights)
    assert state() == "cached"


def _claimant(results, spec, barrier, out):
    """One process asking for the stage; its training is slowed so the two overlap."""
    import bench.engine.pretrain as pretrain

    real, calls = pretrain.train_new, []

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(2.0)  # the other claimant arrives while this one trains
        return real(*args, **kwargs)

    pretrain.train_new = slow
    torch.set_num_threads(1)
    barrier.wait()
    path, meta = pretrain.get_backbone(spec, ExecOptions(results, "cpu", progress=False))
    out.put((meta["cached"], len(calls), meta["weights_sha256"], str(path)))


def test_two_claimants_of_one_stage_train_it_once(tmp_path):
    spec = stage_spec()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_claimant, args=(tmp_path, spec, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted((cached, calls) for cached, calls, *_ in got) == [(False, 1), (True, 0)]
    (sha,) = {g[2] for g in got}  # both read the one file the trainer wrote
    entry = STAGE.entry(tmp_path, spec.key)
    assert {g[3] for g in got} == {str(entry.weights)}
    meta = json.loads(entry.meta_path.read_text())
    assert meta["weights_sha256"] == sha and len(meta["history"]) == 1
    assert not (entry.folder / "claim").exists()  # released


def test_a_claim_is_released_when_training_fails(tmp_path, monkeypatch):
    import bench.engine.pretrain as pretrain

    spec = stage_spec()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pretrain, "train_new", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        pretrain.get_backbone(spec, ExecOptions(tmp_path, "cpu", progress=False))
    assert not (tmp_path / "pretrain").exists()  # claimed, failed: no folder left behind
