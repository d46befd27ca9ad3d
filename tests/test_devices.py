"""Device discovery in its one home (spdnn.devices), without a CUDA context."""
from __future__ import annotations

import shutil

from spdnn import devices


def test_gpu_ids_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0, 2,,-1")
    assert devices.gpu_ids() == ["0", "2"] and devices.visible_gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.gpu_ids() == [] and devices.visible_gpu_count() == 0


def test_no_driver_no_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert devices.gpu_ids() == [] and devices.visible_gpu_count() == 0
    assert devices.gpu_info() is None


def test_cpu_and_its_re_exports():
    from spdnn.engines import cpu
    from spdnn.provenance import gpu_info

    assert devices.cpu_model().endswith("cores)") and devices.default_workers() >= 1
    assert cpu.cpu_model is devices.cpu_model and cpu.default_workers is devices.default_workers
    assert gpu_info is devices.gpu_info
