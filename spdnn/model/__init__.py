"""Analytical cost model and design-space exploration of sparse-DNN kernel dataflows.

In the spirit of MAESTRO (Kwon et al. 2018): a dataflow written as directives over the loop
nest of one layer (directives.py) -> reuse of every operand and bytes moved per memory level
(cost.py) -> time and energy per layer and for the network, on a described GPU
(hardware.py) for a network's survival profile (network.py, policy.py). explore.py evaluates
millions of designs at once (numpy), tune.py turns the best into cuda-engine options.
See docs/model.md.
"""
from .directives import Dataflow, parse_directives
from .hardware import Hardware, load_hardware, preset_for_gpu
from .network import NetworkProfile

__all__ = ["Dataflow", "parse_directives", "Hardware", "load_hardware", "preset_for_gpu", "NetworkProfile"]
