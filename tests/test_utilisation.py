"""Per-epoch GPU utilisation and peak memory (bench.engine.utilisation): the sampling logic with a
fake NVML module, and the no-GPU path (no driver here, so the real pynvml fails cleanly)."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
import torch

from bench.engine.utilisation import EpochUsage, UtilisationSampler, open_sampler
from bench.tracking import epoch_metrics


class FakeNVML:
    """The few pynvml calls the sampler makes; utilisation readings come from a list."""

    class NVMLError(Exception):
        pass

    def __init__(self, readings, fail_init=False):
        self.readings, self.fail_init = list(readings), fail_init
        self.handles, self.shutdowns = [], 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles.append(uuid)
        return ("handle", uuid)

    def nvmlDeviceGetUtilizationRates(self, handle):
        assert handle[0] == "handle"
        value = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        return SimpleNamespace(gpu=value, memory=0)

    def nvmlShutdown(self):
        self.shutdowns += 1


def test_epoch_mean_of_the_samples_taken_since_the_last_read():
    nvml = FakeNVML([10, 30, 80, 40])
    usage = EpochUsage(torch.device("cpu"), UtilisationSampler(nvml, ("handle", "x")))
    for _ in range(3):
        usage.sampler.sample()
    assert usage.read() == {"gpu_util": 40.0}  # (10 + 30 + 80) / 3
    assert usage.read() == {}  # an epoch shorter than one interval: no figure, not 0
    usage.sampler.sample()
    assert usage.read() == {"gpu_util": 40.0}
    usage.close()
    assert nvml.shutdowns == 1 and usage.sampler is None


def test_the_background_thread_samples_until_closed():
    nvml = FakeNVML([50, 70])
    sampler = UtilisationSampler(nvml, ("handle", "x"), interval=0.01).start()
    deadline = time.monotonic() + 10
    while len(sampler._samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.close()
    samples = sampler.take()
    assert len(samples) >= 3 and samples[:2] == [50.0, 70.0] and set(samples[2:]) == {70.0}
    assert not sampler._thread.is_alive() and nvml.shutdowns == 1
    time.sleep(0.05)
    assert sampler.take() == []  # nothing sampled after close


def test_open_sampler_finds_the_gpu_by_uuid(monkeypatch):
    props = SimpleNamespace(uuid="58a4bfa1-1111-2222-3333-444455556666")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    nvml = FakeNVML([25])
    sampler = open_sampler(torch.device("cuda", 1), nvml, interval=60)
    assert nvml.handles == ["GPU-58a4bfa1-1111-2222-3333-444455556666"]
    sampler.sample()
    assert sampler.take() == [25.0]
    sampler.close()


def test_no_driver_or_no_pynvml_records_nothing_and_warns(monkeypatch, caplog):
    cuda = torch.device("cuda", 0)
    with caplog.at_level(logging.WARNING, logger="bench.engine.utilisation"):
        assert open_sampler(cuda, FakeNVML([0], fail_init=True)) is None
        assert "Driver Not Loaded" in caplog.text
        if not torch.cuda.is_available():  # the real pynvml on a machine without a driver
            assert open_sampler(cuda) is None
        monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # not installed
        assert open_sampler(cuda) is None
        assert "nvidia-ml-py (pynvml) is not installed" in caplog.text


def test_cpu_runs_record_no_device_figures_and_gpu_figures_reach_mlflow_metrics():
    usage = EpochUsage.start(torch.device("cpu"))
    assert usage.sampler is None and usage.read() == {}
    usage.close()
    record = {"epoch": 2, "loss": 0.5, "gpu_util": 62.5, "gpu_mem_peak_gib": 3.25}
    assert epoch_metrics(record) == {"loss": 0.5, "gpu_util": 62.5, "gpu_mem_peak_gib": 3.25}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_memory_on_a_real_gpu():
    usage = EpochUsage.start(torch.device("cuda"))
    x = torch.empty(2**28, dtype=torch.uint8, device="cuda")  # 0.25 GiB
    del x
    assert usage.read()["gpu_mem_peak_gib"] >= 0.25
    assert usage.read()["gpu_mem_peak_gib"] < 0.25  # reset at every read
    usage.close()
