"""``pretrained:`` files by content: keys hash the file's sha256 (never its path), every
file is fitted against the model it initialises before anything trains, and what it
loaded is printed and recorded (bench/core/weights.py)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.compat import import_torchvision
from bench.core.config import ModelConfig, OptimConfig, TeacherConfig, validate_suite
from bench.core.keys import content_key, file_sha256, without_locations
from bench.core.models import MODELS, build_model_reported
from bench.core.specs import RunSpec, TeacherSpec, path_key
from bench.experiment.plan import expand
from bench.launch.suite import run_suite
from tests.conftest import tiny_suite, write_suite


def small_cnn_file(path: Path, seed: int = 0, num_classes: int = 10) -> str:
    """A fresh small_cnn (digits: 1 channel, 8 px, width 8) state dict."""
    torch.manual_seed(seed)
    model = MODELS.get("small_cnn")(num_classes=num_classes, in_channels=1, image_size=8, width=8)
    torch.save(model.state_dict(), path)
    return str(path)


def resnet18_file(path: Path) -> str:
    torch.save(import_torchvision().models.resnet18(weights=None).state_dict(), path)
    return str(path)


def suite_with_files(folder: Path) -> dict:
    """The tiny suite, teacher rows and KD, teachers and student from files in ``folder``."""
    suite = tiny_suite(methods=[{"name": "teacher"}, {"name": "vanilla_kd"}])
    suite["teachers"]["pretrained"] = str(folder / "t.pt")
    suite["student"]["pretrained"] = str(folder / "s.pt")
    suite["teachers"]["optim"]["epochs"] = suite["optim"]["epochs"] = 1
    return suite


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results root where the suite has run once (2 teachers, 2 teacher rows, KD)."""
    root = tmp_path_factory.mktemp("finished")
    weights = root / "w"
    weights.mkdir()
    small_cnn_file(weights / "t.pt", seed=1)
    small_cnn_file(weights / "s.pt", seed=2)
    suite = suite_with_files(weights)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        outcome = run_suite(
            validate_suite(suite, "s"), root / "results", progress=False, mlflow=False,
            out=io.StringIO(),
        )  # fmt: skip
    assert len(outcome.ran) == 3 and not outcome.failed
    (root / "printed.txt").write_text(printed.getvalue())
    return root


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """The finished layout (weights and results) in this test's own folder."""
    shutil.copytree(finished, tmp_path / "c")
    return tmp_path / "c"


RUN_LINE = re.compile(r"^[0-9a-f]{16}  (done|to do|failed)\s+\S+\s+\d+  (.*)$", re.M)


def dry_run(suite: dict, root: Path, capsys) -> dict[str, str]:
    """``bench run --dry-run``: row -> state (done, to do)."""
    path = write_suite(root / "suite.yaml", suite)
    code = main(["run", str(path), "--results", str(root / "results"), "--dry-run", "--no-mlflow"])
    out = capsys.readouterr().out
    assert code == 0, out
    return {m[2]: m[1] for m in RUN_LINE.finditer(out)}


# ----------------------------------------------------------------------------- keys


def test_overwriting_a_file_makes_its_runs_pending(copy, capsys):
    suite = suite_with_files(copy / "w")
    assert dry_run(suite, copy, capsys) == {"Teacher 1": "done", "Teacher 2": "done",
                                            "Vanilla KD": "done"}  # fmt: skip
    small_cnn_file(copy / "w" / "s.pt", seed=3)  # the student's file: only KD used it
    assert dry_run(suite, copy, capsys) == {"Teacher 1": "done", "Teacher 2": "done",
                                            "Vanilla KD": "to do"}  # fmt: skip
    small_cnn_file(copy / "w" / "t.pt", seed=4)  # the teachers': every row used them
    assert set(dry_run(suite, copy, capsys).values()) == {"to do"}


def test_moving_a_file_keeps_its_runs_done(copy, capsys):
    moved = copy / "elsewhere"
    (copy / "w").rename(moved)
    states = dry_run(suite_with_files(moved), copy, capsys)
    assert states == {"Teacher 1": "done", "Teacher 2": "done", "Vanilla KD": "done"}
    path = write_suite(copy / "suite.yaml", suite_with_files(moved))
    main(["run", str(path), "--results", str(copy / "results"), "--dry-run", "--no-mlflow"])
    out = capsys.readouterr().out
    assert "teachers needed (2):" in out and "to train" not in out


def test_keys_hash_the_digest_never_the_path(tmp_path):
    a = small_cnn_file(tmp_path / "a.pt")
    b = tmp_path / "sub" / "b.pt"
    b.parent.mkdir()
    shutil.copy(a, b)
    t = TeacherSpec(dataset={"name": "digits"}, task=0, arch="small_cnn", pretrained=a,
                    optim=OptimConfig())  # fmt: skip
    assert t.key == t.model_copy(update={"pretrained": str(b)}).key
    dump = {
        **t.model_dump(mode="json", exclude={"pretrain"}),
        "pretrained": f"sha256:{file_sha256(a)}",
    }
    assert t.key == content_key(without_locations(dump))
    assert t.key != path_key(t)  # what the key was before, with the path


def test_keys_without_files_are_unchanged():
    """Hard-coded: the keys the code before weights-by-content keys (df15e50) gave these
    specs; with paths, :func:`path_key` is that code's key."""
    ds = {
        "name": "image_folder",
        "root": "/data/old",
        "params": {"in_memory": True, "image_size": 32},
        "tasks": "halves",
        "val_fraction": 0.1,
        "split_seed": 0,
        "augment": {},
    }
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
    assert [run.key, teacher.key] == ["70cc606c08696c66", "8f90796285a95475"]
    with_paths = run.model_copy(
        update={
            "student": ModelConfig(arch="small_cnn", pretrained="/w/s.pt", params={"width": 8}),
            "teachers": TeacherConfig(
                arch="small_cnn", pretrained=["/w/t1.pt", None], params={"width": 8}
            ),
        }
    )
    assert path_key(with_paths) == "7b65e8c419c266ee"
    assert path_key(teacher.model_copy(update={"pretrained": "/w/t1.pt"})) == "0da610e12ceea3eb"


def test_each_file_is_hashed_once_per_size_and_mtime(tmp_path, monkeypatch):
    path = small_cnn_file(tmp_path / "a.pt")
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    first = file_sha256(path)
    assert file_sha256(path) == first and len(calls) == 1
    small_cnn_file(tmp_path / "a.pt", seed=5)
    os.utime(path, ns=(1, 1))  # another mtime even on a coarse clock
    assert file_sha256(path) != first and len(calls) == 2


# ------------------------------------------------------------------ checks before runs


def _cli(tmp_path: Path, suite: dict) -> int:
    path = write_suite(tmp_path / "bad.yaml", suite)
    code = main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run", "--no-mlflow"])
    return code


def test_a_resnet18_file_for_a_small_cnn_student_is_refused(tmp_path, capsys):
    path = resnet18_file(tmp_path / "r18.pt")
    suite = tiny_suite()
    suite["student"]["pretrained"] = path
    assert _cli(tmp_path, suite) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {tmp_path / 'bad.yaml'}: student.pretrained: {path}: no tensor matches the "
        "model's parameters: fills 0 of the 30 backbone tensors of small_cnn (0 of the file's "
        "122 tensors load; missing backbone.0.0.weight, backbone.0.1.weight, "
        "backbone.0.1.bias and 27 more); a file for another architecture?"
    )
    assert not (tmp_path / "r").exists()


def test_a_resnet18_file_for_bigger_resnets_is_refused(tmp_path, capsys):
    path = resnet18_file(tmp_path / "r18.pt")
    for arch, counts in [("resnet50", "fills 77 of the 265"), ("resnet34", "fills 100 of the 180")]:
        suite = tiny_suite()
        suite["teachers"] = {**suite["teachers"], "arch": arch, "params": {}, "pretrained": path}
        assert _cli(tmp_path, suite) == 2
        err = capsys.readouterr().err
        assert f"teachers.pretrained: {path}: fits less than the model's backbone: {counts} " in err
        assert f"backbone tensors of {arch}" in err


class NeedsCode:
    """An object weights_only=True refuses to unpickle."""

    def __init__(self) -> None:
        self.w = torch.zeros(2)


@pytest.mark.parametrize(
    "obj, said",
    [
        (torch.zeros(3), "holds a Tensor, not a state_dict of tensors"),
        ([torch.zeros(3)], "holds a list, not a state_dict of tensors"),
        (NeedsCode(), "not a weights file that loads with weights_only=True"),
    ],
    ids=["tensor", "list", "needs-code"],
)
def test_a_file_that_is_no_state_dict_is_one_line_exit_2(tmp_path, capsys, obj, said):
    torch.save(obj, tmp_path / "w.pt")
    suite = tiny_suite()
    suite["teachers"]["pretrained"] = [str(tmp_path / "w.pt"), None]
    assert _cli(tmp_path, suite) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'bad.yaml'}: teachers.pretrained.0: ")
    assert f"{tmp_path / 'w.pt'}: {said}" in err and "\n" not in err


# ------------------------------------------------------------- what loaded, said and kept


def test_load_lines_of_a_torchvision_resnet18_file(tmp_path):
    path = resnet18_file(tmp_path / "resnet18.pth")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    _, at224 = build_model_reported("resnet18", 5, 3, 224, pretrained=path)
    assert at224.line() == (
        f"pretrained: {path} (sha256 {digest[:8]}..): 120/122 tensors, "
        "skipped fc.weight, fc.bias (head 1000 -> 5 classes)"
    )
    model, at32 = build_model_reported("resnet18", 5, 3, 32, pretrained=path)
    assert at32.line() == (
        f"pretrained: {path} (sha256 {digest[:8]}..): 119/122 tensors, "
        "skipped conv1.weight 64x3x7x7 -> 64x3x3x3 (3x3 stem), fc.weight, fc.bias "
        "(head 1000 -> 5 classes)"
    )
    assert at32.reason == "head 1000 -> 5 classes; stem of another shape"
    record = at32.as_dict()
    assert record["sha256"] == digest and (record["loaded"], record["total"]) == (119, 122)
    assert record["skipped"][0] == {"name": "conv1.weight", "file_shape": [64, 3, 7, 7],
                                    "model_shape": [64, 3, 3, 3], "part": "stem"}  # fmt: skip
    reference = torch.load(path, weights_only=True)
    assert torch.equal(model.backbone[4][0].conv1.weight, reference["layer1.0.conv1.weight"])


def test_runs_and_teachers_print_and_record_what_they_loaded(finished):
    results = finished / "results"
    printed = (finished / "printed.txt").read_text().splitlines()
    lines = [line for line in printed if " pretrained: " in line]
    assert [line.split(" pretrained: ")[0] for line in lines] == [
        "teacher T1 (small_cnn)",
        "teacher T2 (small_cnn)",
        "student (Vanilla KD | digits | seed 0)",
    ]
    t_digest = file_sha256(finished / "w" / "t.pt")
    s_digest = file_sha256(finished / "w" / "s.pt")
    records = [json.loads(p.read_text()) for p in results.glob("tiny/runs/*/result.json")]
    (kd,) = [r for r in records if r["method"] == "vanilla_kd"]
    assert kd["pretrained"]["sha256"] == s_digest
    assert kd["pretrained"]["line"] == (
        f"pretrained: {finished / 'w' / 's.pt'} (sha256 {s_digest[:8]}..): 38/38 tensors"
    )
    assert lines[2] == f"student (Vanilla KD | digits | seed 0) {kd['pretrained']['line']}"
    for rec in records:
        for t in rec["teachers"]:
            weights = results / "teachers" / t["key"] / "teacher.pt"
            assert t["weights_sha256"] == file_sha256(weights)
            assert t["pretrained_sha256"] == t_digest
            meta = json.loads((weights.parent / "meta.json").read_text())
            assert meta["pretrained"]["sha256"] == t_digest
            assert meta["pretrained"]["line"].endswith(
                "36/38 tensors, skipped fc.weight, fc.bias (head 10 -> 5 classes)"
            )


# ------------------------------------------------------------------------- migration


def test_results_under_path_keys_migrate_once_without_retraining(copy, capsys):
    """Filed as the code before weights-by-content keys filed them: the key of the spec
    with the files' paths (computed here as that code did), the records naming it."""
    suite = validate_suite(suite_with_files(copy / "w"), "s")
    runs = expand(suite)
    results = copy / "results"

    def old_key(spec) -> str:
        exclude = {k for k in ("pretrain", "tuned") if getattr(spec, k, "") is None}
        return content_key(without_locations(spec.model_dump(mode="json", exclude=exclude)))

    renamed = {t.key: old_key(t) for r in runs for t in r.spec.teacher_specs(2)}
    renamed |= {r.key: old_key(r.spec) for r in runs}
    assert all(new != old for new, old in renamed.items())
    weights = {}
    for new, old in renamed.items():
        folder = results / "teachers" / new
        if folder.is_dir():
            weights[new] = (folder / "teacher.pt").read_bytes()
            meta = json.loads((folder / "meta.json").read_text())
            (folder / "meta.json").write_text(json.dumps({**meta, "key": old}))
            folder.rename(folder.parent / old)
    for run in runs:
        folder = results / "tiny" / "runs" / run.key
        rec = json.loads((folder / "result.json").read_text())
        rec["run_key"] = renamed[run.key]
        for t in rec["teachers"]:
            t["key"] = renamed[t["key"]]
        (folder / "result.json").write_text(json.dumps(rec))
        folder.rename(folder.parent / renamed[run.key])
    assert len(weights) == 2
    assert set(dry_run(suite_with_files(copy / "w"), copy, capsys).values()) == {"to do"}

    out = io.StringIO()
    second = run_suite(suite, results, progress=False, mlflow=False, out=out)
    assert "migrated 3 finished runs and 2 teachers" in out.getvalue()
    assert sorted(second.skipped) == sorted(r.key for r in runs) and not second.ran
    for run in runs:
        rec = json.loads((results / "tiny" / "runs" / run.key / "result.json").read_text())
        assert rec["run_key"] == run.key and rec["legacy_key"] == renamed[run.key]
        assert {t["key"] for t in rec["teachers"]} <= set(weights)
    for key, blob in weights.items():  # the same files, not retrained
        assert (results / "teachers" / key / "teacher.pt").read_bytes() == blob
    third = io.StringIO()
    run_suite(suite, results, progress=False, mlflow=False, out=third)
    assert "migrated" not in third.getvalue()
    assert set(dry_run(suite_with_files(copy / "w"), copy, capsys).values()) == {"done"}
