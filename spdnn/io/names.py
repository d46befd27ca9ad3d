"""The cache files' names: the one place that forms them (`spdnn run`, the workflow's rules).

Light on purpose (no pyarrow): the workflow calls these while it is parsed. A wildcard
string in place of a number (`weights_cache("{N}", "{L}")`) gives a rule's output pattern.
"""

from __future__ import annotations


def weights_cache(neurons: int | str, layers: int | str) -> str:
    """The weights cache of the first `layers` layers of the N-neuron network."""
    return f"neuron{neurons}-l{layers}.weights.arrow"


def inputs_cache(neurons: int | str) -> str:
    """The inputs cache of the N-neuron network (all its inputs)."""
    return f"sparse-images-{neurons}.arrow"


def checksum_file(path: str) -> str:
    """A cache file's checksum file (sha256 and size, `spdnn.io.checksum`): the path as given, plus a suffix."""
    return f"{path}.sha256"


def dag_cache(network: str) -> str:
    """The DAG cache of a network named by its files' prefix (`evolved-e10000`)."""
    return f"{network}.dag.arrow"
