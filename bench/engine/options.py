"""One execution context: :class:`ExecOptions`, everything a run needs besides its spec.

Built once per ``bench run`` / ``bench tune`` and passed by name to every launcher, to
:func:`bench.experiment.runner.execute` and to the teacher and pretrain caches. Frozen and picklable,
so a worker process or a Ray task gets the same object. The device name stays
unresolved until :meth:`ExecOptions.resolved` runs in the process that executes (``auto``
on a Ray worker with a GPU is CUDA even where the driver has none); after that,
``options.device`` is a ``torch.device`` and nothing resolves it again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.artifacts import Entry, Kind
from bench.core.config import SpeedConfig
from bench.engine.runtime import resolve_device
from bench.engine.train import FitOptions

if TYPE_CHECKING:
    from bench.tracking import TrackingTarget


@dataclass(frozen=True)
class ExecOptions:
    """What every run of one invocation shares (launchers take ``(runs, options, slots)``)."""

    results_root: Path
    device: Any = "auto"  # auto | cpu | cuda, or a torch.device once resolved
    num_workers: int = 0  # DataLoader workers per run
    progress: bool = True
    tracking: TrackingTarget | None = None  # MLflow target of the suite (None: off)
    checkpoint_every: int = 0  # epochs between student checkpoints (0: none)
    speed: SpeedConfig | None = None  # the suite's GPU speed switches (bench.engine.speed)
    with_test: bool = True  # False (tuning): the test split is never loaded
    test_curve: bool = False  # record test accuracy per epoch (feeds no decision, ever)
    # torch threads of each run, set where it executes (bench.engine.runtime: resolve_threads);
    # None: the executing process's own count is left as it is
    threads: int | None = None

    def resolved(self) -> ExecOptions:
        """These options with ``device`` resolved here (a ``torch.device``; idempotent)."""
        if not isinstance(self.device, str):
            return self
        return dataclasses.replace(self, device=resolve_device(self.device))

    def artifact(self, kind: Kind, key: str) -> Entry:
        """The cache entry of a teacher or pretrain stage (:mod:`bench.core.artifacts`)
        under this invocation's results root."""
        return kind.entry(self.results_root, key)

    def fit_options(self) -> FitOptions:
        """How every training loop of this invocation runs (resolved here first)."""
        here = self.resolved()
        return FitOptions(here.device, here.num_workers, here.progress, here.speed)
