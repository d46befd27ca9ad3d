# Paths and config lookups shared by the rules; the layout follows the data flow.
import json
import sys
from pathlib import Path

from spdnn import challenge

SOURCE = config["data"]["source"]
RAW = f"{config['datadir']}/raw/{SOURCE}"
CACHE = f"{config['datadir']}/cache/{SOURCE}"
OUT = f"{config['outdir']}/{SOURCE}"
ENGINE = config["engine"]
SHARDS = config.get("shards", 1)
# Rules run the library from this checkout, whatever the environment (installed, conda, a cluster node).
shell.prefix(f"export PYTHONPATH={workflow.basedir}:$PYTHONPATH; ")
ENV = f"{workflow.basedir}/envs/spdnn.yaml"
TABLE_CSV = f"{OUT}/table.csv"
TABLE_MD = f"{OUT}/table.md"
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
    loses its checksum file, an output of its convert rule, so this run rebuilds it."""
    from spdnn.io.cache import cache_problem, checksum_path

    for n in sorted({net["neurons"] for net in NETWORKS}):
        for path in (f"{CACHE}/neuron{n}-l{max_layers(n)}.weights.arrow", f"{CACHE}/sparse-images-{n}.arrow"):
            if Path(path).exists():
                problem = cache_problem(path, full=False)
                if problem is not None:
                    print(f"spdnn: cache file {path} is damaged ({problem}); it will be rebuilt", file=sys.stderr)
                    checksum_path(path).unlink(missing_ok=True)


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
