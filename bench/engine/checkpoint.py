"""Per-epoch student checkpoints, so a long run restarts from its last saved epoch.

A checkpoint (``<results>/<suite>/runs/<run key>/checkpoint.pt``) holds everything the
shared loop needs to continue exactly where it stopped: the method's state (student and
its heads), the optimizer and scheduler, every RNG the loop draws from (torch, CUDA,
numpy, python and the data-order generator), the per-epoch history and the best-val
bookkeeping. A resumed run therefore produces the same final metrics as an uninterrupted
one (on CPU, where training is deterministic).

Everything is stored as tensors, lists and plain numbers, so it loads with
``torch.load(..., weights_only=True)`` (no pickled objects). Writes are atomic (temp file
+ rename): a ``kill -9`` mid-save leaves the previous checkpoint intact.

Method plugins keep their state in parameters and buffers (``state_dict``); plain Python
attributes changed during training are not saved.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.atomic import atomic_torch_save

log = logging.getLogger(__name__)

FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"  # in the run's directory, beside result.json


@dataclass(frozen=True)
class Checkpoint:
    """Where a run's checkpoint lives and how often the loop writes it.

    ``every``: save after every ``every``-th epoch (never after the last one: the run is
    about to finish); 0 saves nothing, but an existing checkpoint is still resumed from.
    ``key``: the run key; a checkpoint written for another key is ignored."""

    path: Path
    every: int = 0
    key: str = ""

    @classmethod
    def of_run(cls, run_dir: Path, every: int = 0, key: str = "") -> Checkpoint:
        """The checkpoint of the run filed in ``run_dir`` (beside its ``result.json``)."""
        return cls(Path(run_dir) / CHECKPOINT_NAME, every, key)

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def due(self, epoch: int, epochs: int) -> bool:
        return self.every > 0 and epoch % self.every == 0 and epoch < epochs

    def save(self, state: dict[str, Any]) -> None:
        atomic_torch_save(self.path, {"format": FORMAT, "key": self.key, **state})

    def load(self, epochs: int) -> dict[str, Any] | None:
        """The saved state, or None when there is none (or it is unusable: warned)."""
        path = Path(self.path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a save cut by kill -9
            stale.unlink(missing_ok=True)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable: start over, say why
            log.warning("checkpoint %s unreadable (%s); training from epoch 1", path, exc)
            return None
        if state.get("format") != FORMAT or state.get("key") != self.key:
            log.warning("checkpoint %s belongs to another run; training from epoch 1", path)
            return None
        if not 1 <= int(state["epoch"]) <= epochs:
            log.warning(
                "checkpoint %s: epoch %s of %d; training from 1", path, state["epoch"], epochs
            )
            return None
        return state

    def remove(self) -> None:
        Path(self.path).unlink(missing_ok=True)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state the loop depends on, as tensors / lists / numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": int(version), "state": list(mt), "gauss": gauss_next},
        "generator": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"]), p["gauss"]))
    generator.set_state(state["generator"])
