"""Recipes: where each peer's code lives, how it is patched and built, and how it is run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PATCHES = Path(__file__).resolve().parent / "patches"
ARCH = "-gencode arch=compute_90,code=sm_90"  # Hopper (H100, H200): the GPUs these runs are for


@dataclass(frozen=True)
class Source:
    """One peer repository at a pinned commit, exported (never cloned into the project)."""

    name: str  # folder under <peers root>/src and the binary's name under <peers root>/bin
    repo: str  # owner/name on GitHub
    commit: str
    paths: tuple[str, ...]  # the parts of the tree exported (the rest is data and papers)
    patches: tuple[str, ...]  # files in PATCHES, applied in order with `git apply`
    build: str  # shell command run in the exported tree
    binary: str  # what the build makes, relative to the exported tree
    licence: str

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}"


@dataclass(frozen=True)
class Method:
    """One peer as the table shows it: a program (a source's binary, maybe with a mode)."""

    key: str  # the name given to --peers
    label: str
    source: Source
    exact: bool  # computes the challenge's layers as defined (SNICIT approximates inside)
    inputs: str  # the input files it reads: "hidayetoglu" (binary) or "sdgc" (TSV)
    mode: str | None = None  # the SDGC driver's -m
    timer: str = ""  # what its own timer covers, from reading its code


HIDAYETOGLU = Source(
    name="hidayetoglu",
    repo="merthidayetoglu/SpDNN_Challenge2020",
    commit="d3f6e9b799831f52e4efc94dfc5f2535e98af858",
    paths=("singlegpu",),
    patches=("hidayetoglu-build.patch", "hidayetoglu-categories.patch"),
    build=(f"make -C singlegpu -f Makefile.ampere NVCCFLAGS='-O3 -std=c++11 {ARCH} -Xcompiler -fopenmp'"),
    binary="singlegpu/inference",
    licence="none stated (all rights reserved): run here, never copied",
)

SNICIT = Source(
    name="snicit",
    repo="IDEA-CUHK/SNICIT",
    commit="0ce20079674a3c6903c0d1bebedce07df8cbcc5c",
    paths=("main", "src/SDGC", "3rd-party", "LICENSE"),
    patches=("snicit-cuda13.patch", "snicit-driver.patch"),
    build=(
        "mkdir -p build && nvcc -std=c++17 --extended-lambda "
        + ARCH
        + " main/SDGC.cu -I 3rd-party -I src/SDGC -O3 -o build/SDGC -lstdc++fs"
    ),
    binary="build/SDGC",
    licence="MIT",
)

# GLARE (2023): a fork of the same SDGC driver with *_GLARE copies of BF, SNIG, XY and SNICIT that
# skip the reads of blocks found all 32 and the writes of 32s. No licence file at this commit.
GLARE = Source(
    name="glare",
    repo="IDEA-CUHK/GLARE",
    commit="7c44e32c7807e3ae1286af4786759010e07e13ac",
    paths=("main", "src/SDGC", "3rd-party"),
    patches=("glare-cuda13.patch", "glare-driver.patch"),
    build=SNICIT.build,
    binary="build/SDGC",
    licence="none stated (all rights reserved): run here, never copied",
)

SOURCES = {s.name: s for s in (HIDAYETOGLU, SNICIT, GLARE)}

_SDGC_EVENTS = "sum of its CUDA event times per layer, weights and inputs already on the GPU"
METHODS = {
    m.key: m
    for m in (
        Method(
            "hidayetoglu",
            "Hidayetoglu 2020 (champion)",
            HIDAYETOGLU,
            exact=True,
            inputs="hidayetoglu",
            timer="host clock around its layer loop; inputs on the GPU, weights streamed per layer (overlapped)",
        ),
        Method(
            "bf",
            "BF 2019 (SNIG authors' reimpl.)",
            SNICIT,
            exact=True,
            inputs="sdgc",
            mode="BF",
            timer="host clock around its inference (managed memory, inputs prefetched)",
        ),
        Method(
            "snig",
            "SNIG 2020",
            SNICIT,
            exact=True,
            inputs="sdgc",
            mode="SNIG",
            timer="host clock around its inference (managed memory, inputs prefetched)",
        ),
        Method("xy", "XY 2021 (champion)", SNICIT, exact=True, inputs="sdgc", mode="XY", timer=_SDGC_EVENTS),
        Method(
            "snicit", "SNICIT 2023 (approximate)", SNICIT, exact=False, inputs="sdgc", mode="SNICIT", timer=_SDGC_EVENTS
        ),
        # GLARE's kernels write no 32 (the buffer is trusted to hold one from two layers before) and
        # read 32 for blocks flagged all 32 (BF_GLARE never clears its flags): exact only while
        # saturation persists, hence exact=False whatever the paper says; the rows are checked.
        Method(
            "glare-bf",
            "BF+GLARE 2023",
            GLARE,
            exact=False,
            inputs="sdgc",
            mode="BF_GLARE",
            timer="host clock around its inference (managed memory)",
        ),
        Method(
            "glare-snig",
            "SNIG+GLARE 2023",
            GLARE,
            exact=False,
            inputs="sdgc",
            mode="SNIG_GLARE",
            timer="host clock around its inference (managed memory, inputs prefetched)",
        ),
        Method("glare-xy", "XY+GLARE 2023", GLARE, exact=False, inputs="sdgc", mode="XY_GLARE", timer=_SDGC_EVENTS),
        Method(
            "glare-snicit",
            "SNICIT+GLARE 2023 (approximate)",
            GLARE,
            exact=False,
            inputs="sdgc",
            mode="SNICIT_GLARE",
            timer=_SDGC_EVENTS,
        ),
    )
}


def methods(keys: str | list[str]) -> list[Method]:
    """The methods named (comma-separated or a list), in the order given; unknown names are an error."""
    names = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else list(keys)
    unknown = [k for k in names if k and k not in METHODS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}: choose from {', '.join(METHODS)}")
    return [METHODS[k] for k in names if k]
