"""GPU speed switches (suite-level ``speed:``) resolved against the device into a plan.

Every switch has an ``auto`` default that turns it on when the device is CUDA and off on
the CPU, so CPU runs (and their results) are exactly what they were without this module.
None of it is in a RunSpec: a switch never changes a run key (AMP changes the numerics of
a GPU run slightly, as AMP does; the record's ``speed`` says what was used).

* ``amp``: autocast for the training step (``torch.autocast``); ``auto`` = bf16 when the
  GPU supports it, else fp16 with a ``torch.amp.GradScaler``; ``bf16`` / ``fp16`` force a
  dtype (also on the CPU, where only bf16 is fast); ``off``. Evaluation stays in float32,
  so accuracies never depend on it.
* ``channels_last``: the method's modules and each input batch in NHWC memory format.
* ``compile``: ``torch.compile`` the models the step runs (the student and every other
  :class:`~bench.core.models.Classifier` the method owns, and the frozen teachers), not the loss
  code around them, once per run, in place (``nn.Module.compile``: state-dict keys and
  checkpoints are unchanged). Mode ``reduce-overhead`` on CUDA (CUDA graphs: the training
  batches have one static shape, ``drop_last``), the default mode on the CPU. ``False`` by
  default everywhere: it costs a compile per run and needs a C++ toolchain.
* ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` (autotuned convolutions; not
  bit-reproducible across runs).
* ``pin_memory``: page-locked host batches and ``non_blocking`` host-to-device copies.
* ``persistent_workers``: keep a file dataset's DataLoader workers alive between epochs
  (only with ``num_workers > 0``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench.core.config import SpeedConfig
from bench.core.errors import BenchError
from bench.core.models import Classifier

CUDA_GRAPHS = "reduce-overhead"  # torch.compile mode: CUDA graphs around the compiled models


@dataclass(frozen=True)
class SpeedPlan:
    """What a run actually does, after ``auto`` was resolved against its device."""

    amp_dtype: torch.dtype | None = None  # autocast dtype, None: no autocast
    use_scaler: bool = False  # fp16 autocast on CUDA needs loss scaling
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode when compile is on
    cudnn_benchmark: bool = False
    pin_memory: bool = False
    persistent_workers: bool = False
    device_type: str = "cpu"

    @property
    def non_blocking(self) -> bool:
        """Asynchronous host-to-device copies only pay off from pinned memory."""
        return self.pin_memory and self.device_type == "cuda"

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["amp_dtype"] = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "off"
        return out

    # ------------------------------------------------------------------ applying

    def autocast(self) -> AbstractContextManager:
        """Autocast for one training step's forward and loss (nothing when AMP is off)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        """``GradScaler(device)``, a no-op pass-through unless fp16 on CUDA."""
        return torch.amp.GradScaler(self.device_type, enabled=self.use_scaler)

    def apply_global(self) -> None:
        """Process-wide switches (cuDNN autotuning) before a run's first step."""
        if self.device_type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark

    def prepare_module(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def to_device(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Host batch -> device (pinned + non-blocking when planned)."""
        if self.non_blocking and not x.is_pinned():
            x = x.pin_memory()
        return x.to(device, non_blocking=self.non_blocking)

    def format_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def compile_models(self, method: torch.nn.Module) -> int:
        """Compile, in place, every model one training step runs: the teachers (a plain
        list on the method) and each :class:`Classifier` among the method's submodules
        (the student). Returns how many were compiled (0 when compile is off)."""
        if not self.compile:
            return 0
        models = [*getattr(method, "teachers", []), *method.modules()]
        todo = {id(m): m for m in models if isinstance(m, Classifier) and not _compiled(m)}
        for model in todo.values():
            model.compile(mode=self.compile_mode)
        return len(todo)

    @property
    def cuda_graphs(self) -> bool:
        return self.compile and self.compile_mode == CUDA_GRAPHS

    @property
    def warmup_steps(self) -> int:
        """Steps before a compiled step is steady: 1 (it compiles); with CUDA graphs also
        the CUDA-graph warm-up and recording calls."""
        return 3 if self.cuda_graphs else 1

    def begin_step(self) -> None:
        """Start of a training step: with CUDA graphs, tell their trees that a new
        iteration begins (the previous step's graph outputs may be overwritten)."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def synchronize(self, device: torch.device) -> None:
        """Wait for the device (only where a time is read, never per step)."""
        if self.device_type == "cuda":
            torch.cuda.synchronize(device)


def _compiled(module: torch.nn.Module) -> bool:
    """Whether ``nn.Module.compile`` already ran on ``module`` (a teacher compiled while
    it was trained in this process is not compiled again)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def _switch(value: str, on_cuda: bool, name: str) -> bool:
    if value == "auto":
        return on_cuda
    if value in ("on", "off"):
        return value == "on"
    raise BenchError(f"speed.{name}: expected auto, on or off, got {value!r}")


def resolve_speed(
    config: SpeedConfig | None,
    device: torch.device | str,
    num_workers: int = 0,
    bf16_supported: bool | None = None,
) -> SpeedPlan:
    """``auto`` -> on when ``device`` is CUDA, off otherwise (see the module docstring).

    ``bf16_supported``: whether the GPU runs bf16 (default: ask ``torch.cuda``; tests pass
    it to exercise both branches without a GPU)."""
    config = config or SpeedConfig()
    device = torch.device(device)
    cuda = device.type == "cuda"
    amp_dtype, scaler = None, False
    if (config.amp == "auto" and cuda) or config.amp in ("bf16", "fp16"):
        if config.amp == "fp16":
            use_bf16 = False
        elif not cuda:
            use_bf16 = True  # CPU autocast: bf16 (only reached when amp: bf16 is asked)
        else:
            if bf16_supported is None:
                bf16_supported = torch.cuda.is_bf16_supported()
            use_bf16 = bool(bf16_supported)
            if config.amp == "bf16" and not use_bf16:
                raise BenchError("speed.amp: bf16 was asked for, but this GPU does not run bf16")
        amp_dtype = torch.bfloat16 if use_bf16 else torch.float16
        scaler = amp_dtype == torch.float16 and cuda
    pin = _switch(config.pin_memory, cuda, "pin_memory")
    persistent = _switch(config.persistent_workers, cuda, "persistent_workers")
    return SpeedPlan(
        amp_dtype=amp_dtype,
        use_scaler=scaler,
        channels_last=_switch(config.channels_last, cuda, "channels_last"),
        compile=bool(config.compile),
        compile_mode=(CUDA_GRAPHS if cuda else "default") if config.compile else None,
        cudnn_benchmark=_switch(config.cudnn_benchmark, cuda, "cudnn_benchmark") and cuda,
        pin_memory=pin and cuda,  # pinning host memory needs an accelerator
        persistent_workers=persistent and num_workers > 0,
        device_type=device.type,
    )
