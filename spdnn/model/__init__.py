"""Analytical cost model and design-space exploration of sparse-DNN kernel dataflows.

In the spirit of MAESTRO (Kwon et al. 2018): a kernel written as data-centric directives over the
loop nest of a layer (nest.py parses spdnn/model/dataflows/*.m: SpatialMap/TemporalMap(size,
offset), Cluster, Stage, Fuse) -> one analysis of every nest (analysis.py): per tensor and memory
level the data volume, reuse (temporal, spatial multicast, reduction) and traffic -> time and energy
per layer and for the network (cost.py) on a described GPU (hardware.py) for a network's survival
profile (network.py, policy.py). explore.py evaluates millions of mappings at once (numpy),
hwdse.py millions of GPUs, tune.py turns the best the engine can run into cuda-engine options.
See docs/model.md.
"""

from .directives import Dataflow, parse_directives
from .hardware import Hardware, load_hardware, preset_for_gpu
from .nest import DirectiveError, load_nest, parse_nest
from .network import NetworkProfile

__all__ = [
    "Dataflow",
    "parse_directives",
    "Hardware",
    "load_hardware",
    "preset_for_gpu",
    "NetworkProfile",
    "DirectiveError",
    "load_nest",
    "parse_nest",
]
