"""Run one peer program on one network's files, once, and read what it says."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from spdnn import challenge

from .parsers import compare_categories, parse_hidayetoglu, parse_sdgc, read_categories
from .recipes import Method


@dataclass
class Invocation:
    argv: list[str]
    cwd: Path
    env: dict[str, str]


def invocation(
    method: Method,
    binary: Path,
    files: dict,
    neurons: int,
    layer_count: int,
    n_inputs: int,
    categories_out: Path,
    threads: int,
) -> Invocation:
    """The command line and environment of one run (the files come from writers.py)."""
    env = {**os.environ, "PEER_CATEGORIES": str(categories_out), "OMP_NUM_THREADS": str(threads)}
    if method.inputs == "hidayetoglu":
        # its run scripts' tuning for the A100/V100 (BLOCKSIZE 256, BUFFER 24 KB): kept as published
        env.update(
            files["env"], DATASET=str(files["folder"]), BIAS=str(challenge.bias(neurons)), BLOCKSIZE="256", BUFFER="24"
        )
        return Invocation([str(binary)], files["folder"], env)
    argv = [str(binary), "-m", method.mode, "-n", str(neurons), "-l", str(layer_count), "-i", str(n_inputs)]
    return Invocation(argv, files["cwd"], env)


def run_once(method: Method, inv: Invocation, truth, timeout: float, log) -> dict:
    """Run, parse the peer's own timer and verdict, and check its categories against the truth."""
    out_path = Path(inv.env["PEER_CATEGORIES"])
    out_path.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            inv.argv, cwd=inv.cwd, env=inv.env, capture_output=True, text=True, errors="replace", timeout=timeout
        )
        text, code, timed_out = done.stdout + done.stderr, done.returncode, False
    except subprocess.TimeoutExpired as err:
        text = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        code, timed_out = None, True
    except OSError as err:  # the program could not start: this peer fails, the run goes on
        text, code, timed_out = f"could not start {inv.argv[0]}: {err}", None, False
    wall = time.perf_counter() - start
    log(f"$ (cd {inv.cwd} && {' '.join(inv.argv)})  [{wall:.1f} s, exit {code}]\n{text[-6000:]}\n")
    parsed = parse_hidayetoglu(text) if method.inputs == "hidayetoglu" else parse_sdgc(text, method.mode)
    result = {
        "returncode": code,
        "timed_out": timed_out,
        "wall_seconds": wall,
        **parsed,
        "categories": compare_categories(read_categories(out_path), truth),
    }
    if code != 0 or timed_out:
        result["error_tail"] = text[-800:]
    return result


def reset_schedule(folder: Path) -> None:
    """Empty the SDGC driver's schedule cache (its folder must exist for the driver)."""
    shutil.rmtree(folder, ignore_errors=True)
    Path(folder).mkdir(parents=True, exist_ok=True)
