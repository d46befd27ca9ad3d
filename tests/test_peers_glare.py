"""GLARE (IDEA-CUHK/GLARE) as a peer, on the CPU: its recipe, its patches against the pinned tree,
and the parser on the lines its driver prints.

The patches are applied to the real tree when a git mirror of the repository holding the
pinned commit is at hand ($SPDNN_PEERS_MIRROR_ROOT/<owner>+<name>/repo, default /work/.mirror,
the layout of `bench_peers.py --prepare --mirror-root`); otherwise those tests are skipped.
No GPU, no build.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .conftest import benchmark_modules, have_executable

parsers, recipes, runner, sources = benchmark_modules("peers", "parsers", "recipes", "runner", "sources")

GLARE_KEYS = ("glare-bf", "glare-snig", "glare-xy", "glare-snicit")
MODES = {"glare-bf": "BF_GLARE", "glare-snig": "SNIG_GLARE", "glare-xy": "XY_GLARE", "glare-snicit": "SNICIT_GLARE"}
CLASS_FILES = {mode: f"src/SDGC/{mode}/{mode}.hpp" for mode in MODES.values()}


def _mirror() -> Path | None:
    root = Path(os.environ.get("SPDNN_PEERS_MIRROR_ROOT", "/work/.mirror"))
    git_dir = root / recipes.GLARE.repo.replace("/", "+") / "repo"
    if not have_executable("git") or not git_dir.is_dir():
        return None
    known = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{recipes.GLARE.commit}^{{commit}}"],
        capture_output=True,
    )
    return git_dir if known.returncode == 0 else None


MIRROR = _mirror()
needs_mirror = pytest.mark.skipif(MIRROR is None, reason="no git mirror of IDEA-CUHK/GLARE holding the pinned commit")


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    """The pinned tree exported and patched exactly as --prepare does (export raises if a patch
    does not apply)."""
    root = tmp_path_factory.mktemp("glare-peers")
    return sources.export(recipes.GLARE, root, mirror=MIRROR)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("glare-pristine")
    archive = subprocess.run(
        ["git", "--git-dir", str(MIRROR), "archive", "--format=tar", recipes.GLARE.commit, *recipes.GLARE.paths],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


# ----------------------------------------------------------------------------- recipe


def test_recipe_pins_the_commit_docs_name_and_keeps_only_our_patches():
    g = recipes.GLARE
    assert g.repo == "IDEA-CUHK/GLARE" and re.fullmatch(r"7c44e32[0-9a-f]{33}", g.commit)
    assert g.patches == ("glare-cuda13.patch", "glare-driver.patch")
    assert recipes.SOURCES["glare"] is g and g.binary == "build/SDGC" and "sm_90" in g.build
    for name in g.patches:
        text = (recipes.PATCHES / name).read_text()
        targets = re.findall(r"^\+\+\+ b/(\S+)", text, flags=re.MULTILINE)
        assert targets and re.findall(r"^--- a/(\S+)", text, flags=re.MULTILINE) == targets  # edits only
        assert all(any(t.startswith(p + "/") for p in g.paths) for t in targets), targets


def test_methods_are_the_glare_modes_of_its_driver():
    got = recipes.methods(",".join(GLARE_KEYS))
    assert [m.mode for m in got] == [MODES[k] for k in GLARE_KEYS]
    for m in got:
        assert m.source is recipes.GLARE and m.inputs == "sdgc" and m.timer
        assert not m.exact  # skipped writes of 32 and sticky all-32 flags: exact only while saturation lasts
        assert m.mode in parsers._SDGC_TIMER


def test_invocation_passes_the_inputs_option(tmp_path):
    inv = runner.invocation(
        recipes.METHODS["glare-snicit"],
        Path("/bin/glare"),
        {"cwd": tmp_path / "bin"},
        16384,
        120,
        60000,
        tmp_path / "c.txt",
        4,
    )
    assert inv.argv == ["/bin/glare", "-m", "SNICIT_GLARE", "-n", "16384", "-l", "120", "-i", "60000"]
    assert inv.cwd == tmp_path / "bin" and inv.env["PEER_CATEGORIES"] == str(tmp_path / "c.txt")


# ----------------------------------------------------------------------------- patches on the pinned tree


@needs_mirror
def test_patches_apply_in_order_to_the_pinned_tree(patched):
    stamp = sources.stamp_of(recipes.GLARE, patched.parent.parent)
    assert stamp is not None and stamp["commit"] == recipes.GLARE.commit
    assert [p["file"] for p in stamp["patches"]] == list(recipes.GLARE.patches)


@needs_mirror
def test_cuda13_port_leaves_no_old_signature(patched, pristine):
    for rel in ("src/SDGC/SNIG_GLARE/SNIG_GLARE.hpp", "src/SDGC/SNIG/SNIG.hpp"):
        before, after = ((t / rel).read_text() for t in (pristine, patched))
        assert re.search(r"cudaMemPrefetchAsync\([^;]*, 0, NULL\)\);", before)  # the old form was there
        calls = re.findall(r"cudaMemPrefetchAsync\([^;]*\);", after)
        assert len(calls) == 6 and all("cudaMemLocation{cudaMemLocationTypeDevice, 0}, 0, NULL" in c for c in calls)
    for rel in ("src/SDGC/BF_GLARE/BF_GLARE.hpp", "src/SDGC/BF/BF.hpp"):
        advice = re.findall(r"cudaMemAdviseSetPreferredLocation,\s*([^\n]*)\n", (patched / rel).read_text())
        assert len(advice) == 3 and all(a.startswith("cudaMemLocation{") for a in advice)
    graph = (patched / "3rd-party/taskflow/cuda/cuda_graph.hpp").read_text()
    assert "cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &num_edges)" in graph
    assert "p.clockRate" not in (patched / "3rd-party/taskflow/cuda/cuda_device.hpp").read_text()
    assert "#include <thrust/reduce.h>" in (patched / "src/SDGC/utility.hpp").read_text()


@needs_mirror
def test_driver_patch_schedules_any_depth_and_counts_every_input(patched, pristine):
    for mode in ("XY_GLARE", "SNICIT_GLARE"):
        before, after = ((t / CLASS_FILES[mode]).read_text() for t in (pristine, patched))
        assert "filepathExists == false && _layer == 1920" in before  # else: reads a cache nobody wrote
        assert "_layer == 1920" not in after and "if (filepathExists == false) {" in after
        assert "offset < 60000" in before and "offset < num_inputs" in after and "offset < 60000" not in after
    main = (patched / "main/SDGC.cu").read_text()
    assert 'add_option("-i, --num_inputs", num_inputs' in main
    for call in (
        "bfglare.infer(input_path, golden_path, num_inputs);",
        "snigglare.infer(input_path, golden_path, num_inputs, num_inputs, 2);",
        "xyglare.infer(input_path, golden_path, num_inputs, input_batch_size);",
        "snicitglare.infer(input_path, golden_path, num_inputs, input_batch_size);",
    ):
        assert call in main
    utility = (patched / "src/SDGC/utility.hpp").read_text()
    assert "result(i, 1)" not in utility and "result(i, 0) = arr[i];" in utility  # N x 1 matrix


@needs_mirror
def test_every_glare_mode_writes_its_categories(patched):
    utility = (patched / "src/SDGC/utility.hpp").read_text()
    assert 'std::getenv("PEER_CATEGORIES")' in utility and "out << r + 1" in utility  # 1-based, one a line
    for mode, rel in CLASS_FILES.items():
        text = (patched / rel).read_text()
        assert text.count("write_categories(") == 1, mode
    for mode in ("XY_GLARE", "SNICIT_GLARE"):  # their compactions renumber rows: each row's input is tracked
        text = (patched / CLASS_FILES[mode]).read_text()
        assert "spdnn_orig[category[b]]" in text and "spdnn_next[feature] = spdnn_orig[k];" in text


@needs_mirror
def test_sample_output_uses_the_drivers_own_formats(pristine):
    # the sample below is written from these stream insertions; if the driver changes, so must it
    for mode, rel in CLASS_FILES.items():
        assert f'"{mode} info: runtime "' in (pristine / rel).read_text(), mode
    snicit = (pristine / CLASS_FILES["SNICIT_GLARE"]).read_text()
    for label in (
        "pre-conv Time [SNICIT_GLARE] = ",
        "post-conv Time [SNICIT_GLARE] = ",
        "recover Time [SNICIT_GLARE] = ",
    ):
        assert label in snicit
    assert '"\\nNumber of different categories: "' in (pristine / "src/SDGC/utility.hpp").read_text()


# ----------------------------------------------------------------------------- parser

# What the driver prints (main/SDGC.cu, the *_GLARE classes, utility.hpp's is_passed), its timers
# last: BF_GLARE and SNIG_GLARE `<< _duration / 1000.0 << " ms"`, XY_GLARE and SNICIT_GLARE
# `<< all_time << "ms" << " avgpost " << ... << "ms"`.
SAMPLE = {
    "BF_GLARE": (
        "num of secs: 1\nCurrent mode: BF_GLARE\nTotal input size : 60000\nPreprocessing...... \ninput alloc\n"
        " ms\nStart inference...... \nBF_GLARE info: runtime 498.25 ms\n\nNumber of different categories: 0\n"
        "CHALLENGE PASSED\n",
        0.49825,
    ),
    "SNIG_GLARE": (
        "num of secs: 1\nCurrent mode: SNIG_GLARE\nConstructing SNIG_GLARE method......\nTotal input size : 60000\n"
        "Start inference...... \nSNIG_GLARE info: runtime 242 ms\n\nNumber of different categories: 2\n"
        "CHALLENGE FAILED\n",
        0.242,
    ),
    "XY_GLARE": (
        "Current mode: XY_GLARE\nConstructing XY_GLARE method......\n[BEGIN for round 0]...\n"
        "==========[Champion XY_GLARE-2021]============ \nXY_GLARE info: runtime 14.9375ms avgpost 0.11ms\n"
        "[END for round 0]...\nCHALLENGE FAILED\n",
        0.0149375,
    ),
    "SNICIT_GLARE": (
        "Current mode: SNICIT_GLARE\n==========[SNICIT_GLARE]============ \n"
        "pre-conv Time [SNICIT_GLARE] = 3.5ms\ncluster-based conversion Time [overhead] = 0.25ms\n"
        "post-conv Time [SNICIT_GLARE] = 9ms\nrecover Time [SNICIT_GLARE] = 0.125ms\n"
        "SNICIT_GLARE info: runtime 1.2875e+01ms avgpost 0.1ms\n[END for round 0]...\nCHALLENGE PASSED\n",
        0.012875,
    ),
}


@pytest.mark.parametrize("mode", list(SAMPLE))
def test_parser_reads_each_modes_timer_and_verdict(mode):
    text, seconds = SAMPLE[mode]
    got = parsers.parse_sdgc(text, mode)
    assert got["complete"] and got["inference_seconds"] == pytest.approx(seconds)
    assert got["self_check"] == ("passed" if "CHALLENGE PASSED" in text else "failed")
    if mode == "SNIG_GLARE":
        assert got["self_check_differences"] == 2


def test_parser_reads_snicit_glare_phases():
    got = parsers.parse_sdgc(SAMPLE["SNICIT_GLARE"][0], "SNICIT_GLARE")
    assert got["pre_conv_seconds"] == pytest.approx(3.5e-3) and got["cluster_seconds"] == pytest.approx(2.5e-4)
    assert got["post_conv_seconds"] == pytest.approx(9e-3) and got["recover_seconds"] == pytest.approx(1.25e-4)


def test_a_mode_never_reads_anothers_timer():
    for mode, (text, _) in SAMPLE.items():
        base = mode.removesuffix("_GLARE")
        assert not parsers.parse_sdgc(text, base)["complete"]  # `^XY info` is not `XY_GLARE info`
        others = [m for m in SAMPLE if m != mode]
        assert not any(parsers.parse_sdgc(text, m)["complete"] for m in others)
    crashed = parsers.parse_sdgc("Current mode: XY_GLARE\nFile:n16384-l105.tsv does not exists.\n", "XY_GLARE")
    assert not crashed["complete"] and crashed["self_check"] == "none"


def test_run_once_with_a_stand_in_for_the_glare_driver(tmp_path):
    fake = tmp_path / "glare.sh"
    fake.write_text(
        "#!/bin/sh\nprintf '4\\n2\\n' > \"$PEER_CATEGORIES\"\n"
        "echo 'SNICIT_GLARE info: runtime 2.5ms avgpost 1ms'\necho 'CHALLENGE FAILED'\n"
    )
    fake.chmod(0o755)
    inv = runner.Invocation(
        [str(fake)], tmp_path, {"PEER_CATEGORIES": str(tmp_path / "c.txt"), "PATH": "/bin:/usr/bin"}
    )
    got = runner.run_once(recipes.METHODS["glare-snicit"], inv, np.array([1, 3]), timeout=30, log=lambda text: None)
    assert got["returncode"] == 0 and got["inference_seconds"] == pytest.approx(2.5e-3)
    assert got["categories"]["match"] and got["self_check"] == "failed"
