"""Run keys: stable across processes, independent of YAML key order, sensitive to content."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.config import load_suite
from bench.plan import expand
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
        "import sys; from bench.config import load_suite; from bench.plan import expand; "
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
