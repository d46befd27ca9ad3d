"""Hardware descriptions: presets for H100 SXM, H200, A100, V100 (hardware.json) and energy figures."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("hardware.json")
CALIBRATION = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Hardware:
    """One GPU, in SI units (bytes, seconds, Hz). See hardware.json for the sources."""

    name: str
    hbm_bandwidth: float
    l2_bytes: float
    l2_bandwidth: float
    sms: int
    smem_per_sm: int
    smem_per_block: int
    regs_per_sm: int
    max_threads_sm: int
    max_blocks_sm: int
    max_threads_block: int
    max_regs_thread: int
    clock_hz: float
    fma_per_clock_sm: int
    dram_latency_s: float
    l2_latency_s: float
    smem_latency_s: float
    launch_s: float  # host cost of one asynchronous kernel launch (pycuda, Python)
    kernel_min_s: float  # GPU time of the smallest kernel (start + drain)
    sync_s: float  # one check point: count, copy back, stream synchronise, host decision
    hbm_efficiency: float  # achievable fraction of hbm_bandwidth (read + write streaming)
    # host cost of one prepared launch outside the layer loop (a check point's count, drop and
    # compaction kernels): the microbenchmark's empty-kernel launch; launch_s (fitted) is a layer
    # loop's step (its Python work and a 16-argument call) and is larger
    call_s: float = 5e-06
    memory_bytes: float = 80e9
    l1_bytes: float = 262144  # combined L1 / shared memory per SM (the gather kernel leaves it to L1)
    # SM clocks per wavefront of L1-cached loads (a warp's 128-byte gather hitting L1): microbenchmarked
    l1_wavefront_cycles: float = 1.05  # H200, 2026-12-04 (the SM clock; H100: same SM)
    host_copy_bandwidth: float = 10e9  # one host thread staging a batch's CSR inputs into pinned memory
    l2_fraction: float = 0.5  # of the L2 that holds cached reads (outputs streaming through take the rest)
    preset: str = ""
    calibrated: tuple = ()  # names of the constants replaced from calibration.json

    @property
    def smem_bandwidth(self) -> float:
        """Shared memory: 32 banks x 4 bytes per clock per SM."""
        return 128.0 * self.clock_hz * self.sms

    @property
    def fma_rate(self) -> float:
        return float(self.fma_per_clock_sm) * self.clock_hz * self.sms

    def to_dict(self) -> dict:
        d = asdict(self)
        d["calibrated"] = list(self.calibrated)
        return d


@cache
def _data() -> dict:
    return json.loads(DATA.read_text())


def energy_table() -> dict[str, float]:
    """pJ per byte moved at each level (dram, l2, smem, reg) and pJ per fp32 FMA (fma_pj)."""
    return {k: float(v) for k, v in _data()["energy_pj_per_byte"].items() if not k.startswith("_")}


def _calibration() -> dict:
    try:
        return json.loads(CALIBRATION.read_text())
    except (OSError, ValueError):
        return {}


def load_hardware(preset: str | None = None, calibrated: bool = True) -> Hardware:
    """A preset by key (h100-sxm, h200, a100, v100; default: the data file's default).

    calibrated: replace the few constants measured by the calibration run (calibration.json,
    written from benchmarks/validate_model.py's microbenchmarks) for that preset.
    """
    data = _data()
    key = preset or data["default"]
    if key not in data["presets"]:
        raise ValueError(f"unknown hardware preset {key!r}: choose one of {', '.join(data['presets'])}")
    raw = {k: v for k, v in data["presets"][key].items() if k != "match"}
    names = {f.name for f in fields(Hardware)}
    hw = Hardware(**{k: v for k, v in raw.items() if k in names}, preset=key)
    if calibrated:
        cal = _calibration().get(key, {}).get("constants", {})
        if cal:
            constants = {k: float(v) for k, v in cal.items() if k in names}
            hw = replace(hw, **constants, calibrated=tuple(sorted(cal)))  # type: ignore[arg-type]  # float fields
    return hw


def preset_for_gpu(gpu_name: str | None) -> str:
    """The preset key for a GPU name as nvidia-smi prints it; the default preset if none matches."""
    data = _data()
    if gpu_name:
        for key, p in data["presets"].items():
            if any(re.search(m, gpu_name, re.IGNORECASE) for m in p.get("match", [])):
                return key
    return data["default"]


def gpu_slug(gpu_name: str | None) -> str:
    """A file-name-safe form of a GPU name ('NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3')."""
    if not gpu_name:
        return "nogpu"
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "nogpu"
