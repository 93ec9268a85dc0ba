"""The guarded torchvision import (bench.core.compat)."""

import builtins
import sys

import pytest

from bench.core import compat


def test_import_torchvision_gives_working_models():
    tv = compat.import_torchvision()
    net = tv.models.resnet18(weights=None)
    assert net.fc.in_features == 512


def test_missing_nms_error_is_recognised_and_others_are_not():
    assert compat._is_missing_nms(RuntimeError("operator torchvision::nms does not exist"))
    assert not compat._is_missing_nms(RuntimeError("CUDA error: out of memory"))


def test_unrelated_import_failure_propagates(monkeypatch):
    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("something else broke")
        return real_import(name, *args, **kwargs)

    saved = {k: v for k, v in sys.modules.items() if k.startswith("torchvision")}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)
    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(RuntimeError, match="something else broke"):
        compat.import_torchvision()


def test_patch_is_applied_once_and_kept_alive(monkeypatch):
    """After a missing-nms failure the schemas are defined and the library object kept."""
    real_import = builtins.__import__
    calls = {"n": 0}

    def flaky(name, *args, **kwargs):
        if name == "torchvision" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", flaky)
    tv = compat.import_torchvision()
    assert calls["n"] == 1
    assert tv.models.resnet34 is not None
    assert compat._missing_op_lib is not None
