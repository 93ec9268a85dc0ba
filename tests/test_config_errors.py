"""Bad suites and overrides: exit code 2, one line naming the key (and file), nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.conftest import tiny_suite, write_suite


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _mutate(**changes) -> dict:
    suite = tiny_suite()
    for dotted, value in changes.items():
        node = suite
        parts = dotted.split("__")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return suite


BAD_SUITES = [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"optim__epochs": 0}, "optim.epochs: Input should be greater than 0"),
    ({"optim__lr": -0.1}, "optim.lr: Input should be greater than 0"),
    ({"optim__epochs": "many"}, "optim.epochs: Input should be a valid integer"),
    ({"teachers__optim__lr": 0}, "teachers.optim.lr: Input should be greater than 0"),
    ({"datasets__0__name": "imagenet"}, "datasets.0.name: unknown dataset 'imagenet'"),
    ({"student__arch": "vgg99"}, "student.arch: unknown model 'vgg99'"),
    ({"teachers__arch": "nope"}, "teachers.arch: unknown model 'nope'"),
    ({"methods__2__name": "magic"}, "methods.2.name: unknown method 'magic'"),
    ({"methods__2__params": {"T": -1}}, "methods.2.params.T: Input should be greater than 0"),
    ({"methods__2__params": {"temperature": 2}}, "methods.2.params.temperature: unknown key"),
    ({"datasets__0__val_fraction": 1.5}, "datasets.0.val_fraction: Input should be less than 1"),
    ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ({"seeds": []}, "seeds: List should have at least 1 item"),
    ({"methods": []}, "methods: List should have at least 1 item"),
    ({"teachers__pretrained": "/no/such/weights.pt"}, "teachers.pretrained: /no/such/weights.pt"),
]


@pytest.mark.parametrize(("changes", "expected"), BAD_SUITES, ids=[e for _, e in BAD_SUITES])
def test_bad_suite_exits_2_with_one_line(tmp_path, capsys, changes, expected):
    path = write_suite(tmp_path / "bad.yaml", _mutate(**changes))
    results = tmp_path / "results"
    code, err = _run(["run", str(path), "--results", str(results)], capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert expected in err
    assert "\n" not in err  # one line, no traceback
    assert not results.exists()  # nothing written


def test_missing_teacher_arch_names_key_and_file(tmp_path, capsys):
    suite = tiny_suite()
    del suite["teachers"]["arch"]
    path = write_suite(tmp_path / "noarch.yaml", suite)
    code, err = _run(["run", str(path), "--results", str(tmp_path / "r")], capsys)
    assert code == 2
    assert err == f"error: {path}: teachers.arch: required key is missing"


def test_missing_file(tmp_path, capsys):
    code, err = _run(["run", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2
    assert err == f"error: {tmp_path / 'absent.yaml'}: no such file"


def test_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmethods: [unclosed\n")
    code, err = _run(["run", str(path)], capsys)
    assert code == 2
    assert str(path) in err and "invalid YAML" in err


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("optim.epochs=-3", "optim.epochs: Input should be greater than 0 (got -3)"),
        ("optim.lr=abc", "optim.lr: Input should be a valid number"),
        ("methods.9.name=x", "--set methods.9.name: '9' is not an index of a list of 3"),
        ("noequals", "--set 'noequals': expected key=value"),
        ("datasets.0.tasks=thirds", "datasets.0.tasks"),
    ],
)
def test_bad_override(tmp_path, capsys, suite_file, assignment, expected):
    results = tmp_path / "results"
    code, err = _run(
        ["run", str(suite_file), "--set", assignment, "--results", str(results)], capsys
    )
    assert code == 2
    assert expected in err
    assert not results.exists()


def test_good_override_changes_the_plan(suite_file, capsys, tmp_path):
    base = main(["run", str(suite_file), "--dry-run", "--results", str(tmp_path)])
    out1 = capsys.readouterr().out
    main(
        ["run", str(suite_file), "--dry-run", "--set", "optim.epochs=3", "--results", str(tmp_path)]
    )
    out2 = capsys.readouterr().out
    assert base == 0

    def keys(out):
        rows = [ln.split() for ln in out.splitlines() if "  to do  " in ln]
        return {r[0]: r[-1] for r in rows if len(r[0]) == 16}

    k1, k2 = keys(out1), keys(out2)
    # the student recipe moves the trained rows' keys, not the rows that train nothing
    assert [r for k, r in k1.items() if k not in k2] == ["KD"]
    assert len(k1) == len(k2) == 4


def test_cuda_without_gpu_is_a_clear_error(suite_file, capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, err = _run(
        ["run", str(suite_file), "--device", "cuda", "--results", str(tmp_path / "r")], capsys
    )
    assert code == 2
    assert "no CUDA device is available" in err
    assert not (tmp_path / "r").exists()


def test_dry_run_writes_nothing(suite_file, capsys, tmp_path):
    results = tmp_path / "results"
    assert main(["run", str(suite_file), "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 0 done, 4 to do" in out  # Teacher 1, Teacher 2, Ensemble, Vanilla KD
    assert "teachers needed (2)" in out
    assert not results.exists()
    assert Path(suite_file).exists()
