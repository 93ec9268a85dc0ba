"""A corpus of bad inputs (suite and tune files, their bytes, data roots and archives,
checkpoints, names, results and tracking stores), each run through the CLI's ``main()``:
exit code 2, one line naming the key, value or file, no traceback, nothing written.

Every check happens before the first run (``--dry-run`` and the real run alike)."""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from bench.cli import main
from tests.conftest import tiny_suite, write_suite
from tests.test_tune import tune_dict, write_tune

Case = Callable[[Path], tuple[list[str], str]]


def _suite(tmp: Path, file: str = "bad", **changes) -> Path:
    """tiny_suite with dotted ``a__b__0__c`` keys replaced."""
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
    return write_suite(tmp / f"{file}.yaml", suite)


def _raw(tmp: Path, data: bytes, name: str = "raw.yaml") -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _run(path: Path, *extra: str) -> list[str]:
    return ["run", str(path), *extra]


def _cifar(tmp: Path, **params) -> Path:
    return _suite(tmp, datasets=[{"name": "cifar10", "params": params}])


def _cifar_root(tmp: Path, root: Path) -> Path:
    return _suite(tmp, datasets=[{"name": "cifar10", "root": str(root)}])


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            src = path.parent / "member"
            src.write_bytes(data)
            tar.add(src, arcname=name)
    return path


def _bomb(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return ("\n".join(lines) + "\nname: bomb\n").encode()


def _nested(depth: int) -> bytes:
    return ("name: deep\nseeds: " + "[" * depth + "0" + "]" * depth + "\n").encode()


def _weights(tmp: Path, obj, name: str = "w.pt") -> str:
    torch.save(obj, tmp / name)
    return str(tmp / name)


# ----------------------------------------------------------------------------- corpus
# (id, builder -> (argv, expected text of the one-line error))

CASES: list[tuple[str, Case]] = [
    # --- bytes of the suite file
    ("binary", lambda t: (_run(_raw(t, b"\x00\x01\x02garbage\xff")), "binary file (NUL bytes)")),
    ("latin1", lambda t: (_run(_raw(t, "name: caf\xe9\n".encode("latin1"))), "not UTF-8 text")),
    ("utf16", lambda t: (_run(_raw(t, "name: x\n".encode("utf-16"))), "binary file")),
    ("empty", lambda t: (_run(_raw(t, b"")), "empty file")),
    ("whitespace", lambda t: (_run(_raw(t, b"  \n\n\t\n")), "empty file")),
    ("comments-only", lambda t: (_run(_raw(t, b"# nothing\n# here\n")), "empty file")),
    ("huge", lambda t: (_run(_raw(t, b"# " + b"x" * (5 << 20) + b"\n")), "over the 4 MiB limit")),
    ("nested-100", lambda t: (_run(_raw(t, _nested(100))), "nested too deeply")),
    ("nested-3000", lambda t: (_run(_raw(t, _nested(3000))), "nested too deeply")),
    ("billion-laughs", lambda t: (_run(_raw(t, _bomb())), "expands to over 100000 nodes")),
    ("recursive-alias", lambda t: (_run(_raw(t, b"name: x\nseeds: &s [1, *s]\n")), "itself")),
    ("top-level-list", lambda t: (_run(_raw(t, b"- a\n- b\n")), "expected a mapping")),
    ("top-level-scalar", lambda t: (_run(_raw(t, b"just words\n")), "expected a mapping")),
    ("unclosed-bracket", lambda t: (_run(_raw(t, b"name: [x\n")), "invalid YAML")),
    ("bad-indent", lambda t: (_run(_raw(t, b"a:\n  b: 1\n c: 2\n")), "line 3 invalid YAML")),
    # --- bytes of a tune file
    ("tune-binary", lambda t: (["tune", str(_raw(t, b"\xff\xfe\x00z"))], "binary file")),
    ("tune-bomb", lambda t: (["tune", str(_raw(t, _bomb()))], "expands to over")),
    ("tune-empty", lambda t: (["tune", str(_raw(t, b""))], "empty file")),
    # --- typed dataset params
    (
        "cifar-param-typo",
        lambda t: (_run(_cifar(t, image_sizee=16)), "datasets.0.params.image_sizee: unknown key"),
    ),
    (
        "cifar-param-type",
        lambda t: (_run(_cifar(t, image_size="16")), "datasets.0.params.image_size: Input should"),
    ),
    (
        "digits-param-unknown",
        lambda t: (
            _run(_suite(t, datasets__0__params={"image_size": 16})),
            "datasets.0.params.image_size: unknown key",
        ),
    ),
    (
        "digits-param-type",
        lambda t: (
            _run(_suite(t, datasets__0__params={"test_fraction": "a fifth"})),
            "datasets.0.params.test_fraction: Input should be a valid number",
        ),
    ),
    (
        "set-param-typo",
        lambda t: (
            _run(_cifar(t), "--set", "datasets.0.params.image_sizee=16"),
            "datasets.0.params.image_sizee: unknown key",
        ),
    ),
    (
        "merge-part-typo",
        lambda t: (
            _run(
                _suite(
                    t,
                    datasets=[
                        {
                            "name": "merge",
                            "tasks": "natural",
                            "params": {
                                "parts": [
                                    {"name": "digits"},
                                    {"name": "digits", "params": {"split_sed": 1}},
                                ]
                            },
                        }
                    ],
                )
            ),
            "datasets.0.params.parts.1.params.split_sed: unknown key",
        ),
    ),
    (
        "merge-part-unknown",
        lambda t: (
            _run(
                _suite(
                    t,
                    datasets=[
                        {
                            "name": "merge",
                            "tasks": "natural",
                            "params": {"parts": [{"name": "digits"}, {"name": "imagenet"}]},
                        }
                    ],
                )
            ),
            "datasets.0.params.parts.1.name: unknown dataset 'imagenet'",
        ),
    ),
    # --- data roots and archives (listed, never decoded or unpacked)
    (
        "root-missing",
        lambda t: (_run(_cifar_root(t, t / "nowhere")), "datasets.0.root: cifar10: "),
    ),
    (
        "root-empty-dir",
        lambda t: (_run(_cifar_root(t, _mkdir(t / "empty"))), "is not a CIFAR-10 root"),
    ),
    (
        "root-is-a-file",
        lambda t: (_run(_cifar_root(t, _raw(t, b"x", "file.txt"))), "is not a CIFAR-10 root"),
    ),
    (
        "root-train-only",
        lambda t: (_run(_cifar_root(t, _mkdir(t / "c" / "train" / "cat"))), "expected train/"),
    ),
    (
        "batches-incomplete",
        lambda t: (
            _run(_cifar_root(t, _batches(t, ["data_batch_1", "batches.meta"]))),
            "lacks data_batch_2",
        ),
    ),
    (
        "archive-missing",
        lambda t: (
            _run(_cifar(t, archive=str(t / "none.tar.gz"))),
            "datasets.0.params.archive: cifar10: archive",
        ),
    ),
    (
        "archive-not-tar",
        lambda t: (
            _run(_cifar(t, archive=str(_raw(t, b"\x1f\x8bnot really", "x.tar.gz")))),
            "is not a readable tar archive",
        ),
    ),
    (
        "archive-wrong-layout",
        lambda t: (
            _run(_cifar(t, archive=str(_tar(t / "a.tar.gz", {"c/readme.txt": b"hi"})))),
            "does not hold the expected layout",
        ),
    ),
    (
        "root-and-archive",
        lambda t: (
            _run(
                _suite(
                    t,
                    datasets=[
                        {"name": "cifar10", "root": str(t), "params": {"archive": str(t / "a")}}
                    ],
                )
            ),
            "set either `root:` or `params.archive`",
        ),
    ),
    (
        "cub-layout",
        lambda t: (
            _run(_suite(t, datasets=[{"name": "cub200", "root": str(_mkdir(t / "cub"))}])),
            "is not a CUB-200-2011 root",
        ),
    ),
    # --- typed model params and checkpoints
    (
        "student-param-typo",
        lambda t: (
            _run(_suite(t, student__params={"widht": 8})),
            "student.params.widht: unknown key",
        ),
    ),
    (
        "teacher-param-type",
        lambda t: (
            _run(_suite(t, teachers__params={"width": "wide"})),
            "teachers.params.width: Input should be a valid integer",
        ),
    ),
    (
        "harness-arg-as-param",
        lambda t: (
            _run(_suite(t, student__params={"num_classes": 5})),
            "student.params.num_classes: unknown key",
        ),
    ),
    (
        "method-student-param",
        lambda t: (
            _run(_suite(t, methods__2__student={"arch": "small_cnn", "params": {"depth": 3}})),
            "methods.2.student.params.depth: unknown key",
        ),
    ),
    (
        "pretrained-not-torch",
        lambda t: (
            _run(_suite(t, student__pretrained=str(_raw(t, b"garbage", "w.pt")))),
            "student.pretrained: ",
        ),
    ),
    (
        "pretrained-no-tensors",
        lambda t: (
            _run(_suite(t, teachers__pretrained=_weights(t, [1, 2, 3]))),
            "teachers.pretrained: ",
        ),
    ),
    (
        "pretrained-pickled-object",
        lambda t: (
            _run(_suite(t, student__pretrained=_pickled_object(t))),
            "student.pretrained: ",
        ),
    ),
    (
        "params-from-binary",
        lambda t: (
            _run(_suite(t, methods__2__params_from=str(_raw(t, b"\x00\x01", "best.yaml")))),
            "methods.2.params_from: ",
        ),
    ),
    # --- names that would leave the results directory
    (
        "name-dotdot",
        lambda t: (_run(_suite(t, name="../../x")), "name: Value error, not a safe name"),
    ),
    ("name-parent", lambda t: (_run(_suite(t, name="..")), "not a safe name")),
    ("name-abs", lambda t: (_run(_suite(t, name="/tmp/x")), "not a safe name")),
    ("name-newline", lambda t: (_run(_suite(t, name="a\nb")), "not a safe name")),
    ("dataset-id-slash", lambda t: (_run(_suite(t, datasets__0__id="a/../../b")), "datasets.0.id")),
    (
        "tune-name",
        lambda t: (["tune", str(write_tune(t / "t.yaml", tune_dict("../../up")))], "name: "),
    ),
    (
        "tune-study",
        lambda t: (
            ["tune", str(write_tune(t / "t.yaml", tune_dict())), "--study", "../../x"],
            "--study: not a safe name for a folder under the results directory",
        ),
    ),
    (
        "tune-dataset-param",
        lambda t: (
            [
                "tune",
                str(write_tune(t / "t.yaml", tune_dict())),
                "--set",
                "base.dataset.params.image_size=8",
            ],
            "base.dataset.params.image_size: unknown key",
        ),
    ),
    # --- results directory and tracking store
    (
        "results-is-file",
        lambda t: (_run(_suite(t), "--results", str(_raw(t, b"x", "res"))), "is a file"),
    ),
    (
        "tracking-server-down",
        lambda t: (
            _run(_suite(t), "--tracking-uri", "http://127.0.0.1:9"),
            "tracking: http://127.0.0.1:9: server not reachable",
        ),
    ),
    (
        "tracking-db-garbage",
        lambda t: (
            _run(_suite(t), "--tracking-uri", f"sqlite:///{_raw(t, b'not sqlite' * 100, 'm.db')}"),
            "not a usable SQLite database",
        ),
    ),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _batches(tmp: Path, names: list[str]) -> Path:
    folder = _mkdir(tmp / "cifar" / "cifar-10-batches-py")
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder.parent


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _pickled_object(tmp: Path) -> str:
    (tmp / "evil.pt").write_bytes(pickle.dumps({"w": Boom()}))
    return str(tmp / "evil.pt")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[i for i, _ in CASES])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch, case, dry):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    argv, expected = case(tmp_path)
    if "--results" not in argv:
        argv += ["--results", str(results)]
    if dry:
        argv.append("--dry-run")
    else:
        argv.append("--no-progress")
    before = _tree(tmp_path)
    code = main(argv)
    out = capsys.readouterr()
    err = out.err.strip()
    assert code == 2, (code, err, out.out[-500:])
    assert err.startswith("error: ") and "\n" not in err, err  # one line, no traceback
    assert "Traceback" not in out.err + out.out
    assert expected in err, err
    assert not results.exists()
    assert _tree(tmp_path) == before  # nothing written anywhere (no results, no db)


def test_corpus_has_at_least_40_distinct_inputs():
    assert len({i for i, _ in CASES}) == len(CASES) >= 40


def test_read_only_results_dir_is_refused_before_anything(tmp_path, capsys, monkeypatch):
    results = _mkdir(tmp_path / "ro")
    results.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: let os.access answer as for a user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and Path(p) != results)
    try:
        code = main(_run(_suite(tmp_path), "--results", str(results), "--no-mlflow"))
    finally:
        results.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"error: {tmp_path / 'bad.yaml'}: --results: {results} is not writable"
    assert list(results.iterdir()) == []


def test_pickle_in_pretrained_never_runs(tmp_path, capsys, monkeypatch):
    """weights_only=True: a pickled callable in a checkpoint is refused, not executed."""
    suite = _suite(tmp_path, student__pretrained=_pickled_object(tmp_path))
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    code = main(_run(suite, "--dry-run"))
    assert code == 2 and calls == []
    assert "not a weights file" in capsys.readouterr().err


def test_yaml_limits_keep_ordinary_suites(tmp_path):
    """The limits refuse bombs, not real files: every shipped suite still reads."""
    from bench.core.config import read_yaml
    from tests.conftest import ROOT

    for path in sorted((ROOT / "suites").glob("*.yaml")):
        assert isinstance(read_yaml(path), dict)
    ok = tmp_path / "anchors.yaml"
    ok.write_text("o: &o {epochs: 2}\na: *o\nb: *o\n")
    assert read_yaml(ok) == {"o": {"epochs": 2}, "a": {"epochs": 2}, "b": {"epochs": 2}}
    assert yaml.safe_load(ok.read_text()) == read_yaml(ok)
