# Paths and config lookups shared by the rules; the layout follows the data flow.
import json
import shlex
import sys
from pathlib import Path

from spdnn import challenge
from spdnn.config import DEFAULT_SEED

SOURCE = config["data"]["source"]
RAW = f"{config['datadir']}/raw/{SOURCE}"
CACHE = f"{config['datadir']}/cache/{SOURCE}"
OUT = f"{config['outdir']}/{SOURCE}"
ENGINE = config["engine"]
SHARDS = config.get("shards", 1)
# Rules run the library from this checkout, whatever the environment (installed, conda, a cluster node).
# Quoted, so a checkout path with spaces or shell characters stays one path; braces doubled,
# since Snakemake formats the prefix like the commands.
_BASEDIR = shlex.quote(workflow.basedir).replace("{", "{{").replace("}", "}}")
shell.prefix(f'export PYTHONPATH={_BASEDIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ')
ENV = f"{workflow.basedir}/envs/spdnn.yaml"
TABLE_CSV = f"{OUT}/table.csv"
TABLE_MD = f"{OUT}/table.md"
COMPARISON = f"{OUT}/published_comparison.csv"
PLOT = f"{OUT}/edges_per_second.png"
NETWORKS = config["networks"]


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
    """`--engine-options-file F` (a list: `:q` quotes each) when the tune step ran, else nothing."""
    return ["--engine-options-file", input.tuned[0]] if input.tuned else []


def infer_inputs(wildcards):
    """Cache files and truth file of network N, L (the weights cache holds the deepest configured L)."""
    n = int(wildcards.N)
    return {
        "weights": f"{CACHE}/neuron{n}-l{max_layers(n)}.weights.arrow",
        "inputs": f"{CACHE}/sparse-images-{n}.arrow",
        "truth": f"{RAW}/{challenge.truth_file(n, truth_layers_for(n, wildcards.L))}",
        # the checksum files: a damaged cache whose checksum file check_caches() removed is rebuilt
        "weights_checksum": f"{CACHE}/neuron{n}-l{max_layers(n)}.weights.arrow.sha256",
        "inputs_checksum": f"{CACHE}/sparse-images-{n}.arrow.sha256",
    }


def gpu_count():
    """GPUs one inference job takes (for `resources: gpu`, so jobs never oversubscribe them)."""
    if ENGINE == "cpu":
        return 0
    gpus = config.get("gpus", "all")
    if gpus != "all":
        return int(gpus)
    from spdnn.devices import visible_gpu_count

    return visible_gpu_count()


def check_caches():
    """A cache file that fails the quick check (no or wrong checksum file, wrong size, unreadable)
    is removed with every result made from it, so this run rebuilds them all."""
    from spdnn.stale import rebuild_damaged_caches

    caches, dependants = [], {}
    for n in sorted({net["neurons"] for net in NETWORKS}):
        made_from = [f"{OUT}/neuron{n}-l*/*", f"{OUT}/scaling/neuron{n}-l*/*", TABLE_CSV, TABLE_MD]
        for path in (f"{CACHE}/neuron{n}-l{max_layers(n)}.weights.arrow", f"{CACHE}/sparse-images-{n}.arrow"):
            caches.append(path)
            dependants[path] = made_from
    for message in rebuild_damaged_caches(caches, dependants):
        print(f"spdnn: {message}", file=sys.stderr)


if workflow.is_main_process:  # not again in every cluster job's own parse of the workflow
    check_caches()


# Timed inference jobs never overlap on one machine (they would share GPUs, cores and memory
# bandwidth and skew each other's timings): each takes the one `timing` slot. Cluster profiles
# raise the limit, since their jobs land on different nodes.
if "timing" not in workflow.global_resources:
    workflow.register_resource("timing", 1)


wildcard_constraints:
    N=r"\d+",
    L=r"\d+",
    shard=r"\d+",
    G=r"\d+",
