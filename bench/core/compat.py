"""The one place torchvision is imported.

torchvision 0.28.0 from PyPI, beside the local CPU build of torch 2.13.0, fails at import
with ``operator torchvision::nms does not exist``: its C extension is missing the ops its
Python side registers fake kernels for. Defining the two op schemas first lets the import
finish; the ops themselves are never called here (no detection code). Only that exact
failure is patched; anything else propagates.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_NMS_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_missing_op_lib: torch.library.Library | None = None  # kept alive: dropping it unregisters


def _is_missing_nms(exc: BaseException) -> bool:
    return "torchvision::nms" in str(exc) and "does not exist" in str(exc)


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def define_missing_ops() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` schemas (idempotent)."""
    global _missing_op_lib
    if _missing_op_lib is None:
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _NMS_SCHEMAS:
            lib.define(schema)
        _missing_op_lib = lib


def import_torchvision() -> ModuleType:
    """Import and return torchvision, patching the missing-nms-op failure if it occurs."""
    try:
        import torchvision
    except RuntimeError as exc:
        if not _is_missing_nms(exc):
            raise
        _forget_torchvision()
        define_missing_ops()
        import torchvision
    return torchvision
