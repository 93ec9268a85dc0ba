"""What a suite will cost before it starts (``bench run SUITE --dry-run --estimate``).

One short timed probe per distinct (dataset, teachers, student, method, batch size): the
real training loop (``bench.engine.train.fit``: views, the suite's ``speed:`` plan, forward,
backward, optimiser) on the run's own first training batches and on the chosen device,
with untrained models of the run's architectures (a step costs the same before training).
A warm-up pass (autotuning, ``compile``) is timed apart as start-up; then ``PROBE_STEPS``
steps give seconds per step, and test-time predictions over a few batches give seconds
per evaluated image. A run's estimate is

    start-up + epochs x steps per epoch x step + evaluated images x eval

where a run evaluates its validation split every epoch and its test split once, twice
with a validation split (the last and the best-validation state); a teacher still to
train costs the same with its own recipe (and its own-class test images once); a method
that trains nothing costs its evaluations. Finished runs and cached teachers cost nothing.
Hours are GPU-hours on CUDA and CPU-hours on the CPU, one run at a time; packed runs share
a device, so their wall time is less than the sum when the device had room to spare.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.core.artifacts import TEACHER
from bench.core.config import OptimConfig, SuiteConfig
from bench.core.method import MethodContext
from bench.core.models import build_model
from bench.core.specs import RunSpec, TeacherSpec
from bench.core.store import RunStore
from bench.data.datasets import LabelledImages
from bench.data.prepare import PreparedData, prepare
from bench.engine.evaluate import evaluate
from bench.engine.runtime import resolve_device, seed_everything
from bench.engine.supervised import CrossEntropy
from bench.engine.train import FitOptions, epoch_steps, fit
from bench.experiment.migrate import find_legacy
from bench.experiment.plan import PlannedRun, expand
from bench.experiment.plugins import METHODS
from bench.experiment.runner import method_context

PROBE_STEPS = 5  # timed steps per probe, after WARMUP_STEPS untimed ones
WARMUP_STEPS = 2
EVAL_IMAGES = 512  # images predicted per evaluation probe


@dataclass(frozen=True)
class Probe:
    """Measured on the device: seconds per training step and per evaluated image, and
    the first steps' extra time (autotuning, compilation)."""

    step_s: float
    eval_s_per_image: float
    startup_s: float


@dataclass(frozen=True)
class Cost:
    what: str  # "run" or "teacher"
    key: str
    label: str
    steps: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass
class Estimate:
    device: str
    items: list[Cost] = field(default_factory=list)
    finished: int = 0  # runs skipped: already finished
    cached_teachers: int = 0
    probes: int = 0

    @property
    def total_seconds(self) -> float:
        return sum(c.seconds for c in self.items)

    @property
    def total_steps(self) -> int:
        return sum(c.steps for c in self.items)

    def describe(self) -> str:
        unit = "GPU-h" if self.device.startswith("cuda") else "CPU-h"
        lines = [
            f"estimate on {self.device} ({self.probes} timed probe(s); one run at a time):",
            f"{'':8} {'key':16}  {'steps':>9}  {unit:>8}  what",
        ]
        for c in self.items:
            lines.append(f"{c.what:8} {c.key:16}  {c.steps:>9}  {c.hours:>8.4f}  {c.label}")
        runs = sum(c.what == "run" for c in self.items)
        teachers = len(self.items) - runs
        lines.append(
            f"total: {runs} run(s) + {teachers} teacher(s) to train, {self.total_steps} steps, "
            f"{self.total_seconds / 3600:.4f} {unit} (skipped: {self.finished} finished "
            f"run(s), {self.cached_teachers} cached teacher(s))"
        )
        return "\n".join(lines)


def run_seconds(probe: Probe, steps: int, evaluated_images: int) -> float:
    """The estimate formula of the module docstring."""
    startup = probe.startup_s if steps > 0 else 0.0
    return startup + steps * probe.step_s + evaluated_images * probe.eval_s_per_image


def estimate_suite(
    suite: SuiteConfig,
    results_root: Path,
    device: str | None = None,
    seeds: list[int] | None = None,
    probe_steps: tuple[int, int] = (WARMUP_STEPS, PROBE_STEPS),
    eval_images: int = EVAL_IMAGES,
) -> Estimate:
    """Probe and estimate every pending run of ``suite`` (see the module docstring);
    ``probe_steps``: (untimed warm-up, timed) training steps per probe; ``eval_images``:
    images predicted per evaluation probe."""
    results_root = Path(results_root)
    dev = resolve_device(device or suite.device)
    store = RunStore(results_root / suite.name)
    out = Estimate(str(dev))
    probes = _Probes(dev, suite, probe_steps, eval_images)
    teachers_seen: set[str] = set()
    runs = expand(suite, seeds)
    legacy = find_legacy(runs, results_root)  # finished under older keys: `bench run` moves them
    migrating = {m.key for m in legacy.runs}
    teachers_migrating = {m.key for m in legacy.teachers}
    for run in runs:
        if store.is_finished(run.key) or run.key in migrating:
            out.finished += 1
            continue
        data = prepare(run.spec.dataset_config())
        for t, tspec in enumerate(run.spec.teacher_specs(len(data.layout.tasks))):
            if tspec.key in teachers_seen:
                continue
            teachers_seen.add(tspec.key)
            if TEACHER.entry(results_root, tspec.key).cached() or tspec.key in teachers_migrating:
                out.cached_teachers += 1
                continue
            out.items.append(_teacher_cost(suite, run, tspec, t, data, dev, probes))
        out.items.append(_run_cost(suite, run, data, dev, probes))
    out.probes = len(probes.done)
    return out


@dataclass
class _Probes:
    """The probes measured so far in one estimate, by key."""

    device: torch.device
    suite: SuiteConfig
    steps: tuple[int, int]
    eval_images: int
    done: dict[str, Probe] = field(default_factory=dict)

    def get(self, key: str, make_method, train, data, optim) -> Probe:
        """The probe of ``key``, measured on a method from ``make_method()`` first."""
        if key not in self.done:
            self.done[key] = _probe(make_method, train, data, optim, self)
        return self.done[key]


def _teacher_cost(
    suite, run: PlannedRun, tspec: TeacherSpec, t: int, data: PreparedData, dev, probes
) -> Cost:
    """A teacher still to train: a supervised fit of its architecture on its classes."""
    train, val, optim = data.task_train(t), data.task_val(t), tspec.optim
    key = _probe_key(["teacher", tspec.dataset, tspec.arch, tspec.params, optim.batch_size])
    size = data.layout.sizes[t]

    def make_method() -> CrossEntropy:  # the engine's supervised trainer, as for a teacher
        model = _model(tspec.arch, tspec.params, size, data)
        return CrossEntropy.for_model(model, data.channels, data.image_size)

    probe = probes.get(key, make_method, train, data, optim)
    steps = optim.epochs * epoch_steps(len(train), optim.batch_size)
    evaluated = (len(val) if val is not None else 0) * optim.epochs
    if data.test is not None:
        sl = data.layout.task_slice(t)
        evaluated += int(((data.test.labels >= sl.start) & (data.test.labels < sl.stop)).sum())
    label = f"{run.meta.column} T{t + 1} {tspec.arch}"
    return Cost("teacher", tspec.key, label, steps, run_seconds(probe, steps, evaluated))


def _run_cost(suite, run: PlannedRun, data: PreparedData, dev, probes) -> Cost:
    spec: RunSpec = run.spec
    cls = METHODS.get(spec.method)
    optim = spec.optim or suite.optim
    student = spec.student.model_dump(mode="json") if spec.student else None
    teachers = spec.teachers.model_dump(mode="json", include={"arch", "params"})
    key = _probe_key([spec.method, spec.dataset, teachers, student, optim.batch_size])

    def make_method():
        return cls(_context(spec, data, dev), cls.Params.model_validate(spec.params))

    probe = probes.get(key, make_method, data.train, data, optim)
    n_val = len(data.val) if data.val is not None else 0
    n_test = len(data.test) if data.test is not None else 0
    if cls.trains:
        steps = optim.epochs * epoch_steps(len(data.train), optim.batch_size)
        evaluated = n_val * optim.epochs + n_test * (2 if n_val else 1)
    else:
        steps, evaluated = 0, n_val + n_test
    label = f"{run.meta.row} | {run.meta.column} | seed {run.meta.seed}"
    return Cost("run", run.key, label, steps, run_seconds(probe, steps, evaluated))


def _probe_key(parts: list) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def _model(arch: str, params: dict, num_classes: int, data: PreparedData):
    return build_model(
        arch, num_classes=num_classes, in_channels=data.channels, image_size=data.image_size,
        **params,
    )  # fmt: skip


def _context(spec: RunSpec, data: PreparedData, dev) -> MethodContext:
    """A run's method context with untrained teachers of its architectures (the pretrained
    inits are not loaded: a step costs the same)."""
    sizes = data.layout.sizes
    teachers = []
    for tspec, size in zip(spec.teacher_specs(len(sizes)), sizes):
        model = _model(tspec.arch, tspec.params, size, data).to(dev).eval()
        teachers.append(model.requires_grad_(False))
    student = spec.student
    params = student.params if student else {}
    return method_context(
        spec, data, teachers, lambda: _model(student.arch, params, sum(sizes), data)
    )


def _probe(make_method, train: LabelledImages, data, optim: OptimConfig, size: _Probes) -> Probe:
    """Time ``size.steps`` = (warm-up, timed) steps of the real loop, and test-time
    predictions of ``size.eval_images`` images, on ``size.device``."""
    dev, suite = size.device, size.suite
    warmup_steps, timed_steps = size.steps
    seed_everything(0)
    method = make_method().to(dev)
    bs = optim.batch_size
    how = FitOptions(dev, suite.num_workers, progress=False, speed=suite.speed)

    def timed_fit(n_steps: int) -> float:
        images = train.subset(torch.arange(min(len(train), n_steps * bs)))
        recipe = optim.model_copy(update={"epochs": 1})
        _sync(dev)
        start = time.perf_counter()
        fit(method, images, None, data.views, recipe, torch.Generator().manual_seed(0), how)
        _sync(dev)
        return time.perf_counter() - start

    step_s = eval_s = startup = 0.0
    if method.trains:
        warm = timed_fit(warmup_steps)
        step_s = timed_fit(timed_steps) / epoch_steps(min(len(train), timed_steps * bs), bs)
        startup = max(0.0, warm - epoch_steps(min(len(train), warmup_steps * bs), bs) * step_s)
    method.eval()
    held_out = data.test if data.test is not None and len(data.test) else train
    images = held_out.subset(torch.arange(min(len(held_out), size.eval_images)))
    evaluate(method.predict, images, data.views, None, dev)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    evaluate(method.predict, images, data.views, None, dev)
    _sync(dev)
    eval_s = (time.perf_counter() - start) / max(1, len(images))
    return Probe(step_s, eval_s, startup)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
