# Paths and config lookups shared by the rules; the layout follows the data flow.
# Only light modules of spdnn are imported while parsing (file names, config checks, counting
# GPUs without a CUDA context); the rules run the rest.
import json
import shlex
from pathlib import Path

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

from spdnn import challenge
from spdnn.config import DEFAULT_SEED, gpu_status
from spdnn.io.names import checksum_file, dag_cache, inputs_cache, weights_cache

SOURCE = config["data"]["source"]
RAW = f"{config['datadir']}/raw/{SOURCE}"
CACHE = f"{config['datadir']}/cache/{SOURCE}"
OUT = f"{config['outdir']}/{SOURCE}"
ENGINE = config["engine"]
SHARDS = config.get("shards", 1)
# Rules run the library from this checkout (REPO, the Snakefile's), whatever the environment
# (installed, conda, a cluster node). Quoted, so a checkout path with spaces or shell characters
# stays one path; braces doubled, since Snakemake formats the prefix like the commands.
_REPO_QUOTED = shlex.quote(REPO).replace("{", "{{").replace("}", "}}")
shell.prefix(f"export PYTHONPATH={_REPO_QUOTED}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
ENV = f"{workflow.basedir}/envs/spdnn.yaml"
GPU_ENV = f"{workflow.basedir}/envs/spdnn-gpu.yaml"  # the same with pycuda and nvcc
TABLE_CSV = f"{OUT}/table.csv"
TABLE_MD = f"{OUT}/table.md"
COMPARISON = f"{OUT}/published_comparison.csv"
PLOT = f"{OUT}/edges_per_second.png"
NETWORKS = config["networks"]
CLUSTER = workflow.non_local_exec or workflow.remote_exec  # jobs on cluster nodes, not this machine


def log_choice(message):
    """A line in the terminal (and Snakemake's log) about what the workflow chose, once per run."""
    if workflow.is_main_process:
        logger.info(f"spdnn: {message}")


def svg(png):
    """The SVG twin that spdnn.report writes beside every PNG plot (the report shows the SVG)."""
    return png[: -len(".png")] + ".svg"


def decide_gpu():
    """Whether the inference jobs run the GPU engine, decided once while parsing, so that the
    GPU-only steps (tune, model_check) and plots (roofline) exist only then."""
    if ENGINE == "cpu":
        return False
    if CLUSTER:  # this host (a login node) says nothing about the nodes' GPUs
        expected = ENGINE == "cuda" or isinstance(config.get("gpus", "all"), int)
        log_choice(
            f"engine {ENGINE} on a cluster: "
            + (
                "GPU steps planned (the jobs ask for GPUs)"
                if expected
                else "CPU steps planned: set gpus to a number to plan the GPU steps (the engine still picks at run time)"
            )
        )
        return expected
    usable, why = gpu_status(conda=DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method)
    if ENGINE == "cuda" and not usable:
        raise WorkflowError(
            f"engine cuda needs a usable GPU, and there is none: {why}. "
            "Use engine: auto (the CPU reference without a GPU) or engine: cpu."
        )
    log_choice(f"engine {ENGINE}: " + ("the CUDA engine" if usable else "the CPU reference engine") + f" ({why})")
    return usable


USE_GPU = decide_gpu()
# The cost model's tune step (opt-in, config `tune`): only where the GPU engine runs.
TUNE = bool(config.get("tune", False)) and USE_GPU
if config.get("tune", False) and not USE_GPU:
    log_choice("tune: on, but the CPU engine runs, and there is nothing to tune for it: no tune or model_check step")
elif USE_GPU and not TUNE:
    log_choice("tune: off, the GPU engine runs with its default options (set tune: true for the cost model's)")
INFER_ENV = GPU_ENV if USE_GPU else ENV


def truth_layers(net):
    return net.get("truth_layers", net["layers"])


def max_layers(neurons):
    """Layers to convert for N: the deepest configured network reuses the shallower ones' layers."""
    return max(net["layers"] for net in NETWORKS if net["neurons"] == int(neurons))


def truth_layers_for(neurons, layers):
    for net in NETWORKS:
        if net["neurons"] == int(neurons) and net["layers"] == int(layers):
            return truth_layers(net)
    raise ValueError(f"network N={neurons} L={layers} is not configured")


def fetch_url(relative):
    """URL of an official file: data.url (a mirror, file:// or folder) or the challenge's own site."""
    from spdnn.fetch import url_for

    return url_for(config["data"].get("url") or challenge.BASE_URL, relative)


def sha256_option(relative):
    """`--sha256 X` (a list: `:q` quotes each) when data.checksums gives one for this file; else nothing."""
    digest = config["data"].get("checksums", {}).get(relative)
    return ["--sha256", digest] if digest else []


def tuned_options_args(wildcards, input):
    """`--engine-options-file F` (a list: `:q` quotes each) when the tune step ran (config `tune`
    with the GPU engine), else nothing: the engine's defaults."""
    return ["--engine-options-file", input.tuned[0]] if input.tuned else []


def cache_files(n):
    """The weights cache (of the deepest configured L) and the inputs cache of network size N."""
    return f"{CACHE}/{weights_cache(n, max_layers(n))}", f"{CACHE}/{inputs_cache(n)}"


def infer_inputs(wildcards):
    """Cache files and truth file of network N, L (the weights cache holds the deepest configured L)."""
    n = int(wildcards.N)
    weights, inputs = cache_files(n)
    return {
        "weights": weights,
        "inputs": inputs,
        "truth": f"{RAW}/{challenge.truth_file(n, truth_layers_for(n, wildcards.L))}",
        # the checksum files: a damaged cache whose checksum file check_caches() removed is rebuilt
        "weights_checksum": checksum_file(weights),
        "inputs_checksum": checksum_file(inputs),
    }


def timed_inputs(rule):
    """Input function of a timed rule: infer_inputs, the config its results record (run_config)
    and, only with `tune: true` and the GPU engine, the cost model's tuned engine options."""

    def inputs(wildcards):
        tuned = [f"{OUT}/tuned/neuron{wildcards.N}-l{wildcards.L}.{GPU_SLUG}.json"] if TUNE else []
        return {**infer_inputs(wildcards), "run_config": f"{OUT}/run-config/{rule}.json", "tuned": tuned}

    return inputs


def gpu_count():
    """GPUs one inference job takes (for `resources: gpu`, so jobs never oversubscribe them)."""
    if not USE_GPU:
        return 0
    gpus = config.get("gpus", "all")
    if gpus != "all":
        return int(gpus)
    from spdnn.devices import visible_gpu_count

    return visible_gpu_count()


def check_caches():
    """A cache file that fails the quick check (no or wrong checksum file, wrong size, unreadable)
    is removed with every result made from it, so this run rebuilds them all."""
    caches, dependants = [], {}
    for n in sorted({net["neurons"] for net in NETWORKS}):
        made_from = [f"{OUT}/neuron{n}-l*/*", f"{OUT}/scaling/neuron{n}-l*/*", TABLE_CSV, TABLE_MD]
        for path in cache_files(n):
            caches.append(path)
            dependants[path] = made_from
    caches = [path for path in caches if Path(path).exists()]  # none yet: nothing to check or import
    if not caches:
        return
    from spdnn.stale import rebuild_damaged_caches  # reads the caches (pyarrow)

    for message in rebuild_damaged_caches(caches, dependants):
        logger.info(f"spdnn: {message}")


if workflow.is_main_process:  # not again in every cluster job's own parse of the workflow
    check_caches()


# A timed job has the machine to itself. Every job takes one unit of the `machine` resource and a
# timed job (infer, scaling_infer, dag_run) asks for WHOLE_MACHINE, which Snakemake lowers to
# all there is, so no other job of this workflow runs beside it (generate, convert or another
# timing would share cores, memory bandwidth and GPUs). The limit is far above any core count,
# so untimed jobs are limited by --cores as usual. On a cluster the SLURM profile scopes
# `machine` as local (--set-resource-scopes): jobs on different nodes do not wait for each
# other, and the table says those timings are not guaranteed to have had a node alone.
WHOLE_MACHINE = 1_000_000
TIMED_WHERE = "on a cluster node (which may run other jobs)" if CLUSTER else "with the machine to itself"
if "machine" not in workflow.global_resources:
    workflow.register_resource("machine", WHOLE_MACHINE)


def _value(resource):
    return getattr(resource, "value", resource)  # a Snakemake Resource or a plain number


def scheduling(rule):
    """How the timed jobs of `rule` are scheduled, recorded with their results (spdnn.report's
    `timed alone`): alone unless on a cluster or given less than the whole `machine` resource
    (--set-resources RULE:machine=N)."""
    whole = int(_value(workflow.global_resources["machine"]))
    override = _value(workflow.resource_settings.overwrite_resources.get(rule, {}).get("machine"))
    taken = min(whole, WHOLE_MACHINE if override is None else int(override))
    alone = not CLUSTER and taken >= whole
    why = (
        "no other job of this workflow ran beside it (it took the whole `machine` resource); "
        "programs outside the workflow are not excluded"
        if alone
        else (
            "cluster job: the node may have run other jobs"
            if CLUSTER
            else f"it took {taken} of {whole} `machine` units, so other jobs could run beside it"
        )
    )
    return {"timed_alone": alone, "why": why}


def recorded_config(wildcards):
    """The config a timed rule's results record (JSON): this run's config and its `scheduling`."""
    return json.dumps({**config, "scheduling": scheduling(wildcards.timed)}, sort_keys=True)


wildcard_constraints:
    N=r"\d+",
    L=r"\d+",
    shard=r"\d+",
    G=r"\d+",
