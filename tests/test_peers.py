"""The peers benchmark's CPU side: recipes and patches, input writers, output parsers, ratios.

No GPU and none of the peers' sources are needed: patches are checked for form and applied
to small trees made here; writers are checked against the official files of the sample.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from .conftest import ROOT, SAMPLE, benchmark_modules, have_executable

data, parsers, recipes, runner, sources, table, writers = benchmark_modules(
    "peers", "data", "parsers", "recipes", "runner", "sources", "table", "writers"
)

needs_git = pytest.mark.skipif(not have_executable("git"), reason="git is needed to apply patches")


# ----------------------------------------------------------------------------- recipes and patches


def test_methods_in_order_and_unknown_names_refused():
    assert [m.key for m in recipes.methods("xy,hidayetoglu")] == ["xy", "hidayetoglu"]
    with pytest.raises(ValueError, match="unknown peers"):
        recipes.methods("xy,cusparse")
    assert not recipes.METHODS["snicit"].exact and recipes.METHODS["xy"].exact


@pytest.mark.parametrize("source", list(recipes.SOURCES.values()), ids=lambda s: s.name)
def test_patches_are_relative_diffs_inside_the_exported_paths(source):
    assert re.fullmatch(r"[0-9a-f]{40}", source.commit)
    for name in source.patches:
        text = (recipes.PATCHES / name).read_text()
        targets = re.findall(r"^\+\+\+ b/(\S+)", text, flags=re.MULTILINE)
        assert targets, f"{name} changes nothing"
        assert re.findall(r"^--- a/(\S+)", text, flags=re.MULTILINE) == targets  # edits only, no new files
        for path in targets:
            assert not path.startswith("/") and ".." not in path.split("/")
            assert any(path == p or path.startswith(p.rstrip("/") + "/") for p in source.paths), path


def _make_patch(tmp: Path, rel: str, before: str, after: str) -> Path:
    a, b = tmp / "pa", tmp / "pb"
    for root, text in ((a, before), (b, after)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    diff = subprocess.run(["git", "diff", "--no-index", "pa", "pb"], cwd=tmp, capture_output=True, text=True).stdout
    patch = tmp / "fix.patch"
    patch.write_text(diff.replace("a/pa/", "a/").replace("b/pb/", "b/"))
    return patch


@needs_git
def test_patch_applies_inside_another_repository(tmp_path):
    # the peers folder lives inside the project's checkout: git must not treat it as part of it
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    tree = tmp_path / ".peers" / "src" / "peer"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "a.cpp").write_text("int x = 1;\nint y = 2;\n")
    patch = _make_patch(tmp_path / "mk", "src/a.cpp", "int x = 1;\nint y = 2;\n", "int x = 1;\nint y = 3;\n")
    sources.apply_patch(tree, patch)
    assert (tree / "src" / "a.cpp").read_text() == "int x = 1;\nint y = 3;\n"
    with pytest.raises(RuntimeError, match="does not apply"):
        sources.apply_patch(tree, patch)  # already applied: refused, never half-applied


@needs_git
def test_export_from_a_mirror_patches_once_and_redoes_when_a_patch_changes(tmp_path):
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "code" / "main.c").write_text("return 0;\n")
    (repo / "data.bin").write_text("not exported\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    patches = tmp_path / "patches"
    patches.mkdir()
    _make_patch(tmp_path / "mk", "code/main.c", "return 0;\n", "return 1;\n").rename(patches / "fix.patch")
    src = recipes.Source("toy", "owner/toy", commit, ("code",), ("fix.patch",), "true", "code/main.c", "MIT")
    root = tmp_path / "peers"
    tree = sources.export(src, root, mirror=repo, patches_dir=patches)
    assert (tree / "code" / "main.c").read_text() == "return 1;\n"
    assert not (tree / "data.bin").exists()
    stamp = json.loads((tree / sources.STAMP).read_text())
    assert stamp["commit"] == commit and stamp["patches"][0]["file"] == "fix.patch"
    sources.export(src, root, mirror=repo, patches_dir=patches)  # stamp matches: kept, not patched twice
    assert (tree / "code" / "main.c").read_text() == "return 1;\n"
    _make_patch(tmp_path / "mk2", "code/main.c", "return 0;\n", "return 2;\n").rename(patches / "fix.patch")
    sources.export(src, root, mirror=repo, patches_dir=patches)
    assert (tree / "code" / "main.c").read_text() == "return 2;\n"


# ----------------------------------------------------------------------------- writers


def _toy_layer(n: int = 64, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    cols = np.stack([rng.choice(n, 32, replace=False) for _ in range(n)])
    return sp.csr_matrix(
        (np.full(32 * n, 0.0625, np.float32), (np.repeat(np.arange(n), 32), cols.ravel())), shape=(n, n)
    )


def test_hidayetoglu_layer_is_output_major_and_round_trips():
    w = _toy_layer()
    blob = writers.hidayetoglu_layer_bytes(w)
    assert len(blob) == 12 * 32 * 64
    first = np.frombuffer(blob, "<i4", count=2 * 32 * 64)
    i, j = w.nonzero()
    order = np.lexsort((j, i))  # row-major: the TSV's line order
    assert np.array_equal(first[: 32 * 64], j[order] + 1)  # "row" = the TSV's second column
    assert np.array_equal(first[32 * 64 :], i[order] + 1)  # "col" = the TSV's first column
    back = writers.read_hidayetoglu_layer(blob, 64)
    assert (back != w).nnz == 0


def test_hidayetoglu_inputs_and_dataset_folder(tmp_path):
    x = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]], dtype=np.float32))
    blob = writers.hidayetoglu_inputs_bytes(x)
    arr = np.frombuffer(blob, "<i4", count=2 * 4)
    assert list(arr[:4]) == [2, 3, 1, 4] and list(arr[4:]) == [1, 1, 3, 3]  # neuron, then input
    assert list(np.frombuffer(blob, "<f4", offset=32)) == [1.0] * 4
    env = writers.write_hidayetoglu(
        tmp_path, [_toy_layer(), _toy_layer(seed=1)], sp.csr_matrix((5, 64), dtype=np.float32), np.array([3, 0]), 64, 2
    )
    assert env == {"NEURON": "64", "LAYER": "2", "BATCH": "5", "INPUT": "0"}
    assert (tmp_path / "neuron64.bin").stat().st_size == 2 * 12 * 32 * 64
    assert (tmp_path / "neuron64-l2-categories.tsv").read_text() == "1\n4\n"
    with pytest.raises(ValueError, match="3 needed"):
        writers.write_hidayetoglu(tmp_path / "b", [_toy_layer()], x, np.array([0]), 64, 3)


def test_sdgc_tsv_equals_the_official_files(tmp_path):
    # the real sample's layers and inputs, read with the project's converters and written back
    from spdnn.io.cache import convert_inputs, convert_weights, load_inputs, load_weights

    convert_weights(SAMPLE / "dnn/neuron1024.tar.gz", tmp_path / "w.arrow", 1024, 3, progress=False)
    convert_inputs(SAMPLE / "mnist/sparse-images-1024.tsv.gz", tmp_path / "x.arrow", 1024, 600, progress=False)
    weights = load_weights(tmp_path / "w.arrow")
    layers = [weights.layer(k) for k in range(3)]
    x = load_inputs(tmp_path / "x.arrow")
    paths = writers.write_sdgc(tmp_path / "net", layers, x, np.array([5, 2]), 1024, 3)
    with tarfile.open(SAMPLE / "dnn/neuron1024.tar.gz") as tar:
        for k in (1, 2, 3):
            official = tar.extractfile(f"neuron1024/n1024-l{k}.tsv").read()
            assert (paths["weights"] / f"n1024-l{k}.tsv").read_bytes() == official
    ours = paths["inputs"].read_text().splitlines()
    assert len(ours) == x.nnz and ours[0].split("\t")[2] == "1"
    assert sorted(ours) == sorted(ours)  # rows then columns, 1-based
    first = [tuple(map(int, line.split("\t")[:2])) for line in ours[:3]]
    i, j = x.nonzero()
    assert first == sorted(zip(i + 1, j + 1))[:3]
    assert paths["truth"].read_text() == "3\n6\n"
    assert paths["cwd"].is_dir() and paths["schedule"].is_dir()  # the driver's ../scheduled_bm must exist
    assert paths["cwd"].parent == tmp_path / "net"


def test_sdgc_refuses_inputs_that_are_not_ones(tmp_path):
    x = sp.csr_matrix(np.array([[0, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="0/1"):
        writers.write_sdgc(tmp_path, [sp.csr_matrix(np.eye(2, dtype=np.float32))], x, np.array([0]), 2, 1)


# ----------------------------------------------------------------------------- parsers

HIDAYETOGLU_OUT = """NUMBER OF THREADS: 16
proc 0 categories: 699
all categories: 699
CHALLENGE PASSED!

      I/O TIME: 1.234567 s
INFERENCE TIME: 0.008012 s
INFERENCE THRP: 2.944583e+13 EDGES/s (58.891660 TFLOPS)
--------------------------------------
KERNEL TIME: 4.712000e-03 s
  COPY TIME: 0.000000e+00 s
 OTHER TIME: 3.300000e-03 s
"""


def test_parse_hidayetoglu():
    got = parsers.parse_hidayetoglu(HIDAYETOGLU_OUT)
    assert got["inference_seconds"] == pytest.approx(0.008012)
    assert got["printed_edges_per_second"] == pytest.approx(2.944583e13)
    assert got["kernel_seconds"] == pytest.approx(4.712e-3) and got["io_seconds"] == pytest.approx(1.234567)
    assert got["categories_count"] == 699 and got["self_check"] == "passed" and got["complete"]
    crashed = parsers.parse_hidayetoglu("READING WEIGHTS\nfailed to open x/neuron1024.bin")
    assert not crashed["complete"] and crashed["self_check"] == "not passed"


@pytest.mark.parametrize(
    "mode,line,seconds",
    [
        ("XY", "XY info: runtime 14.93ms avgpost 0.11ms", 0.01493),
        ("SNICIT", "SNICIT info: runtime 1.2345e+03ms avgpost 0.5ms", 1.2345),
        ("BF", "BF info: runtime 498.2 ms", 0.4982),
        ("SNIG", "SNIG info: runtime 242 ms", 0.242),
    ],
)
def test_parse_sdgc_timer(mode, line, seconds):
    got = parsers.parse_sdgc(f"Current mode: {mode}\n{line}\nCHALLENGE FAILED\n", mode)
    assert got["inference_seconds"] == pytest.approx(seconds) and got["complete"]
    assert got["self_check"] == "failed"


def test_parse_sdgc_phases_differences_and_missing_timer():
    text = (
        "pre-conv Time [SNICIT] = 3.5ms\ncluster-based conversion Time [overhead] = 0.25ms\n"
        "post-conv Time [SNICIT] = 9ms\nrecover Time [SNICIT] = 0.125ms\n"
        "SNICIT info: runtime 12.875ms avgpost 0.1ms\nCHALLENGE PASSED\n"
    )
    got = parsers.parse_sdgc(text, "SNICIT")
    assert got["pre_conv_seconds"] == pytest.approx(3.5e-3) and got["recover_seconds"] == pytest.approx(1.25e-4)
    assert got["self_check"] == "passed"
    bf = parsers.parse_sdgc("\nNumber of different categories: 3\nCHALLENGE FAILED\n", "BF")
    assert bf["self_check_differences"] == 3 and not bf["complete"]
    with pytest.raises(ValueError):
        parsers.parse_sdgc("", "GLARE")


def test_categories_read_and_compared(tmp_path):
    path = tmp_path / "cats.txt"
    assert parsers.read_categories(path) is None
    path.write_text("5\n2\n9\n")
    found = parsers.read_categories(path)
    assert list(found) == [1, 4, 8]
    assert parsers.compare_categories(found, np.array([8, 1, 4]))["match"]
    wrong = parsers.compare_categories(found, np.array([1, 4, 7]))
    assert not wrong["match"] and wrong["missing"] == 1 and wrong["extra"] == 1
    dup = parsers.compare_categories(np.array([1, 1, 4, 8]), np.array([1, 4, 8]))
    assert not dup["match"] and dup["duplicates"] == 1
    assert parsers.compare_categories(None, np.array([1]))["match"] is False


# ----------------------------------------------------------------------------- data, runs and the table


def test_network_specs():
    assert data.parse_spec("1024x120") == (False, 1024, 120)
    assert data.parse_spec("real-1024x120") == (True, 1024, 120)
    for bad in ("1024", "1000x120", "real1024x120"):
        with pytest.raises(ValueError):
            data.parse_spec(bad)


def test_synthetic_truth_is_the_reference_and_a_stored_one_is_used_only_when_the_digest_matches(tmp_path):
    from spdnn import challenge
    from spdnn.engines.cpu import CpuEngine
    from spdnn.io.cache import Weights

    net = data.synthetic(64, 12, 200, seed=3, truth_dir=tmp_path)
    assert "computed in this run" in net.truth_source
    eng = CpuEngine()
    eng.prepare(Weights.from_matrices(net.layers), 12)
    assert np.array_equal(eng.infer(net.inputs).categories, net.truth)
    assert net.edges == challenge.edges(200, 64, 12)
    stored = data.save_truth(net, tmp_path, seed=3, note="test")
    again = data.synthetic(64, 12, 200, seed=3, truth_dir=tmp_path)
    assert "computed earlier" in again.truth_source and np.array_equal(again.truth, net.truth)
    record = json.loads(stored.read_text())
    record["digest"] = "0" * 64  # other data under the same name: not trusted
    record["categories"] = [0]
    stored.write_text(json.dumps(record))
    third = data.synthetic(64, 12, 200, seed=3, truth_dir=tmp_path)
    assert np.array_equal(third.truth, net.truth) and third.extra["truth_file_mismatch"]
    changed = [net.layers[0].copy(), *net.layers[1:]]
    changed[0].data[0] = 0.5
    assert data.digest(changed, net.inputs) != net.extra["digest"]


def test_dropped_layers_write_the_same_peer_files(tmp_path):
    # bench_peers frees a large network's layers after the engines ran; the peers' files are then
    # written from the layers generated again, and must be byte for byte those of the kept layers
    net = data.synthetic(64, 6, 50, seed=5, truth_dir=None)
    kept = writers.write_sdgc(tmp_path / "kept", net.layer_source(), net.inputs, net.truth, 64, 6)
    writers.write_hidayetoglu(tmp_path / "kept-h", net.layer_source(), net.inputs, net.truth, 64, 6)
    assert net.drop_layers() and net.layers == [] and not net.drop_layers()
    again = writers.write_sdgc(tmp_path / "again", net.layer_source(), net.inputs, net.truth, 64, 6)
    writers.write_hidayetoglu(tmp_path / "again-h", net.layer_source(), net.inputs, net.truth, 64, 6)
    for k in range(1, 7):
        name = f"n64-l{k}.tsv"
        assert (kept["weights"] / name).read_bytes() == (again["weights"] / name).read_bytes()
    assert (tmp_path / "kept-h/neuron64.bin").read_bytes() == (tmp_path / "again-h/neuron64.bin").read_bytes()
    real_like = data.Network("x", "y", 64, 6, list(net.fresh_layers()), net.inputs)
    assert not real_like.drop_layers() and len(real_like.layers) == 6  # nothing to make them again from


def test_kept_files_are_reused_only_for_the_same_complete_data(tmp_path):
    net = data.synthetic(64, 6, 50, seed=5, truth_dir=None)
    digest = net.extra["digest"]
    h = {"folder": tmp_path / "hidayetoglu"}
    h["env"] = writers.write_hidayetoglu(h["folder"], net.layer_source(), net.inputs, net.truth, 64, 6)
    sdgc = writers.write_sdgc(tmp_path / "sdgc", net.layer_source(), net.inputs, net.truth, 64, 6)
    assert writers.kept_files(tmp_path / "sdgc", digest) is None  # not marked: maybe half written
    writers.mark_files(h["folder"], digest, h | {"write_seconds": 1.0})
    writers.mark_files(tmp_path / "sdgc", digest, sdgc)
    assert writers.kept_files(h["folder"], digest) == h
    assert writers.kept_files(tmp_path / "sdgc", digest) == sdgc
    assert writers.kept_files(h["folder"], "0" * 64) is None  # other data
    assert writers.kept_files(h["folder"], None) is None


def test_invocations(tmp_path):
    hid = runner.invocation(
        recipes.METHODS["hidayetoglu"],
        Path("/bin/hid"),
        {"folder": tmp_path, "env": {"NEURON": "1024", "LAYER": "120", "BATCH": "600", "INPUT": "7"}},
        1024,
        120,
        600,
        tmp_path / "c.txt",
        4,
    )
    assert hid.argv == ["/bin/hid"] and hid.cwd == tmp_path
    assert hid.env["DATASET"] == str(tmp_path) and hid.env["BIAS"] == "-0.3" and hid.env["BATCH"] == "600"
    assert hid.env["PEER_CATEGORIES"] == str(tmp_path / "c.txt") and hid.env["OMP_NUM_THREADS"] == "4"
    xy = runner.invocation(
        recipes.METHODS["xy"], Path("/bin/sdgc"), {"cwd": tmp_path / "bin"}, 4096, 480, 60000, tmp_path / "c.txt", 4
    )
    assert xy.argv == ["/bin/sdgc", "-m", "XY", "-n", "4096", "-l", "480", "-i", "60000"]
    assert xy.cwd == tmp_path / "bin"


def test_run_once_reads_timer_and_categories_of_a_stand_in_program(tmp_path):
    # a shell script standing in for a peer: prints its timer, writes categories where asked
    fake = tmp_path / "peer.sh"
    fake.write_text("#!/bin/sh\nprintf '3\\n1\\n' > \"$PEER_CATEGORIES\"\necho 'XY info: runtime 2.5ms avgpost 1ms'\n")
    fake.chmod(0o755)
    inv = runner.Invocation(
        [str(fake)], tmp_path, {"PEER_CATEGORIES": str(tmp_path / "c.txt"), "PATH": "/bin:/usr/bin"}
    )
    got = runner.run_once(recipes.METHODS["xy"], inv, np.array([0, 2]), timeout=30, log=lambda text: None)
    assert got["returncode"] == 0 and got["inference_seconds"] == pytest.approx(2.5e-3)
    assert got["categories"]["match"]
    fake.write_text("#!/bin/sh\nsleep 5\n")
    slow = runner.run_once(recipes.METHODS["xy"], inv, np.array([0, 2]), timeout=0.5, log=lambda text: None)
    assert slow["timed_out"] and not slow["complete"] and not slow["categories"]["match"]
    missing = runner.Invocation([str(tmp_path / "no-such-peer")], tmp_path, inv.env)
    failed = runner.run_once(recipes.METHODS["xy"], missing, np.array([0, 2]), timeout=30, log=lambda text: None)
    assert failed["returncode"] is None and not failed["timed_out"] and not failed["categories"]["match"]
    assert "could not start" in failed["error_tail"] and "no-such-peer" in failed["error_tail"]


def _net(results: dict) -> dict:
    return {
        "name": "1024x120",
        "source": "synthetic",
        "inputs": 60000,
        "edges": 2.359e11,
        "truth": {"count": 699, "source": "cpu"},
        "results": results,
    }


def test_ratios_use_the_best_exact_peer_with_correct_categories():
    net = _net(
        {
            "spdnn-default": {
                "kind": "spdnn",
                "exact": True,
                "seconds": 1e-3,
                "edges_per_second": 200e12,
                "categories_ok": True,
            },
            "hidayetoglu": {
                "kind": "peer",
                "exact": True,
                "seconds": 8e-3,
                "edges_per_second": 25e12,
                "categories_ok": True,
            },
            "xy": {
                "kind": "peer",
                "exact": True,
                "seconds": 4e-3,
                "edges_per_second": 50e12,
                "categories_ok": False,
                "categories": {"match": False, "extra": 2, "missing": 0},
            },
            "snicit": {
                "kind": "peer",
                "exact": False,
                "seconds": 2e-3,
                "edges_per_second": 100e12,
                "categories_ok": True,
            },
            "bf": {"kind": "peer", "exact": True, "status": "failed: timed out"},
        }
    )
    rows = {r["key"]: r for r in table.summarise(net)}
    assert net["best_exact_peer"] == "hidayetoglu"  # XY is faster but wrong; SNICIT is not exact
    assert rows["spdnn-default"]["vs_best_exact_peer"] == pytest.approx(8.0)
    assert rows["spdnn-default"]["vs_snicit"] == pytest.approx(2.0)
    assert rows["bf"]["vs_best_exact_peer"] is None
    text = table.markdown({"networks": [net], "not_run": [{"network": "65536x1920", "reason": "did not fit"}]})
    assert "| spdnn-default | yes | match | 1.00 | 200.00 | 8.00 | 2.00 |" in text
    assert (
        "| xy | yes | WRONG: 2 extra, 0 missing |" in text
        and "failed: timed out" in text
        and "65536x1920: did not fit" in text
    )


def test_a_frozen_generator_copy_makes_the_same_networks(tmp_path):
    import shutil

    import spdnn.generate

    frozen = tmp_path / "generate.py"
    shutil.copy(spdnn.generate.__file__, frozen)
    gen = data.load_generator(frozen)
    assert gen is not spdnn.generate and gen.__package__ == "spdnn"
    a = data.synthetic(64, 8, 40, seed=2, truth_dir=None, compute_truth=False, generator=gen)
    b = data.synthetic(64, 8, 40, seed=2, truth_dir=None, compute_truth=False)
    assert a.extra["digest"] == b.extra["digest"]


def test_a_partial_schedule_cache_is_emptied(tmp_path):
    cache = tmp_path / "scheduled_bm"
    (cache / "neuron16384").mkdir(parents=True)
    (cache / "neuron16384" / "n16384-weight-l0.tsv").write_text("0.0625\n")
    runner.reset_schedule(cache)
    assert cache.is_dir() and not any(cache.iterdir())


# ----------------------------------------------------------------------------- CPU peers


def test_graphblas_peer_finds_the_references_categories():
    """SuiteSparse:GraphBLAS as LAGraph's dnn does it (skipped without python-graphblas, which
    CI does not install): the same categories as the CPU reference on a generated network."""
    pytest.importorskip("graphblas")
    from peers import graphblas

    from spdnn.engines.cpu import reference
    from spdnn.generate import generate_inputs, generate_layers

    layers = list(generate_layers(256, 30, seed=4))
    inputs = generate_inputs(256, 800, seed=4)
    found, seconds = graphblas.infer(layers, inputs, -0.3)
    expect = reference(lambda: layers, -0.3, inputs).alive[30]
    assert seconds > 0 and len(expect) > 0
    np.testing.assert_array_equal(found, expect)
    assert set(graphblas.versions()) == {"python-graphblas", "suitesparse-graphblas"}


def test_peers_csv_keeps_the_newest_run_by_its_timestamp_not_its_file_name(tmp_path):
    """run10 is newer than run9 although its name sorts first; the CSV row is run10's."""
    import sys

    def record(name: str, when: str, seconds: float) -> Path:
        path = tmp_path / name
        result = {"label": "spdnn default", "exact": True, "categories_ok": True, "seconds": seconds}
        result["edges_per_second"] = 1e12 / seconds
        net = {"name": "1024x120", "inputs": 60000, "results": {"spdnn-default": result}}
        path.write_text(json.dumps({"date": when, "gpu": {"gpus": [{"name": "G"}]}, "networks": [net]}))
        return path

    older = record("peers-run9.json", "2026-12-02T10:00:00+00:00", 2.0)
    newer = record("peers-run10.json", "2026-12-02T11:00:00+00:00", 1.0)
    out = tmp_path / "peers.csv"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "peers_csv.py"
    subprocess.run([sys.executable, str(script), str(older), str(newer), "-o", str(out)], check=True)
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[1].endswith("peers-run10.json") and ",1," in rows[1]
    subprocess.run([sys.executable, str(script), str(newer), str(older), "-o", str(out)], check=True)
    assert out.read_text().splitlines()[1].endswith("peers-run10.json")  # whatever the order given


def test_engines_are_built_several_times_and_the_median_of_their_medians_is_reported(monkeypatch):
    """bench_peers --instances: each configuration built N times, each instance timed; the figure
    is the median of the instances' medians, their spread is recorded, and one instance with wrong
    categories makes the configuration's categories wrong."""
    import importlib.util
    import types

    import spdnn.engines.cuda as cuda_mod

    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "benchmarks" / "bench_peers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    truth = np.array([0, 2])
    # per instance: its timed runs' seconds and the categories it finds
    plan = iter([([1.0, 1.2, 1.1], truth), ([2.0, 2.0, 2.0], truth), ([1.5, 1.4, 1.6], truth)])
    built = []

    class FakeEngine:
        def __init__(self, **options):
            self.secs, self.cats = next(plan)
            self.calls = 0
            built.append(options)

        def prepare(self, weights, layers):
            pass

        def infer(self, x, return_values=False):
            # the first call is the warm-up
            s = 0.001 if self.calls == 0 else self.secs[(self.calls - 1) % 3]
            self.calls += 1
            return types.SimpleNamespace(seconds=s, categories=self.cats, details={"calls": self.calls})

        def release(self):
            pass

    monkeypatch.setattr(cuda_mod, "CudaEngine", FakeEngine)
    layer = sp.csr_matrix(np.full((32, 32), 1 / 16, np.float32))  # 32 nonzeros a row, as the cache needs
    net = data.Network("32x1", "test", 32, 1, [layer], sp.csr_matrix(np.ones((3, 32), np.float32)), truth=truth)
    got = bench.run_engines(net, ["default"], reps=3, budget=30.0, instances=3)["spdnn-default"]
    assert len(built) == 3 and got["instances"] == 3
    assert got["instance_seconds"] == [1.1, 2.0, 1.5] and got["seconds"] == 1.5
    assert got["instance_spread"] == pytest.approx(2.0 / 1.1) and len(got["seconds_all"]) == 9
    assert got["categories_ok"]
    plan = iter([([1.0] * 3, truth), ([1.0] * 3, np.array([0, 1]))])
    got = bench.run_engines(net, ["default"], reps=3, budget=30.0, instances=2)["spdnn-default"]
    assert not got["categories_ok"] and not got["categories"]["match"]
