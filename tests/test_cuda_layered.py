"""The cuda engine on general layered networks (SNICIT's pruned MNIST networks): bit for bit the CPU LayeredEngine.

Engine cases run twice: on an emulated device (no GPU needed: pycuda's driver calls and the
kernels of spdnn_layer.cu replayed in numpy from their C, one rounding per product and per sum
in float32) and on the GPU (marked gpu: skipped without pycuda or a device). The emulation
checks the host side: the plan's upload, every launch's argument list against the kernel's C
signature in its build (read from the preprocessed source), pointers in bounds and aligned,
shared memory, flags, check points, compaction and carried rows. It is checked itself on the
challenge's sample against the CPU reference (test_challenge_path_equals_cpu), a
path the GPU runs bit for bit (tests/test_cuda.py). The kernels' C runs only on the GPU.

Host-side rules (plan keys with the bias, dropping dead rows, carrying saturated rows, the
argument lists) are tested without either.
"""

from __future__ import annotations

import bisect
import functools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.dag import snicit
from spdnn.dag.layered import LayeredEngine, LayeredNetwork
from spdnn.dag.network import IDENTITY, RELU, RELU_CLIP, RELU_CLIP1, SIGMOID, TANH
from spdnn.engines import cuda as cuda_module
from spdnn.engines.cpu import CpuEngine
from spdnn.engines.device import CudaDevice
from spdnn.engines.kernel_args import KERNELS, compile_options, formats, layer_act_args, level_args
from spdnn.engines.layer_plan import (
    ACT_ALL,
    ACT_CLAMP,
    ACT_KEEP,
    CHALLENGE_ACTIVATION,
    SCATTER_REGS,
    Activation,
    GeneralNetwork,
    keeps_saturated,
    layer_acts,
    plan_network,
    transposed_biased_layer,
)
from spdnn.io.cache import load_inputs, load_weights

from .conftest import require_cuda_device

KERNEL_FILE = Path(cuda_module.__file__).parent / "kernels" / "spdnn_layer.cu"
CPP = shutil.which("cpp")
H200_SMEM_OPTIN = 232448


# ----------------------------------------------------------------------------- the kernels' C signatures


@functools.cache
def c_signatures(layered: bool) -> dict[str, list[tuple[str, str]]]:
    """Every kernel's parameters (prepared-call letter, C name) in the preprocessed source of one build."""
    if CPP is None:
        pytest.skip("no C preprocessor (cpp) to read the kernels' signatures")
    text = subprocess.run(
        [CPP, "-P", "-x", "c", f"-DLAYERED={int(layered)}", "-DKW=4", str(KERNEL_FILE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sigs: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"\b(spdnn_\w+)\s*\(([^()]*)\)\s*\{", text):
        params = []
        for part in (p.strip() for p in m.group(2).split(",")):
            name = re.findall(r"\w+", part)[-1]
            if "*" in part:
                letter = "P"
            elif re.match(r"(const\s+)?float\b", part):
                letter = "f"
            elif re.match(r"(const\s+)?(unsigned\s+)?int\b", part):
                letter = "i"
            else:
                raise AssertionError(f"{m.group(1)}: parameter {part!r} of no known type")
            params.append((letter, name))
        sigs[m.group(1)] = params
    return sigs


@pytest.mark.parametrize("layered", [False, True])
def test_argument_formats_are_the_kernels_signatures(layered):
    """kernel_args.formats (what the engine prepares) is each kernel's C parameter list, per build."""
    sigs = c_signatures(layered)
    assert set(sigs) == set(KERNELS.values())
    for key, fmt in formats(layered).items():
        assert fmt == "".join(letter for letter, _ in sigs[KERNELS[key]]), key


def test_builds_differ_only_in_the_activation_arguments():
    challenge, layered = c_signatures(False), c_signatures(True)
    extra = {
        name: [p for p in layered[name] if p not in challenge[name]]
        for name in challenge
        if layered[name] != challenge[name]
    }
    assert extra == {
        "spdnn_layer": [("P", "cbias"), ("i", "mode"), ("f", "lo"), ("f", "hi")],
        "spdnn_fused": [("P", "cbias"), ("P", "lact")],
        "spdnn_fused_scatter": [("P", "cbias"), ("P", "lact")],
        "spdnn_saturated": [("f", "level")],
    }
    assert compile_options(32, 16, True, SCATTER_REGS, False) == [
        "-DKW=32",
        "-DWARPS=16",
        "-DFUSE_STAGE=1",
        f"-DFUSE_REGS={SCATTER_REGS}",
        "-O3",
    ]  # the challenge build's options as they always were
    assert "-DLAYERED=1" in compile_options(784, 16, False, SCATTER_REGS, True)
    assert layer_act_args(False, np.float32(-0.3), 0, 0, 0.0, 0.0) == (np.float32(-0.3),)
    packed = layer_act_args(True, np.float32(0), 4096, ACT_ALL | ACT_CLAMP, 0.0, 1.0)
    assert [type(a) for a in packed] == [np.intp, np.int32, np.float32, np.float32]
    assert level_args(False, 32.0) == () and level_args(True, 1.0) == (np.float32(1.0),)


# ----------------------------------------------------------------------------- an emulated device


class _Fault(Exception):
    """What the GPU would report as an illegal address or launch failure."""


class _Alloc:
    def __init__(self, mem: _Memory, base: int, size: int):
        self.mem, self.base, self.size = mem, base, size

    def __int__(self) -> int:
        return self.base

    __index__ = __int__

    def free(self) -> None:
        self.mem.free(self.base)


class _Memory:
    """Device memory: allocations at 256-byte aligned addresses with gaps between them (so an access
    off its allocation faults), filled with 0xff (NaN floats, -1 ints) as unwritten memory is garbage."""

    def __init__(self):
        self.blocks: dict[int, np.ndarray] = {}
        self.bases: list[int] = []
        self.next = 1 << 32

    def alloc(self, nbytes: int) -> _Alloc:
        size = max(1, int(nbytes))
        base = self.next
        self.next += (size + 255) // 256 * 256 + (1 << 20)
        self.blocks[base] = np.full(size, 0xFF, dtype=np.uint8)
        bisect.insort(self.bases, base)
        return _Alloc(self, base, size)

    def free(self, base: int) -> None:
        del self.blocks[base]
        self.bases.remove(base)

    def held(self) -> int:
        return sum(b.size for b in self.blocks.values())

    def view(self, ptr, dtype, count: int) -> np.ndarray:
        """count values of dtype at address ptr (a writable view); faults outside an allocation."""
        dtype, ptr, count = np.dtype(dtype), int(ptr), int(count)
        i = bisect.bisect_right(self.bases, ptr) - 1
        if i < 0 or ptr == 0:
            raise _Fault(f"address {ptr:#x} is in no allocation")
        base = self.bases[i]
        block, off = self.blocks[base], ptr - base
        if count < 0 or off + count * dtype.itemsize > block.size:
            raise _Fault(f"{count} x {dtype} at {ptr:#x}: past the allocation at {base:#x} of {block.size} bytes")
        if ptr % dtype.itemsize:
            raise _Fault(f"{dtype} at {ptr:#x}: misaligned")
        return block[off : off + count * dtype.itemsize].view(dtype)


class _Event:
    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def time_till(self, other) -> float:
        return 1.0  # milliseconds


class _Stream:
    def wait_for_event(self, event) -> None:
        pass

    def synchronize(self) -> None:
        pass


class FakeDriver:
    """pycuda.driver as the engine uses it, every call done at once, in order (one stream's order)."""

    class Error(Exception):
        pass

    class MemoryError(Error):
        pass

    class device_attribute:  # noqa: N801  (pycuda's names)
        MULTIPROCESSOR_COUNT = "sms"
        MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = "smem_optin"

    class function_attribute:  # noqa: N801
        MAX_DYNAMIC_SHARED_SIZE_BYTES = "dynamic_smem"

    def __init__(self, smem_optin: int = H200_SMEM_OPTIN, memory: int = 8 << 30):
        self.mem = _Memory()
        self.smem_optin, self.memory = smem_optin, memory
        self.launches: list[tuple[str, dict]] = []

    def Stream(self) -> _Stream:  # noqa: N802
        return _Stream()

    def Event(self) -> _Event:  # noqa: N802
        return _Event()

    def mem_alloc(self, nbytes: int) -> _Alloc:
        if self.mem.held() + nbytes > self.memory:
            raise self.MemoryError(f"cannot allocate {nbytes} bytes")
        return self.mem.alloc(nbytes)

    def mem_get_info(self) -> tuple[int, int]:
        return self.memory - self.mem.held(), self.memory

    def to_device(self, array: np.ndarray) -> _Alloc:
        alloc = self.mem_alloc(array.nbytes)
        self.memcpy_htod(alloc, array)
        return alloc

    def pagelocked_empty(self, count: int, dtype) -> np.ndarray:
        return np.empty(count, dtype=dtype)

    def memcpy_htod(self, dev, host: np.ndarray, stream=None) -> None:
        data = np.ascontiguousarray(host).view(np.uint8).ravel()
        self.mem.view(dev, np.uint8, data.size)[:] = data

    memcpy_htod_async = memcpy_htod

    def memcpy_dtoh(self, host: np.ndarray, dev, stream=None) -> None:
        host.view(np.uint8).reshape(-1)[:] = self.mem.view(dev, np.uint8, host.nbytes)

    memcpy_dtoh_async = memcpy_dtoh

    def memset_d32_async(self, dev, value: int, count: int, stream=None) -> None:
        self.mem.view(dev, np.uint32, count)[:] = np.uint32(value)


class _Dev:
    def __init__(self, driver: FakeDriver):
        self.driver = driver

    def get_attribute(self, attr: str) -> int:
        return {"sms": 132, "smem_optin": self.driver.smem_optin}[attr]

    def name(self) -> str:
        return "emulated device (numpy)"


class FakeModule:
    """A compiled module: its kernels emulated for the -D macros it was built with."""

    def __init__(self, driver: FakeDriver, options: list[str]):
        self.driver = driver
        self.macros = {"KW": 32, "WARPS": 8, "FUSE_STAGE": 1, "FUSE_REGS": 16, "LAYERED": 0}
        for opt in options:
            if opt.startswith("-D"):
                name, value = opt[2:].split("=")
                self.macros[name] = int(value)
        kw = self.macros["KW"]
        assert kw in (1, 2) or kw % 4 == 0, f"KW={kw}: the kernel file's #error"

    def get_function(self, name: str) -> _Function:
        return _Function(self, name)


class _Function:
    def __init__(self, module: FakeModule, name: str):
        self.module, self.name = module, name
        self.params = c_signatures(bool(module.macros["LAYERED"]))[name]
        self.fmt: str | None = None
        self.dynamic_smem = 48 * 1024

    def prepare(self, fmt: str) -> None:
        assert fmt == "".join(letter for letter, _ in self.params), (self.name, fmt)
        self.fmt = fmt

    def set_attribute(self, attr: str, value: int) -> None:
        assert attr == "dynamic_smem" and value <= self.module.driver.smem_optin, (attr, value)
        self.dynamic_smem = max(self.dynamic_smem, value)

    def prepared_async_call(self, grid, block, stream, *args, shared_size: int = 0) -> None:
        assert self.fmt is not None, f"{self.name} launched before prepare"
        assert len(args) == len(self.params), (
            f"{self.name}: {len(args)} arguments, its C signature has {len(self.params)}"
        )
        for (letter, pname), arg in zip(self.params, args):
            if letter == "P":
                assert isinstance(arg, (_Alloc, np.intp, int)) and not isinstance(arg, bool), (self.name, pname, arg)
            else:
                want = np.int32 if letter == "i" else np.float32
                assert type(arg) is want, (
                    f"{self.name}: {pname} is {type(arg).__name__}, the kernel takes {want.__name__}"
                )
        if shared_size > self.dynamic_smem:
            raise _Fault(f"{self.name}: {shared_size} bytes of dynamic shared memory, {self.dynamic_smem} opted in")
        p = dict(zip((pname for _, pname in self.params), args))
        self.module.driver.launches.append((self.name, p))
        with np.errstate(all="ignore"):  # garbage (NaN) lanes past the rows compute too, then are dropped
            _Kernels(self.module.driver.mem, self.module.macros, grid, block, shared_size).run(self.name, p)


class _Kernels:
    """The kernels of spdnn_layer.cu in numpy, by their C parameter names (one launch)."""

    def __init__(self, mem: _Memory, macros: dict, grid, block, shared: int):
        self.mem, self.shared = mem, shared
        self.kw, self.warps, self.regs = macros["KW"], macros["WARPS"], macros["FUSE_REGS"]
        self.layered, self.stage = bool(macros["LAYERED"]), bool(macros["FUSE_STAGE"])
        self.blocks = int(grid[0])
        self.threads = int(block[0])

    def run(self, name: str, p: dict) -> None:
        if name not in ("spdnn_count", "spdnn_scan", "spdnn_iota"):  # __launch_bounds__(WARPS * 32) kernels
            assert self.threads == 32 * self.warps, f"{name}: {self.threads} threads, WARPS={self.warps}"
        getattr(self, name[len("spdnn_") :])(p)

    # helpers
    def i32(self, ptr, n):
        return self.mem.view(ptr, np.int32, n)

    def tiles(self, ptr, tiles: int, width: int) -> np.ndarray:
        """Tile-interleaved features: [tile, neuron, lane]."""
        return self.mem.view(ptr, np.float32, tiles * width * 32).reshape(tiles, width, 32)

    def columns(self, cidx, cval, offset: int, ucols: int):
        n = ucols * self.kw
        if self.kw % 4 == 0:  # int4 / float4 loads
            for ptr in (cidx, cval):
                assert (int(ptr) + 4 * offset) % 16 == 0, "columns not 16-byte aligned"
        idx = self.mem.view(int(cidx) + 4 * offset, np.int32, n).reshape(ucols, self.kw)
        val = self.mem.view(int(cval) + 4 * offset, np.float32, n).reshape(ucols, self.kw)
        return idx, val

    @staticmethod
    def column_sums(y: np.ndarray, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        """column_sum for every tile, column and lane: ascending entry order, float32, no FMA."""
        acc = np.zeros((y.shape[0], idx.shape[0], 32), dtype=np.float32)
        for j in range(idx.shape[1]):
            acc = acc + val[:, j][None, :, None] * y[:, idx[:, j], :]
        return acc

    def activate(self, acc: np.ndarray, p: dict, bias, mode: int, lo, hi) -> np.ndarray:
        if not self.layered:  # (acc != 0) ? min(max(acc + bias, 0), 32) : 0
            z = np.minimum(np.maximum(acc + p["bias"], np.float32(0)), np.float32(32))
            return np.where(acc != 0, z, np.float32(0)).astype(np.float32)
        z = acc + bias[None, :, None]
        if mode & ACT_CLAMP:
            z = np.minimum(np.maximum(z, np.float32(lo)), np.float32(hi))
        if not mode & ACT_ALL:
            z = np.where(acc != 0, z, np.float32(0))
        return z.astype(np.float32)

    def rows(self, nrows: int, tiles: int, flags) -> tuple[np.ndarray, np.ndarray, int]:
        """(valid, flagged) per row of the tiles, and the rows < nrows the tiles cover."""
        n = min(int(nrows), 32 * tiles)
        valid = np.arange(32 * tiles) < nrows
        alive = np.zeros(32 * tiles, dtype=bool)
        alive[:n] = self.i32(flags, n) != 0
        return valid, alive, n

    def lact(self, p: dict, k: int) -> tuple[int, int, float, float]:
        rec = self.mem.view(int(p["lact"]) + 16 * k, np.uint8, 16)
        boff, mode = rec[:8].view(np.int32)
        lo, hi = rec[8:].view(np.float32)
        return int(boff), int(mode), lo, hi

    # kernels
    def layer(self, p: dict) -> None:
        gx = int(p["gx"])
        assert self.blocks % gx == 0, "grid is not whole tiles x gx"
        tiles, ucols = self.blocks // gx, int(p["ucols"])
        assert gx * self.warps >= 1
        valid, alive, n = self.rows(p["nrows"], tiles, p["fprev"])
        self.i32(p["fnext"], n)[:] = 0
        if int(p["count_prev"]):
            self.mem.view(p["count_prev"], np.uint32, 1)[0] += np.uint32(alive.sum())
        live = np.flatnonzero(alive.reshape(tiles, 32).any(axis=1))
        if not live.size:
            return
        idx, val = self.columns(p["cidx"], p["cval"], 0, ucols)
        y = self.tiles(p["yin"], tiles, int(p["win"]))[live]
        acc = self.column_sums(y, idx, val)
        if self.layered:
            bias = self.mem.view(p["cbias"], np.float32, ucols)
            v = self.activate(acc, p, bias, int(p["mode"]), p["lo"], p["hi"])
            keep = bool(int(p["mode"]) & ACT_KEEP)
        else:
            v, keep = self.activate(acc, p, None, 0, 0, 0), False
        lanes = valid.reshape(tiles, 32)[live]
        v = np.where(lanes[:, None, :], v, np.float32(0))  # rows past nrows: 0
        wrote = (v != 0).any(axis=1) | (keep & lanes)
        out_ptr = self.i32(p["out_ptr"], ucols + 1)
        out_list = self.i32(p["out_list"], int(out_ptr[-1]))
        owner = np.repeat(np.arange(ucols), np.diff(out_ptr))
        out = self.tiles(p["yout"], tiles, int(p["wout"]))
        out[live[:, None], out_list[None, :]] = v[:, owner]
        rows = (live[:, None] * 32 + np.arange(32))[wrote & lanes]
        self.i32(p["fcur"], n)[rows] = 1

    def _segment(self, p: dict, scatter: bool) -> None:
        tiles, k0, k1, wmax = self.blocks, int(p["k0"]), int(p["k1"]), int(p["wmax"])
        ucmax = int(p["ucmax"]) if scatter else 0
        widths = self.i32(p["widths"], k1 + 1)
        woff = self.mem.view(p["woff"], np.int64, k1 + 1)
        assert np.all(widths[k0 : k1 + 1] <= wmax), "a layer wider than the segment's tile"
        # the shared memory the kernel lays out (spdnn_fused / spdnn_fused_scatter)
        wcols = ((ucmax if scatter else wmax) * self.kw + 3) & ~3
        need = 4 * (32 * wmax + ((wmax + ucmax + 4) & ~3)) if scatter else 4 * 64 * wmax
        need += 4 * 4 * wcols if self.stage else 0
        assert self.shared >= need, f"{self.shared} bytes of shared memory, the segment lays out {need}"
        valid, alive, n = self.rows(p["nrows"], tiles, p["fprev"])
        lanes = valid.reshape(tiles, 32)
        mask = alive.reshape(tiles, 32).copy()
        if int(p["count_prev"]):
            self.mem.view(p["count_prev"], np.uint32, 1)[0] += np.uint32(alive.sum())
        counts = self.mem.view(p["counts"], np.uint32, k1)
        a = np.full((tiles, wmax, 32), np.nan, dtype=np.float32)  # shared memory: garbage until written
        w0 = int(widths[k0])
        a[:, :w0] = np.where(mask[:, None, :], self.tiles(p["yin"], tiles, w0), np.float32(0))
        if scatter:
            poff = self.i32(p["poff"], k1 + 1)
        for k in range(k0, k1):
            on = np.flatnonzero(mask.any(axis=1))
            if not on.size:
                break
            if scatter:
                ucols = int(poff[k + 1] - poff[k] - 1)
                assert ucols <= ucmax
            else:
                ucols = int(widths[k + 1])
            if self.stage:  # cp.async copies whole 16-byte pieces of the layer's columns
                assert ucols * self.kw <= wcols
                for ptr in (p["cidx"], p["cval"]):
                    self.mem.view(int(ptr) + 4 * int(woff[k]), np.int32, ((ucols * self.kw + 3) & ~3))
            idx, val = self.columns(p["cidx"], p["cval"], int(woff[k]), ucols)
            computed = ucols if not scatter else min(ucols, self.warps * self.regs)
            acc = self.column_sums(a[on], idx[:computed], val[:computed])
            if self.layered:
                boff, mode, lo, hi = self.lact(p, k)
                bias = self.mem.view(int(p["cbias"]) + 4 * boff, np.float32, ucols)[:computed]
                v = self.activate(acc, p, bias, mode, lo, hi)
                keep = bool(mode & ACT_KEEP)
            else:
                v, keep = self.activate(acc, p, None, 0, 0, 0), False
            v = np.where(lanes[on][:, None, :], v, np.float32(0))
            wrote = (v != 0).any(axis=1) | (keep & lanes[on])
            if scatter:  # into the same buffer, through the layer's output lists
                op = self.i32(int(p["out_ptr"]) + 4 * int(poff[k]), ucols + 1)
                first, nlist = int(op[0]), int(op[ucols] - op[0])
                assert nlist <= wmax, "output lists longer than the staged buffer"
                lst = self.i32(int(p["out_list"]) + 4 * first, nlist)
                owner = np.repeat(np.arange(ucols), np.diff(op - first))
                pick = owner < computed
                sub = a[on]
                sub[:, lst[pick]] = v[:, owner[pick]]
                a[on] = sub
            else:
                b = np.full_like(a, np.nan)  # the other buffer: stale
                b[on, :ucols] = v
                a = b
            new = np.zeros_like(mask)
            new[on] = wrote
            mask = new
            counts[k] += np.uint32(mask.sum())  # each tile adds its rows still live
        out_w = int(widths[k1])
        done = np.flatnonzero(mask.any(axis=1))
        if done.size:
            self.tiles(p["yout"], tiles, out_w)[done] = a[done, :out_w]
        self.i32(p["fout"], n)[:] = mask.reshape(-1)[:n]
        self.i32(p["fzero"], n)[:] = 0

    def fused(self, p: dict) -> None:
        self._segment(p, scatter=False)

    def fused_scatter(self, p: dict) -> None:
        self._segment(p, scatter=True)

    def count(self, p: dict) -> None:
        n = int(p["n"])
        self.mem.view(p["count"], np.uint32, 1)[0] += np.uint32(np.count_nonzero(self.i32(p["flags"], n)))

    def saturated(self, p: dict) -> None:
        tiles, width = self.blocks, int(p["width"])
        valid, live, n = self.rows(p["nrows"], tiles, p["flags"])
        top = np.float32(p["level"]) if self.layered else np.float32(32)
        y = self.tiles(p["y"], tiles, width)
        full = live & np.all(y == top, axis=1).reshape(-1)
        self.mem.view(p["count"], np.uint32, 1)[0] += np.uint32(full.sum())
        if int(p["sat"]):
            self.i32(p["sat"], n)[:] = full[:n]
            flags = self.i32(p["flags"], n)
            flags[full[:n]] = 0

    def scan(self, p: dict) -> None:
        assert self.blocks == 1 and self.threads == 1024
        n = int(p["n"])
        ntiles = (n + 31) // 32
        f = np.zeros(32 * ntiles, dtype=np.int64)
        f[:n] = self.i32(p["flags"], n) != 0
        per_tile = f.reshape(ntiles, 32).sum(axis=1)
        self.i32(p["pos"], ntiles)[:] = np.concatenate([[0], np.cumsum(per_tile)[:-1]]) if ntiles else []
        self.i32(p["total"], 1)[0] = per_tile.sum()

    def compact(self, p: dict) -> None:
        gx, width = int(p["gx"]), int(p["width"])
        assert self.blocks % gx == 0
        tiles = self.blocks // gx
        _, keep, n = self.rows(p["nrows"], tiles, p["flags"])
        rows = np.flatnonzero(keep)
        if not rows.size:
            return
        pos = self.i32(p["pos"], tiles)
        k = keep.reshape(tiles, 32)
        rank = (np.cumsum(k, axis=1) - 1).reshape(-1)[rows]
        d = pos[rows // 32] + rank
        self.i32(p["alive_dst"], int(d.max()) + 1)[d] = self.i32(p["alive_src"], n)[rows]
        if width:
            src = self.tiles(p["src"], tiles, width)
            dst = self.tiles(p["dst"], int(d.max()) // 32 + 1, width)
            dst[d // 32, :, d % 32] = src[rows // 32, :, rows % 32]

    def densify(self, p: dict) -> None:
        gx, width, nrows = int(p["gx"]), int(p["width"]), int(p["nrows"])
        assert self.blocks % gx == 0
        tiles = self.blocks // gx
        covered = min(width, gx * self.warps * 64)  # DENSIFY_COLS columns per warp
        n = min(nrows, 32 * tiles)
        ptr = self.mem.view(p["indptr"], np.int64, n + 1)
        cols = self.i32(p["col"], int(ptr[n]))
        vals = self.mem.view(p["val"], np.float32, int(ptr[n]))
        owner = np.repeat(np.arange(n), np.diff(ptr))
        assert np.all((np.diff(cols) > 0) | (np.diff(owner) > 0)), "a row's columns are not ascending and distinct"
        dense = np.zeros((32 * tiles, width), dtype=np.float32)
        dense[owner, cols] = vals
        self.tiles(p["y"], tiles, width)[:, :covered] = dense.reshape(tiles, 32, width).transpose(0, 2, 1)[:, :covered]

    def iota(self, p: dict) -> None:
        n = int(p["n"])
        self.i32(p["alive"], n)[:] = int(p["first"]) + np.arange(n)


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def make_engine(request, monkeypatch):
    """CudaEngine(**options) on the emulated device or on the GPU."""
    if request.param == "gpu":
        require_cuda_device()
        return lambda **options: cuda_module.CudaEngine(**options)
    if CPP is None:
        pytest.skip("no C preprocessor (cpp) to read the kernels' signatures")
    driver = FakeDriver()
    monkeypatch.setattr(cuda_module, "open_device", lambda index=0: CudaDevice(driver, _Dev(driver), None, "sm_90"))
    monkeypatch.setattr(cuda_module, "compile_module", lambda source, arch, options: FakeModule(driver, options))
    return lambda **options: cuda_module.CudaEngine(**options)


# ----------------------------------------------------------------------------- networks and checks


def layered_net(
    widths: list[int],
    seed: int,
    *,
    acts: list[int] | None = None,
    dense: tuple[int, ...] = (),
    density: float = 0.3,
    bias: tuple[float, float] = (0.0, 0.2),
    scale: float = 1.5,
) -> LayeredNetwork:
    """Random layers: sparse ones with their own nonzeros per column (some columns empty), dense
    ones (`dense`: layer numbers), mixed-sign weights, biases N(bias) of both signs; relu_clip1
    hidden layers and an identity last by default (SNICIT's)."""
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if k in dense:
            w = sp.csr_matrix(rng.normal(0, scale / np.sqrt(a), size=(a, b)).astype(np.float32))
        else:
            counts = rng.integers(1, max(2, int(2 * density * a)), size=b)
            counts[rng.random(b) < 0.1] = 0
            rows = np.concatenate([rng.choice(a, c, replace=False) for c in counts]).astype(np.int64)
            cols = np.repeat(np.arange(b), counts)
            vals = rng.normal(0, scale / np.sqrt(max(1.0, density * a)), size=rows.size).astype(np.float32)
            w = sp.csr_matrix((vals, (rows, cols)), shape=(a, b))
        ws.append(w)
        bs.append(rng.normal(*bias, size=b).astype(np.float32))
    acts = acts if acts is not None else [RELU_CLIP1] * (len(ws) - 1) + [IDENTITY]
    return LayeredNetwork(ws, bs, acts, name=f"random-{seed}")


def inputs_for(width: int, n: int, seed: int, zero_rows: int = 3) -> np.ndarray:
    """[0, 1] inputs, about 70% zeros (MNIST-like), the first rows all zero."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, width), dtype=np.float32)
    x[rng.random((n, width)) < 0.7] = 0
    x[:zero_rows] = 0
    return x


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    """The same float32 bits everywhere (not a tolerance)."""
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32, (got.shape, want.shape)
    differ = got.view(np.uint32) != want.view(np.uint32)
    if differ.any():
        r, c = np.argwhere(differ)[0]
        raise AssertionError(
            f"{differ.sum()} values differ; first at [{r}, {c}]: {got[r, c]!r}, expected {want[r, c]!r}"
        )


def layered_outputs(net: LayeredNetwork, x) -> np.ndarray:
    e = LayeredEngine()
    e.prepare(net)
    return e.infer(x).outputs


def run_layered(make_engine, net: LayeredNetwork, x, **options):
    """The cuda engine's outputs and result, checked bit for bit against the CPU LayeredEngine."""
    eng = make_engine(**options)
    eng.prepare_layered(net)
    out, res = eng.infer_layered(x)
    assert_bits_equal(out, layered_outputs(net, x))
    return out, res


# the kernel paths on a layered network: a kernel per layer (full width and merged), full-width
# fused (scatter) segments staged and not, merged fused segments staged and not
PATHS = {
    "layer": dict(variant="dedup", fuse_width=0),
    "merged-layer": dict(variant="merged", fuse_width=0),
    "scatter": dict(variant="dedup", fuse_width=256),
    "scatter-unstaged": dict(variant="dedup", fuse_width=256, stage_weights=False),
    "fused": dict(variant="merged", fuse_width=256),
    "fused-unstaged": dict(variant="merged", fuse_width=256, stage_weights=False),
}
FUSED = ("scatter", "scatter-unstaged", "fused", "fused-unstaged")


# ----------------------------------------------------------------------------- host-side rules (CPU)


def test_distinct_columns_include_the_bias():
    """Neurons with the same column merge only when their biases are equal too."""
    base = sp.random(20, 4, density=0.5, random_state=1, format="csc", dtype=np.float32)
    w = sp.csr_matrix(sp.hstack([base, base[:, [0, 1]]]))  # neurons 4, 5 copy 0, 1
    bias = np.array([0.1, 0.2, 0.3, 0.4, 0.1, -0.2], dtype=np.float32)  # 4 = 0 (same bias), 5 != 1
    _, _, kw, umap, cbias = transposed_biased_layer(w, None, 20, bias)
    assert umap.tolist() == [0, 1, 2, 3, 0, 4]
    np.testing.assert_array_equal(cbias, bias[[0, 1, 2, 3, 5]])
    _, _, _, umap_nobias, none = transposed_biased_layer(w, None, 20, None)  # the challenge's key
    assert umap_nobias.tolist() == [0, 1, 2, 3, 0, 1] and none is None
    # in a plan: the merged network keeps 5 of 6, the next layer's entries re-pointed
    second = np.float32([0.0, 0.1, 0.2])  # (three distinct columns: their biases differ)
    net = LayeredNetwork([w, sp.csr_matrix(np.ones((6, 3), np.float32))], [bias, second], [RELU] * 2)
    plan = plan_network(GeneralNetwork.from_layered(net), 2, "merged")
    assert plan.layered and plan.widths == [5, 3] and plan.layers[1].kw == 8  # 6 original terms, padded
    assert plan_network(GeneralNetwork.from_layered(net), 2, "auto").variant == "dedup"  # 5 of 6: no 2x


def test_dead_rows_dropped_only_where_zero_rows_stay_zero(sample_cache):
    """zero_from: the first layer from which every layer maps a zero row to zero; rows are kept
    (keep_rows) after every layer before zero_from - 1. A bias that survives the activation
    revives a zero row; relu with b <= 0, or the challenge's bias on the nonzeros, does not."""
    widths = [30, 40, 40, 40, 40, 10]
    net = layered_net(widths, 3, acts=[RELU_CLIP1, RELU, RELU, RELU, RELU_CLIP1])
    net.biases[0] = np.abs(net.biases[0]) + np.float32(0.01)  # zero -> nonzero
    net.biases[1][5] = np.float32(0.3)  # one neuron revives a zero row
    for k in (2, 3, 4):
        net.biases[k] = -np.abs(net.biases[k])
    net.biases[3][7] = np.float32(0)  # b = 0 keeps zero
    plan = plan_network(GeneralNetwork.from_layered(net), 5, "dedup")
    assert [p.keeps_zero for p in plan.layers] == [False, False, True, True, True]
    assert plan.zero_from == 2 and [p.keep_rows for p in plan.layers] == [True, False, False, False, False]
    # SNICIT's shape: an identity last layer with biases: no row ever dropped before the last
    snicit_like = layered_net([30, 40, 40, 10], 4)
    plan = plan_network(GeneralNetwork.from_layered(snicit_like), 3, "dedup")
    assert plan.zero_from == 3 and [p.keep_rows for p in plan.layers] == [True, True, False]
    cbias, lact = layer_acts(plan.layers)
    assert lact["mode"].tolist() == [ACT_ALL | ACT_CLAMP | ACT_KEEP, ACT_ALL | ACT_CLAMP | ACT_KEEP, ACT_ALL]
    assert lact["boff"].tolist() == [0, 40, 80] and cbias.size == 90
    np.testing.assert_array_equal(lact["hi"], np.float32([1, 1, np.inf]))
    # the challenge through the general form: zero rows stay zero everywhere
    weights = GeneralNetwork.from_weights(load_weights(sample_cache["weights"]), 6)
    challenge_plan = plan_network(weights, 6, "merged")
    assert challenge_plan.zero_from == 0 and not any(p.keep_rows for p in challenge_plan.layers)


def saturating_net(layers: int, width: int, seed: int, breaks: int | None = None) -> LayeredNetwork:
    """relu_clip1 layers of positive weights summing to >= 1.5 per column, |b| < 0.3: a row at 1
    everywhere stays so (unless layer `breaks`, whose weights are scaled to sum < 0.5)."""
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for k in range(layers):
        nnz = rng.integers(4, 12, size=width)
        rows = np.concatenate([rng.choice(width, c, replace=False) for c in nnz])
        cols = np.repeat(np.arange(width), nnz)
        vals = np.concatenate([rng.dirichlet(np.ones(c)) * rng.uniform(1.5, 3.0) for c in nnz]).astype(np.float32)
        if k == breaks:
            vals *= np.float32(0.2)
        ws.append(sp.csr_matrix((vals, (rows, cols)), shape=(width, width)))
        bs.append(rng.uniform(-0.3, 0.3, size=width).astype(np.float32))
    return LayeredNetwork(ws, bs, [RELU_CLIP1] * layers, name=f"saturating-{seed}")


def test_saturated_rows_carried_only_where_the_replay_holds():
    """keeps_saturated with the layer's own biases and clamp, against the CPU engine on one row at
    the level; carry_from after the last layer that breaks it; an identity layer never keeps."""
    net = saturating_net(8, 48, seed=2)
    general = GeneralNetwork.from_layered(net)
    plan = plan_network(general, 8, "dedup")
    assert all(p.keeps_saturated for p in plan.layers[1:]) and plan.carry_from <= 1
    assert plan.sat_level == 1.0
    broken = plan_network(GeneralNetwork.from_layered(saturating_net(8, 48, seed=2, breaks=4)), 8, "dedup")
    assert not broken.layers[4].keeps_saturated and broken.carry_from == 5
    assert plan_network(general, 8, "dedup", carry_saturated=False).carry_from == 8
    # the replay is the engine's arithmetic: one all-1 row through each layer on the CPU
    answers = []
    for w, b in [(w, b) for w, b in zip(net.weights, net.biases)] + [
        (net.weights[0] * np.float32(0.45), net.biases[0]),
        (net.weights[1], net.biases[1] - np.float32(1.0)),
    ]:
        one = LayeredNetwork([w], [b], [RELU_CLIP1])
        expect = bool(np.all(layered_outputs(one, np.ones((1, w.shape[0]), np.float32)) == 1))
        cidx, cval, kw, _, cbias = transposed_biased_layer(sp.csc_matrix(w), None, w.shape[0], b)
        act = Activation(everywhere=True, clamp=(0.0, 1.0))
        assert keeps_saturated(cval, kw, cbias, act, 1.0) == expect
        answers.append(expect)
    assert any(answers) and not all(answers)
    identity = Activation(everywhere=True, clamp=None)
    assert not keeps_saturated(cval, kw, cbias, identity, 1.0) and identity.level is None
    assert CHALLENGE_ACTIVATION.level == 32.0 and Activation(True, (0.0, np.inf)).level is None


def test_layered_networks_the_engine_refuses():
    w = sp.csr_matrix(np.ones((3, 4), np.float32))
    for code in (SIGMOID, TANH):
        net = LayeredNetwork([w], [np.zeros(4, np.float32)], [code])
        with pytest.raises(ValueError, match="cannot run exactly"):
            GeneralNetwork.from_layered(net)
    dup = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2, 2, 2])), shape=(3, 4))
    with pytest.raises(ValueError, match="duplicate weight entries"):
        GeneralNetwork([dup], [np.zeros(4, np.float32)], [CHALLENGE_ACTIVATION])
    with pytest.raises(ValueError, match="finite"):
        GeneralNetwork([w * np.float32(np.inf)], [np.zeros(4, np.float32)], [CHALLENGE_ACTIVATION])


def test_dense_784_layer_plan():
    """A dense 784-input first layer: KW = 784, run by the per-layer kernel (its segment would
    not fit in shared memory); with fuse_width 256 the 128-wide hidden layers fuse."""
    net = layered_net([784, 128, 128, 128, 10], 5, dense=(0, 3))
    general = GeneralNetwork.from_layered(net)
    plan = plan_network(general, 4, "auto", fuse_width=None, smem_optin=H200_SMEM_OPTIN)
    assert plan.variant == "dedup" and plan.kws[0] == 784 and plan.kws[3] == 128
    assert not plan.layers[0].fused and plan.max_width == 784 and plan.out_width == 10
    narrow = plan_network(general, 4, "dedup", fuse_width=256, smem_optin=H200_SMEM_OPTIN)
    assert not narrow.layers[0].fused and narrow.layers[1].fused and narrow.fuse_wmax == 128


# ----------------------------------------------------------------------------- the engine: emulated and GPU


def test_challenge_path_equals_cpu(make_engine, sample_cache):
    """The emulation itself, on the challenge's path (the GPU's bit-identical results, tests/test_cuda.py):
    every kernel path, small batches, check points at every layer and rarely, carried rows."""
    weights = load_weights(sample_cache["weights"])
    x = load_inputs(sample_cache["inputs"], 300)
    ref = CpuEngine()
    ref.prepare(weights, weights.n_layers)
    expect = ref.infer(x)
    for options in [
        dict(variant="dedup", fuse_width=0),
        dict(variant="dedup", batch_rows=96, check_every=1),
        dict(variant="merged", fuse_width=0, check_every=3),
        dict(variant="merged", batch_rows=128),
        dict(variant="merged", stage_weights=False, check_every=64),
    ]:
        eng = make_engine(**options)
        eng.prepare(weights, weights.n_layers)
        got = eng.infer(x)
        np.testing.assert_array_equal(got.categories, expect.categories)
        assert got.active_rows == expect.active_rows, options
        assert_bits_equal(got.values.toarray(), expect.values.toarray())


@pytest.mark.parametrize("path", ["layer", "merged-layer", "scatter", "fused"])
def test_challenge_through_the_layered_build(make_engine, sample_cache, path):
    """The challenge's network as a GeneralNetwork (its bias on the nonzeros only, clip at 32) runs
    the LAYERED kernels: the CPU reference's categories, counts and values, carried rows too."""
    weights = load_weights(sample_cache["weights"])
    x = load_inputs(sample_cache["inputs"], 300)
    ref = CpuEngine()
    ref.prepare(weights, weights.n_layers)
    expect = ref.infer(x)
    eng = make_engine(check_every=2, **{**PATHS[path], "fuse_width": None if path in FUSED else 0})
    eng.prepare(GeneralNetwork.from_weights(weights, weights.n_layers), weights.n_layers)
    got = eng.infer(x)
    assert got.details["layered"] and got.details["zero_from"] == 0 and got.details["carry_from"] == 0
    np.testing.assert_array_equal(got.categories, expect.categories)
    assert got.active_rows == expect.active_rows
    assert_bits_equal(got.values.toarray(), expect.values.toarray())
    if path in FUSED:
        assert got.details["fused_layers"] > 0


RANDOM_NETS = {
    # SNICIT-like: dense 784-input first layer (KW = 784), sparse hidden of other widths, dense identity last
    "mnist-like": lambda: layered_net([784, 96, 64, 130, 10], 11, dense=(0, 3)),
    # every exact activation, non-square widths, a bias shifted positive
    "activations": lambda: layered_net(
        [50, 200, 7, 120, 10], 12, acts=[RELU, RELU_CLIP, RELU_CLIP1, IDENTITY], bias=(0.05, 0.3)
    ),
    # narrow columns: KW 1, 2 and 4
    "narrow": lambda: layered_net([40, 64, 64, 33], 13, density=0.03),
}


def with_duplicates(net: LayeredNetwork, seed: int) -> LayeredNetwork:
    """Copies of some neurons (same column, same bias: merged) and of others with another bias (not)."""
    rng = np.random.default_rng(seed)
    ws, bs = list(net.weights), list(net.biases)
    for k in range(len(ws) - 1):
        w, b = sp.csc_matrix(ws[k]), bs[k]
        pick = rng.choice(w.shape[1], size=w.shape[1] // 2)
        extra_b = b[pick].copy()
        extra_b[::3] += np.float32(0.05)
        ws[k] = sp.csr_matrix(sp.hstack([w, w[:, pick]]))
        bs[k] = np.concatenate([b, extra_b]).astype(np.float32)
        nxt = sp.csr_matrix(ws[k + 1])
        ws[k + 1] = sp.csr_matrix(sp.vstack([nxt, nxt[pick] * np.float32(0.5)]))
    return LayeredNetwork(ws, bs, net.activations, name=net.name + "-dup")


RANDOM_NETS["duplicates"] = lambda: with_duplicates(layered_net([60, 80, 80, 80, 10], 14), 15)


@pytest.mark.parametrize("name", sorted(RANDOM_NETS))
@pytest.mark.parametrize("path", sorted(PATHS))
def test_random_layered_networks(make_engine, name, path):
    net = RANDOM_NETS[name]()
    x = inputs_for(net.widths[0], 150, seed=1)
    out, res = run_layered(make_engine, net, x, batch_rows=64, check_every=2, **PATHS[path])
    assert out.shape == (150, net.widths[-1]) and res.details["layered"]
    if name == "mnist-like":
        assert 784 in res.details["kw"]
    if name == "narrow":
        assert {1, 2} & set(res.details["kw"])
    if name == "duplicates" and path.startswith(("merged", "fused")):
        assert res.details["variant"] == "merged" and sum(res.details["widths"]) < sum(net.widths[1:])
    if path in FUSED and name != "activations":  # (its 200-wide layer's columns do not fit staged)
        assert res.details["fused_layers"] > 0


def reviving_net(seed: int) -> LayeredNetwork:
    """Layer 0 (relu, b < 0) zeroes many rows, layer 1 (b > 0) revives every row, layers 2.. (relu,
    b < 0, weights leaning negative) zero rows for good, the last (relu_clip1, b <= 0) too: of 400
    rows 360, 400, 400, 400, 303, 173 have a nonzero after layers 0 .. 5."""
    net = layered_net([40, 64, 64, 64, 64, 64, 12], seed, acts=[RELU, RELU_CLIP1] + [RELU] * 3 + [RELU_CLIP1])
    net.biases[1] = np.abs(net.biases[1]) + np.float32(0.05)
    for k in (0, 2, 3, 4):
        net.biases[k] = -np.abs(net.biases[k]) * np.float32(0.7) - np.float32(0.01)
        net.weights[k] = sp.csr_matrix(net.weights[k] - abs(net.weights[k]) * np.float32(0.15))
    net.biases[5] = -np.abs(net.biases[5]) * np.float32(0.01)
    return net


@pytest.mark.parametrize("path", ["layer", "merged-layer", "scatter", "fused"])
def test_rows_die_only_after_zero_from(make_engine, path):
    """Rows that are zero after layer 0 are kept (layer 1 revives them: keep_rows), rows zero after
    layer 1 or later are dropped (compacted), and come back as zero rows."""
    net = reviving_net(21)
    x = inputs_for(40, 400, seed=2, zero_rows=40)
    first = layered_outputs(LayeredNetwork(net.weights[:1], net.biases[:1], net.activations[:1]), x)
    assert np.sum(~np.any(first != 0, axis=1)) >= 40  # zero after layer 0 ...
    out, res = run_layered(make_engine, net, x, batch_rows=128, check_every=1, **PATHS[path])
    assert res.details["zero_from"] == 2
    assert res.active_rows[:2] == [400, 400]  # ... and kept, then revived
    assert min(res.active_rows) < 400 and res.details["compactions"] > 0  # dropped from layer 1 on
    assert np.any(np.all(out == 0, axis=1)) and not np.all(out == 0)
    assert res.categories.size == int(np.any(out != 0, axis=1).sum())


@pytest.mark.parametrize("path", ["layer", "merged-layer", "scatter", "fused"])
@pytest.mark.parametrize("breaks", [None, 5])
def test_saturated_layered_rows_are_carried(make_engine, path, breaks):
    """Rows at 1 everywhere carried through relu_clip1 layers that keep them (from carry_from),
    returned as all-1 rows; exact with and without carrying."""
    net = saturating_net(16, 64, seed=5, breaks=breaks)
    x = inputs_for(64, 300, seed=3, zero_rows=5)
    out, res = run_layered(make_engine, net, x, batch_rows=128, check_every=1, **PATHS[path])
    assert res.details["carry_from"] == 6 if breaks else res.details["carry_from"] <= 1
    assert res.details["carried_rows"] > 0 and np.any(np.all(out == 1, axis=1))
    plain, res0 = run_layered(make_engine, net, x, carry_saturated=False, **PATHS[path])
    assert res0.details["carried_rows"] == 0
    assert_bits_equal(plain, out)


# ----------------------------------------------------------------------------- SNICIT's real networks

REAL = snicit.default_root()
needs_real = pytest.mark.skipif(not (REAL / "tsv_biases").is_dir(), reason=f"SNICIT networks not exported to {REAL}")


@functools.cache
def _read_real(letter: str) -> LayeredNetwork:
    return snicit.read_snicit(letter, allow_missing_input_layer=True)


def real_network(letter: str) -> LayeredNetwork:
    """Network `letter`, or a skip when only some networks were exported (its bias folder absent)."""
    if not (REAL / "tsv_biases" / snicit.NETWORKS[letter]).is_dir():
        pytest.skip(f"SNICIT network {letter} ({snicit.NETWORKS[letter]}) not exported to {REAL}")
    return _read_real(letter)


@needs_real
@pytest.mark.parametrize("letter", ["A", "B", "C", "D"])
@pytest.mark.parametrize("path", ["layer", "scatter", "scatter-unstaged", "fused-unstaged"])
def test_real_snicit_networks(make_engine, request, letter, path):
    """A-D bit for bit the layered CPU engine, and the DAG CPU engine's classes (argmax) agree."""
    from spdnn.dag.levels import levelise
    from spdnn.dag.registry import get_dag_engine

    gpu = "gpu" in request.node.callspec.id
    net = real_network(letter)
    n = 2000 if gpu else 64
    x = inputs_for(net.widths[0], n, seed=7)
    options = dict(PATHS[path], batch_rows=512) if gpu else PATHS[path]
    out, res = run_layered(make_engine, net, x, **options)
    assert res.details["zero_from"] == len(net.weights)  # identity last layer with biases: no row dropped early
    if net.widths[0] == 784:
        assert res.details["kw"][-1] == 784
    if path in ("scatter-unstaged", "fused-unstaged"):
        assert res.details["fused_layers"] > 0
    dag = get_dag_engine("compiled")
    dag.prepare(levelise(net.to_spec()))
    classes = dag.infer(x).outputs.argmax(axis=1)
    np.testing.assert_array_equal(out.argmax(axis=1), classes)
