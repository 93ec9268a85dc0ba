"""Run keys: stable across processes, independent of YAML key order, sensitive to content."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.core.config import ModelConfig, OptimConfig, TeacherConfig, load_suite, validate_suite
from bench.core.specs import PretrainSpec, RunSpec, TeacherSpec, legacy_key
from bench.core.store import RunStore
from bench.experiment.dryrun import describe_plan
from bench.experiment.plan import expand
from bench.launch.suite import run_suite
from tests.conftest import ROOT, tiny_suite, write_suite


def keys_of(path) -> list[str]:
    return [r.key for r in expand(load_suite(path))]


def test_key_independent_of_yaml_key_order(tmp_path):
    suite = tiny_suite()
    reordered = dict(reversed(list(suite.items())))
    reordered["teachers"] = dict(reversed(list(suite["teachers"].items())))
    a = write_suite(tmp_path / "a.yaml", suite)
    b = write_suite(tmp_path / "b.yaml", reordered)
    assert (tmp_path / "a.yaml").read_text() != (tmp_path / "b.yaml").read_text()
    assert keys_of(a) == keys_of(b)


def test_key_stable_across_processes(tmp_path):
    path = write_suite(tmp_path / "s.yaml", tiny_suite())
    code = (
        "import sys; from bench.core.config import load_suite; from bench.experiment.plan import expand; "
        "print(' '.join(r.key for r in expand(load_suite(sys.argv[1]))))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.split()
        for seed in (1, 2)
    ]
    assert runs[0] == runs[1] == keys_of(path)


def test_key_changes_with_what_changes_the_result(tmp_path):
    base = keys_of(write_suite(tmp_path / "a.yaml", tiny_suite()))
    lr = tiny_suite()
    lr["optim"]["lr"] = 0.001
    changed = keys_of(write_suite(tmp_path / "b.yaml", lr))
    assert len(base) == len(changed) == 4
    # only the trained row (Vanilla KD) depends on the student recipe
    assert sum(a != b for a, b in zip(base, changed)) == 1
    renamed = keys_of(write_suite(tmp_path / "c.yaml", tiny_suite(name="renamed")))
    assert renamed == base  # the suite name is display, not content


# ------------------------------------------------- keys without data locations


def image_suite(**dataset) -> dict:
    """The tiny suite on an image folder (names only: expand never opens the root)."""
    ds = {"name": "image_folder", "tasks": "halves", "root": "/data/a", "params": {}}
    ds.update(dataset)
    return tiny_suite(datasets=[ds])


def run_and_teacher_keys(suite: dict) -> list[str]:
    runs = expand(validate_suite(suite, "s"))
    return [r.key for r in runs] + [t.key for t in runs[0].spec.teacher_specs(2)]


def test_keys_ignore_where_the_data_lives():
    base = run_and_teacher_keys(image_suite(params={"image_size": 32}))
    for moved in (
        image_suite(root="/elsewhere/b", params={"image_size": 32}),
        image_suite(root=None, params={"image_size": 32, "archive": "/x/images.tar.gz"}),
        image_suite(params={"image_size": 32, "in_memory": False}),
        image_suite(params={"image_size": 32, "in_memory": True}),
    ):
        assert run_and_teacher_keys(moved) == base
    changed = run_and_teacher_keys(image_suite(params={"image_size": 28}))
    assert all(a != b for a, b in zip(base, changed))  # every run and teacher


def test_merge_part_locations_are_left_out_too():
    def merged(root_a: str, archive_b: str, size: int) -> dict:
        parts = [
            {"name": "image_folder", "root": root_a, "params": {"image_size": size}},
            {"name": "mnist", "params": {"archive": archive_b, "in_memory": True}},
        ]
        return tiny_suite(
            datasets=[{"name": "merge", "tasks": "natural", "params": {"parts": parts}}]
        )

    base = run_and_teacher_keys(merged("/a", "/m1.tar.gz", 28))
    assert run_and_teacher_keys(merged("/b", "/m2.tar.gz", 28)) == base
    assert run_and_teacher_keys(merged("/a", "/m1.tar.gz", 32))[0] != base[0]


def test_pretrain_stage_source_root_is_left_out():
    def staged(root: str, epochs: int) -> dict:
        stage = {
            "dataset": {"name": "image_folder", "root": root, "classes": [0, 1]},
            "arch": "small_cnn",
            "params": {"width": 8},
            "optim": {"epochs": epochs},
        }
        return image_suite(pretrain="s") | {"pretrain": {"s": stage}}

    base = expand(validate_suite(staged("/src/a", 1), "s"))
    moved = expand(validate_suite(staged("/src/b", 1), "s"))
    longer = expand(validate_suite(staged("/src/a", 2), "s"))
    assert base[0].spec.pretrain.key == moved[0].spec.pretrain.key
    assert [r.key for r in base] == [r.key for r in moved]
    assert base[0].spec.pretrain.key != longer[0].spec.pretrain.key
    assert base[-1].key != longer[-1].key


def test_legacy_key_is_the_key_of_earlier_versions():
    """Hard-coded: the keys the code before location-free keys (commit af7d7b5)
    computed for these specs, locations included."""
    ds = {
        "name": "image_folder",
        "root": "/data/old",
        "params": {"in_memory": True, "image_size": 32},
        "tasks": "halves",
        "val_fraction": 0.1,
        "split_seed": 0,
        "augment": {},
    }
    stage = PretrainSpec(
        dataset={
            "name": "cifar10",
            "root": None,
            "params": {"archive": "/a/c.tar.gz"},
            "classes": "all",
        },
        arch="small_cnn",
        params={"width": 8},
        optim=OptimConfig(epochs=2),
    )
    run = RunSpec(
        dataset=ds,
        teachers=TeacherConfig(arch="small_cnn", params={"width": 8}),
        student=ModelConfig(arch="small_cnn", params={"width": 8}),
        method="vanilla_kd",
        params={"T": 4.0},
        optim=OptimConfig(epochs=3),
        seed=1,
    )
    teacher = TeacherSpec(
        dataset=ds, task=1, arch="small_cnn", params={"width": 8}, optim=OptimConfig(epochs=2)
    )
    staged = run.model_copy(update={"pretrain": stage})
    assert [legacy_key(s) for s in (run, staged, teacher, stage)] == [
        "67c9c3011d1ce658",
        "2300621cb370909e",
        "0f378e5421238dfd",
        "be056618cbe191ca",
    ]
    assert run.key != legacy_key(run) and stage.key != legacy_key(stage)


def test_cfl_runs_of_earlier_versions_are_found_under_their_legacy_keys():
    """CFL's params changed shape (its own loss, no unused CKA params): the legacy key of a
    CFL run is still the one commit af7d7b5 gave it (hard-coded), defaults or not; the
    reference recipe did not exist then, so it has no legacy run to find."""
    from bench.experiment.migrate import legacy_run_key

    methods = [
        {"name": "cfl"},
        {"name": "cfl", "label": "CFL T4", "params": {"T": 4.0, "kernels": "mean"}},
        {"name": "cfl", "label": "CFL ref", "params": {"recipe": "reference"}},
    ]
    runs = expand(validate_suite(tiny_suite(methods=methods), "t"))
    assert [legacy_run_key(r) for r in runs[:2]] == ["508c57d0effed357", "fac3c19cd4e2abd8"]
    assert legacy_run_key(runs[2]) == legacy_key(runs[2].spec)  # no params rewrite


# ------------------------------------------------- migrating finished results


def file_under_legacy_keys(results: Path, runs) -> dict[str, str]:
    """Rename a finished layout to the legacy keys, with the records written as the
    code before location-free keys wrote them; return new key -> legacy key."""
    renamed = {}
    for run in runs:
        for t in run.spec.teacher_specs(2):
            renamed[t.key] = legacy_key(t)
        renamed[run.key] = legacy_key(run.spec)
    for t_new, t_old in renamed.items():
        folder = results / "teachers" / t_new
        if folder.is_dir():
            meta = json.loads((folder / "meta.json").read_text())
            (folder / "meta.json").write_text(json.dumps({**meta, "key": t_old}))
            folder.rename(results / "teachers" / t_old)
    for run in runs:
        folder = results / run.meta.suite / "runs" / run.key
        rec = json.loads((folder / "result.json").read_text())
        rec["run_key"] = renamed[run.key]
        for t in rec["teachers"]:
            t["key"] = renamed[t["key"]]
        (folder / "result.json").write_text(json.dumps(rec))
        folder.rename(folder.parent / renamed[run.key])
    return renamed


def test_finished_runs_and_teachers_migrate_once_without_retraining(tmp_path):
    suite = validate_suite(tiny_suite(methods=[{"name": "teacher"}, {"name": "ensemble"}]), "t")
    first = run_suite(suite, tmp_path, progress=False, mlflow=False, out=io.StringIO())
    runs = expand(suite)
    assert sorted(first.ran) == sorted(r.key for r in runs)
    before = {r.key: json.loads((first.suite_dir / "runs" / r.key / "result.json").read_text())
              for r in runs}  # fmt: skip
    weights = {p.parent.name: p.read_bytes() for p in tmp_path.glob("teachers/*/teacher.pt")}
    renamed = file_under_legacy_keys(tmp_path, runs)
    assert not any((tmp_path / "teachers" / k).exists() for k in weights)

    listing = describe_plan(runs, RunStore(first.suite_dir), tmp_path)
    assert "under legacy keys: 3 finished runs and 2 teachers" in listing

    out = io.StringIO()
    second = run_suite(suite, tmp_path, seeds=[0, 1], progress=False, mlflow=False, out=out)
    assert "migrated 3 finished runs and 2 teachers to location-free keys" in out.getvalue()
    assert sorted(second.skipped) == sorted(r.key for r in runs)  # found finished
    assert len(second.ran) == 3 and not second.failed  # the seed-1 runs
    for r in runs:
        rec = json.loads((first.suite_dir / "runs" / r.key / "result.json").read_text())
        assert rec["run_key"] == r.key and rec["legacy_key"] == renamed[r.key]
        assert rec["metrics"] == before[r.key]["metrics"]
        assert [t["key"] for t in rec["teachers"]] == [t["key"] for t in before[r.key]["teachers"]]
        assert not (first.suite_dir / "runs" / renamed[r.key]).exists()
    for key, blob in weights.items():  # the same files, under the new keys
        assert (tmp_path / "teachers" / key / "teacher.pt").read_bytes() == blob
        meta = json.loads((tmp_path / "teachers" / key / "meta.json").read_text())
        assert meta["key"] == key and meta["legacy_key"] == renamed[key]
    for key in second.ran:  # the new runs loaded the migrated teachers: none retrained
        rec = json.loads((second.suite_dir / "runs" / key / "result.json").read_text())
        assert [t["cached"] for t in rec["teachers"]] == [True, True]

    third = io.StringIO()  # once: nothing is left to migrate
    run_suite(suite, tmp_path, seeds=[0, 1], progress=False, mlflow=False, out=third)
    assert "migrated" not in third.getvalue()


def test_migration_retags_mlflow_runs_instead_of_logging_them_twice(tmp_path):
    """A results root tracked in MLflow under legacy keys: after the migration the FINISHED
    children are retagged with the new keys; nothing is backfilled as a second child."""
    from mlflow.tracking import MlflowClient

    from bench.tracking import resolve_tracking_uri

    suite = validate_suite(tiny_suite(methods=[{"name": "teacher"}, {"name": "ensemble"}]), "t")
    run_suite(suite, tmp_path, progress=False, out=io.StringIO())
    runs = expand(suite)
    renamed = file_under_legacy_keys(tmp_path, runs)
    c = MlflowClient(resolve_tracking_uri(tmp_path))
    (exp,) = [e for e in c.search_experiments() if e.name == suite.name]
    children = c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
    for r in children:  # what MLflow held when the keys still had the data location
        for tag in ("run_key", "teacher_key"):
            if tag in r.data.tags:
                c.set_tag(r.info.run_id, tag, renamed[r.data.tags[tag]])

    out = io.StringIO()
    run_suite(suite, tmp_path, progress=False, out=out)
    assert "retagged 3 MLflow run(s)" in out.getvalue()
    assert "logged" not in out.getvalue()  # no backfill
    after = c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
    run_keys = [r.data.tags["run_key"] for r in after if "run_key" in r.data.tags]
    assert sorted(run_keys) == sorted(r.key for r in runs)  # one child each, new keys
    assert {r.data.tags.get("legacy_key") for r in after if "run_key" in r.data.tags} == {
        renamed[r.key] for r in runs
    }
    teacher_runs = [r for r in after if r.data.tags.get("kind") == "teacher"]
    assert len(teacher_runs) == 2  # not logged again under the new teacher keys


def test_estimate_counts_runs_finished_under_legacy_keys_as_done(tmp_path):
    """`--dry-run --estimate` moves nothing, yet does not price runs that `bench run`
    would find finished after its migration."""
    from bench.experiment.estimate import estimate_suite

    suite = validate_suite(tiny_suite(methods=[{"name": "teacher"}, {"name": "ensemble"}]), "t")
    run_suite(suite, tmp_path, progress=False, mlflow=False, out=io.StringIO())
    renamed = file_under_legacy_keys(tmp_path, expand(suite))
    estimate = estimate_suite(suite, tmp_path)
    assert estimate.finished == 3 and estimate.items == []
    filed = {p.name for p in (tmp_path / suite.name / "runs").iterdir()}
    assert filed == set(renamed[r.key] for r in expand(suite))  # nothing moved
