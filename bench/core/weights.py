"""``pretrained:`` files: read them safely and say how they fit the model they initialise.

One function decides the fit (:func:`fit_report`), used by the pre-run check
(:func:`bench.experiment.preflight.check_checkpoint`), the loader (:func:`bench.core.models.load_pretrained`)
and the records (``result.json`` ``pretrained``, a teacher's ``meta.json``):

* the model's **head** is its classifier (``fc.*``); its **backbone** is every other
  parameter and buffer (BatchNorm's ``num_batches_tracked`` counters aside: a file saved
  without them still fits);
* a file **fits** when it fills every backbone tensor. One exception, named in the load
  line, never silent: the **stem** (the model's first conv weight) may have another shape
  in the file, as when a torchvision ResNet file (7x7 stem) initialises the harness's
  small-input ResNet (3x3 stem, 32 px and below) or a grayscale model: the stem stays as
  built, the rest loads;
* head tensors of another shape (another class count) are skipped, as expected.

A file that fits less (a ResNet-18 file for a ResNet-50 or a small_cnn) is refused with
the counts, before anything is trained.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import BenchError
from bench.core.keys import file_sha256

HEAD_PREFIX = "fc."
OPTIONAL_SUFFIX = "num_batches_tracked"
UNKNOWN_SHOWN = 8  # file tensors the model has no place for, named in the load line


@dataclass(frozen=True)
class Skipped:
    """A file tensor that was not loaded: its name in the file, its shape there and the
    model's (None: the model has no such tensor) and the part of the model it is."""

    name: str
    file_shape: tuple[int, ...] | None  # None: not a tensor
    model_shape: tuple[int, ...] | None
    part: str  # head, stem, backbone, or unknown (no such tensor in the model)

    def describe(self) -> str:
        if self.part == "head":
            return self.name
        if self.file_shape is None:
            return f"{self.name} (not a tensor)"
        if self.model_shape is None:
            return f"{self.name} (not in the model)"
        text = f"{self.name} {_shape(self.file_shape)} -> {_shape(self.model_shape)}"
        if self.part == "stem":
            fk, mk = self.file_shape[2:], self.model_shape[2:]
            return text + (f" ({_shape(mk)} stem)" if fk != mk else " (stem)")
        return text


@dataclass(frozen=True)
class LoadReport:
    """How one ``pretrained:`` file fits one model (:func:`fit_report`)."""

    file: str  # the path as the suite gives it
    sha256: str
    loaded: int  # file tensors loaded into the model
    total: int  # entries in the file
    skipped: tuple[Skipped, ...] = ()
    backbone: int = 0  # backbone tensors the file must fill
    filled: int = 0  # of those, how many it fills (a reshaped stem counts as filled)
    missing: tuple[str, ...] = ()  # backbone tensors it does not fill (in the file's naming)
    assign: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return not self.missing and self.loaded > 0

    @property
    def reason(self) -> str:
        """Why tensors were skipped, in words ('' when all loaded)."""
        parts = []
        if any(s.part == "head" for s in self.skipped):
            parts.append(_head_note(self.skipped))
        if any(s.part == "stem" for s in self.skipped):
            parts.append("stem of another shape")
        if any(s.part in ("unknown", "backbone") for s in self.skipped):
            parts.append("tensors the model does not take")
        return "; ".join(parts)

    def line(self) -> str:
        """``pretrained: r18.pt (sha256 1a2b3c4d..): 120/122 tensors, skipped fc.weight,
        fc.bias (head 1000 -> 5 classes)``."""
        text = f"pretrained: {self.file} (sha256 {self.sha256[:8]}..): "
        text += f"{self.loaded}/{self.total} tensors"
        rest = [s.describe() for s in self.skipped if s.part not in ("head", "unknown")]
        unknown = [s.describe() for s in self.skipped if s.part == "unknown"]
        if len(unknown) > UNKNOWN_SHOWN:  # a bigger model's file: the record names them all
            more = len(unknown) - UNKNOWN_SHOWN + 1
            unknown = unknown[: UNKNOWN_SHOWN - 1] + [f"{more} more not in the model"]
        rest += unknown
        head = [s.describe() for s in self.skipped if s.part == "head"]
        if head:
            head[-1] += f" ({_head_note(self.skipped)})"
        if rest or head:
            text += ", skipped " + ", ".join(rest + head)
        return text

    def refusal(self, arch: str) -> str:
        """Why the file is refused, with the counts (``fits`` is False)."""
        if self.loaded == 0:
            what = "no tensor matches the model's parameters"
        else:
            what = "fits less than the model's backbone"
        shown = ", ".join(self.missing[:3]) + (
            f" and {len(self.missing) - 3} more" if len(self.missing) > 3 else ""
        )
        return (
            f"{self.file}: {what}: fills {self.filled} of the {self.backbone} backbone tensors "
            f"of {arch} ({self.loaded} of the file's {self.total} tensors load"
            + (f"; missing {shown}" if shown else "")
            + "); a file for another architecture?"
        )

    def as_dict(self) -> dict[str, Any]:
        """What a record keeps: file, digest, counts, every skipped tensor, the line."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "loaded": self.loaded,
            "total": self.total,
            "skipped": [
                {
                    "name": s.name,
                    "file_shape": list(s.file_shape) if s.file_shape is not None else None,
                    "model_shape": list(s.model_shape) if s.model_shape is not None else None,
                    "part": s.part,
                }
                for s in self.skipped
            ],
            "reason": self.reason,
            "line": self.line(),
        }


def _head_note(skipped) -> str:
    weight = next((s for s in skipped if s.part == "head" and s.name.endswith("weight")), None)
    if weight and weight.file_shape and weight.model_shape:
        return f"head {weight.file_shape[0]} -> {weight.model_shape[0]} classes"
    return "head of another shape"


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def read_state(path: str) -> dict[str, Any]:
    """The state dict in a ``pretrained:`` file (``{"state_dict": ...}`` unwrapped),
    loaded with ``weights_only=True``; :class:`BenchError` naming the file when it is
    missing, needs code to load (a pickled object), or holds no state dict of tensors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise BenchError(
            f"{path}: not a weights file that loads with weights_only=True "
            f"({type(exc).__name__}: a pickle that needs code to load, or not a torch file)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BenchError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors")
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchError(f"{path}: holds no state dict of tensors")
    return state


def fit_report(
    own: Mapping[str, tuple[int, ...]],
    state: Mapping[str, Any],
    aliases: Mapping[str, str],
    file: str,
    sha256: str,
) -> LoadReport:
    """How ``state`` (a file's state dict) fits a model whose tensors have the shapes
    ``own`` (model names, in the model's order); ``aliases`` maps other namings (the
    torchvision one) to the model's. Pure: reads shapes only, loads nothing."""
    stem = next((n for n, s in own.items() if len(s) == 4 and not _is_head(n)), None)
    assign: dict[str, str] = {}
    skipped: list[Skipped] = []
    reshaped: set[str] = set()
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            skipped.append(Skipped(name, None, None, "unknown"))
            continue
        target = name if name in own else aliases.get(name)
        shape = tuple(tensor.shape)
        if target is None:
            skipped.append(Skipped(name, shape, None, "unknown"))
        elif tuple(own[target]) != shape:
            part = "head" if _is_head(target) else "stem" if target == stem else "backbone"
            skipped.append(Skipped(name, shape, tuple(own[target]), part))
            if part == "stem":
                reshaped.add(target)
        elif target not in assign.values():
            assign[name] = target
        else:
            skipped.append(Skipped(name, shape, tuple(own[target]), "unknown"))
    required = [n for n in own if not _is_head(n) and not n.endswith(OPTIONAL_SUFFIX)]
    filled = set(assign.values()) | reshaped
    missing = [n for n in required if n not in filled]
    if any(name not in own and name in aliases for name in state):  # say them as the file does
        inverse = {ours: theirs for theirs, ours in aliases.items() if theirs != ours}
        missing = [inverse.get(n, n) for n in missing]
    return LoadReport(
        file=file,
        sha256=sha256,
        loaded=len(assign),
        total=len(state),
        skipped=tuple(skipped),
        backbone=len(required),
        filled=len(required) - len(missing),
        missing=tuple(missing),
        assign=assign,
    )


def _is_head(name: str) -> bool:
    return name.startswith(HEAD_PREFIX)


def report_for(model: torch.nn.Module, path: str, state: Mapping[str, Any]) -> LoadReport:
    """:func:`fit_report` of ``state`` (read from ``path``) against ``model``."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return fit_report(own, state, torchvision_names(model), str(path), file_sha256(path))


def torchvision_names(model: torch.nn.Module) -> dict[str, str]:
    """Map torchvision ResNet names (``layer1.0.conv1.weight``) to ours (``backbone.4...``)."""
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    out = {}
    for name in model.state_dict():
        if name.startswith("backbone."):
            idx, _, rest = name[len("backbone.") :].partition(".")
            if idx.isdigit() and int(idx) < len(order):
                out[f"{order[int(idx)]}.{rest}".rstrip(".")] = name
        else:
            out[name] = name
    return out


def announce(who: str, report: LoadReport) -> None:
    """The one line a run or teacher prints of what it loaded (stderr: it reaches the
    terminal from worker processes too)."""
    print(f"{who} {report.line()}", file=sys.stderr, flush=True)
