"""The field's record holders, run on the same GPU and the same data as spdnn's engines.

One recipe per peer (recipes.py): its public repository at a pinned commit, the smallest
fixes it needs as patch files kept here (patches/, our own diffs: the peers' code is never
in this repository), its build, a writer of its input files (writers.py) and a parser of
its own timer and category count (parsers.py). sources.py fetches, patches and builds;
benchmarks/bench_peers.py runs everything in one process tree; table.py writes docs/peers.md.
"""
