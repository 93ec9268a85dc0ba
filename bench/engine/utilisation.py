"""Per-epoch device usage for the training record: GPU utilisation and peak memory.

* ``gpu_util``: mean of NVML's GPU utilisation (percent of time a kernel ran, the figure
  ``nvidia-smi`` shows) sampled every ``interval`` seconds on a background thread over the
  epoch (training and validation). NVML (``nvidia-ml-py``, imported as ``pynvml``) talks
  to the driver, not to the CUDA stream, so sampling never synchronises the training step.
* ``gpu_mem_peak_gib``: ``torch.cuda.max_memory_allocated`` over the epoch (the allocator's
  peak, GiB); its counter is reset at every read.

Off CUDA nothing is recorded; without ``pynvml`` or a working driver only the peak memory
is (one warning, never an error: a run never fails for want of a monitor).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from statistics import fmean
from typing import Any

import torch

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 0.5  # seconds between NVML utilisation samples


class UtilisationSampler:
    """Samples one GPU's utilisation through an NVML module (``pynvml`` or a test's fake)."""

    def __init__(self, nvml: Any, handle: Any, interval: float = SAMPLE_INTERVAL) -> None:
        self.nvml, self.handle, self.interval = nvml, handle, interval
        self._samples: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one reading (the thread does this every ``interval`` seconds)."""
        util = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        with self._lock:
            self._samples.append(util)

    def take(self) -> list[float]:
        """The samples since the last ``take`` (and forget them)."""
        with self._lock:
            samples, self._samples = self._samples, []
        return samples

    def start(self) -> UtilisationSampler:
        self._thread = threading.Thread(target=self._run, name="gpu-util", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # a driver hiccup ends sampling, never the run
                log.warning("GPU utilisation sampling stopped: %s", exc)
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):  # already shut down: nothing to release
            self.nvml.nvmlShutdown()


def open_sampler(
    device: torch.device, nvml: Any = None, interval: float = SAMPLE_INTERVAL
) -> UtilisationSampler | None:
    """A started sampler for ``device`` (a CUDA device), or None with a warning when NVML
    is not there. The NVML handle is found by the device's UUID, so it is the right GPU
    whatever ``CUDA_VISIBLE_DEVICES`` renumbers."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            log.warning("GPU utilisation not recorded: nvidia-ml-py (pynvml) is not installed")
            return None
    try:
        nvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        handle = nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        nvml.nvmlDeviceGetUtilizationRates(handle)  # fails here, not on the thread
    except Exception as exc:  # NVMLError (no driver, no permission) or a missing symbol
        log.warning("GPU utilisation not recorded: NVML is not usable (%s)", exc)
        return None
    return UtilisationSampler(nvml, handle, interval).start()


class EpochUsage:
    """What ``fit`` adds to each epoch's record about the device (nothing off CUDA)."""

    def __init__(self, device: torch.device, sampler: UtilisationSampler | None) -> None:
        self.device, self.sampler = device, sampler

    @classmethod
    def start(cls, device: torch.device, nvml: Any = None) -> EpochUsage:
        device = torch.device(device)
        if device.type != "cuda":
            return cls(device, None)
        torch.cuda.reset_peak_memory_stats(device)
        return cls(device, open_sampler(device, nvml))

    def read(self) -> dict[str, float]:
        """The epoch's figures, and start the next epoch's. No device synchronisation."""
        out: dict[str, float] = {}
        if self.sampler is not None:
            samples = self.sampler.take()
            if samples:  # an epoch shorter than the interval has none
                out["gpu_util"] = fmean(samples)
        if self.device.type == "cuda":
            out["gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)
        return out

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
