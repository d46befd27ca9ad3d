"""Opening a CUDA device and compiling kernels through pycuda, for every GPU engine.

pycuda is imported here, inside `open_device`, and nowhere at module level: machines without
it (or without a GPU) get EngineUnavailable with the reason, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import EngineUnavailable


@dataclass
class CudaDevice:
    """pycuda's driver module, the device, its primary context (made current) and its sm_XY arch."""

    cuda: Any
    dev: Any
    ctx: Any
    arch: str

    def release(self) -> None:
        try:
            self.ctx.pop()
        except Exception:  # interpreter shutdown, or the context is already gone
            pass


class DeviceBuffers:
    """Named device buffers kept between calls; one that is too small is freed and reallocated."""

    def __init__(self, cuda: Any):
        self.cuda = cuda
        self._held: dict[str, tuple[Any, int]] = {}

    def get(self, key: str, nbytes: int):
        """The buffer `key`, at least nbytes long."""
        have = self._held.get(key)
        if have is None or have[1] < nbytes:
            if have is not None:
                have[0].free()
            have = (self.cuda.mem_alloc(max(256, nbytes)), nbytes)
            self._held[key] = have
        return have[0]

    def held_bytes(self) -> int:
        return sum(n for _, n in self._held.values())

    def free(self) -> None:
        for buf, _ in self._held.values():
            buf.free()
        self._held.clear()


def open_device(index: int = 0, needed_by: str = "the cuda engine") -> CudaDevice:
    """Make GPU `index`'s primary context current (shared with CuPy users in the same process)."""
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise EngineUnavailable(
            f"{needed_by} needs pycuda, which is not installed ({err}); "
            "pip install 'spdnn[gpu]' on a machine with an NVIDIA GPU"
        ) from err
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as err:  # pycuda.driver.Error: no driver, no device
        raise EngineUnavailable(f"CUDA driver not usable: {err}") from err
    if count == 0:
        raise EngineUnavailable("no CUDA GPU is visible (cuda.Device.count() == 0)")
    if not 0 <= index < count:
        raise EngineUnavailable(f"GPU {index} requested, {count} visible")
    dev = cuda.Device(index)
    ctx = dev.retain_primary_context()
    ctx.push()
    major, minor = dev.compute_capability()
    return CudaDevice(cuda=cuda, dev=dev, ctx=ctx, arch=f"sm_{major}{minor}")


def ptxas_usage(source: Path, options: list[str], arch: str = "sm_90") -> dict[str, tuple[int, int]]:
    """{kernel: (registers a thread, spill-store bytes)} as ptxas reports them compiling `source`
    with nvcc (no GPU needed): the register counts the model and the tests read."""
    import re
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            ["nvcc", f"-arch={arch}", "-cubin", "-Xptxas", "-v", *options, "-o", f"{tmp}/k.cubin", str(source)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    if run.returncode:
        raise RuntimeError(f"nvcc failed on {source.name} with {' '.join(options)}: {run.stderr[-2000:]}")
    usage, kernel, spill = {}, None, 0
    for line in run.stderr.splitlines():  # per kernel: its name, its spills, then its registers
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            kernel, spill = m.group(1), 0
        elif m := re.search(r"(\d+) bytes spill stores", line):
            spill = int(m.group(1))
        elif (m := re.search(r"Used (\d+) registers", line)) and kernel:
            usage[kernel] = (int(m.group(1)), spill)
    return usage


def compile_module(source: Path, arch: str, options: list[str]):
    """pycuda SourceModule of a .cu file for `arch`; a compile error is EngineUnavailable naming the file."""
    from pycuda.compiler import SourceModule

    try:
        return SourceModule(source.read_text(), arch=arch, no_extern_c=True, options=options)
    except Exception as err:
        raise EngineUnavailable(f"compiling {source.name} for {arch} failed: {err}") from err
