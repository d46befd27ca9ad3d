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
    assert devices.gpu_info() is None and devices.gpu_names() == []


def test_cpu_and_its_re_exports():
    from spdnn.engines import cpu
    from spdnn.provenance import gpu_info

    assert devices.cpu_model().endswith("cores)") and devices.default_workers() >= 1
    assert cpu.cpu_model is devices.cpu_model and cpu.default_workers is devices.default_workers
    assert gpu_info is devices.gpu_info


def test_a_failing_nvidia_smi_lists_no_gpu(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 9\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.gpu_names() == [] and devices.gpu_ids() == [] and devices.gpu_info() is None


def test_nvidia_smi_listing(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in\n'
        '  -L) printf "GPU 0: NVIDIA H200 (UUID: a)\\nGPU 1: NVIDIA H200 (UUID: b)\\n" ;;\n'
        '  --query-gpu=name) printf "NVIDIA H200\\nNVIDIA H200\\n" ;;\n'
        '  --query-gpu=*) printf "NVIDIA H200, 570.1, 143771 MiB\\n" ;;\n'
        '  *) echo "| NVIDIA-SMI 570.1   Driver Version: 570.1   CUDA Version: 12.8 |" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.gpu_ids() == ["0", "1"] and devices.gpu_names() == ["NVIDIA H200", "NVIDIA H200"]
    info = devices.gpu_info()
    assert info["cuda_version"] == "12.8" and info["gpus"][0] == {
        "name": "NVIDIA H200",
        "driver": "570.1",
        "memory": "143771 MiB",
    }
