"""Shared fixtures: tiny suites on the embedded digits dataset, sized for seconds on CPU."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
import yaml

from bench.data.datasets import LabelledImages

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))


def tiny_suite(name: str = "tiny", methods=None, **overrides) -> dict:
    """A suite dict: digits, two teachers, 2 + 2 epochs; ``overrides`` replace top keys."""
    suite = {
        "name": name,
        "seeds": [0],
        "device": "cpu",
        "datasets": [{"name": "digits", "tasks": "halves", "val_fraction": 0.1}],
        "teachers": {
            "arch": "small_cnn",
            "params": {"width": 8},
            "optim": {"epochs": 2, "batch_size": 64, "lr": 0.003},
        },
        "student": {"arch": "small_cnn", "params": {"width": 8}},
        "optim": {"epochs": 2, "batch_size": 64, "lr": 0.003},
        "methods": methods or [{"name": "teacher"}, {"name": "ensemble"}, {"name": "vanilla_kd"}],
    }
    suite.update(overrides)
    return suite


def write_suite(path: Path, suite: dict) -> Path:
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "tiny.yaml", tiny_suite())


# ------------------------------------------------------------------ no test-split access


class SealedSplit(LabelledImages):
    """A test split that fails the test run the moment anything reads it."""

    def _read(self, *_):
        raise AssertionError("the test split was read during tuning")

    labels = property(_read)
    __len__ = __getitem__ = subset = _read


@pytest.fixture
def sealed_digits():
    from bench.data.datasets import DATASETS
    from bench.data.datasets.digits import Digits
    from bench.data.prepare import _load_source_cached

    class SealedDigits(Digits, name="digits_sealed_test"):
        def load(self, root, p):
            source = super().load(root, p)
            source.test = SealedSplit()
            return source

    yield "digits_sealed_test"
    DATASETS._items.pop("digits_sealed_test", None)
    _load_source_cached.cache_clear()


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (top-level or lazy, absolute), with each imported name
    as ``module.name`` too (so a submodule imported by name counts)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names
