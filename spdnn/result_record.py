"""The per-network result record: what `spdnn infer` (spdnn.infer) writes as JSON and the
merge steps, the report and the scaling table read back.

One typed record instead of ~25 keys read by string. `to_json` writes the keys the result files
have always had, in the same order; `from_json` reads those files (and the older or partial
ones the report meets: every field but the network has a default) and keeps any key it does not
know in `extra`, written back as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io.atomic import atomic_path

__all__ = ["NetworkInfo", "Part", "ResultRecord", "ShardSpan", "read_record", "write_record"]


@dataclass
class NetworkInfo:
    """The network a result is for: N, L, its bias and where its data came from."""

    neurons: int
    layers: int
    bias: Any = None
    source: str = ""

    def to_json(self) -> dict:
        return {"neurons": self.neurons, "layers": self.layers, "bias": self.bias, "source": self.source}

    @classmethod
    def from_json(cls, data: dict) -> NetworkInfo:
        try:
            return cls(
                neurons=data["neurons"], layers=data["layers"], bias=data.get("bias"), source=data.get("source", "")
            )
        except (KeyError, TypeError):
            raise ValueError(f"a result record's network needs neurons and layers, not {data!r}") from None


@dataclass
class ShardSpan:
    """Slice `index` of `count` of the input rows: rows [first_row, end_row)."""

    index: int = 0
    count: int = 1
    first_row: int = 0
    end_row: int = 0

    def to_json(self) -> dict:
        return {"index": self.index, "count": self.count, "first_row": self.first_row, "end_row": self.end_row}

    @classmethod
    def from_json(cls, data: dict) -> ShardSpan:
        return cls(**{k: data[k] for k in ("index", "count", "first_row", "end_row") if k in data})


@dataclass
class Part:
    """One slice of a combined result (a GPU of a node, or a shard run on its own node)."""

    shard: ShardSpan
    device: str
    inference_seconds: float
    edges_per_second: float
    host: str | None = None
    slurm_job_id: str | None = None

    def to_json(self) -> dict:
        return {
            "shard": self.shard.to_json(),
            "device": self.device,
            "inference_seconds": self.inference_seconds,
            "edges_per_second": self.edges_per_second,
            "host": self.host,
            "slurm_job_id": self.slurm_job_id,
        }

    @classmethod
    def from_json(cls, data: dict) -> Part:
        return cls(
            shard=ShardSpan.from_json(data.get("shard", {})),
            device=data.get("device", ""),
            inference_seconds=data.get("inference_seconds", 0.0),
            edges_per_second=data.get("edges_per_second", 0.0),
            host=data.get("host"),
            slurm_job_id=data.get("slurm_job_id"),
        )


@dataclass
class ResultRecord:
    """One validated result: a network (or a slice of its inputs) run by one engine.

    inference_seconds: the median of the timed repeats (for a combined result: the slowest
    slice's); inference_seconds_all: every repeat (combined: each slice's median). parts and
    shards are set on combined results only (over GPUs: parts; merged shard files: both).
    path: the file it was read from (not written; the report uses it to find shard files).
    """

    network: NetworkInfo
    inputs: int = 0
    shard: ShardSpan | None = None
    edges: int = 0
    engine_requested: str = ""
    engine: str = ""
    device: str = ""
    repeats: int = 0
    inference_seconds: float = 0.0
    inference_seconds_all: list[float] = field(default_factory=list)
    load_seconds: float = 0.0
    prepare_seconds: float = 0.0
    end_to_end_seconds: float = 0.0
    edges_per_second: float = 0.0
    active_rows: list[int] = field(default_factory=list)
    categories: int = 0
    validation: str = ""
    gpus: int = 0
    engine_details: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    parts: list[Part] | None = None
    shards: int | None = None
    extra: dict = field(default_factory=dict)
    path: str | None = None

    _KEYS = (
        "network",
        "inputs",
        "shard",
        "edges",
        "engine_requested",
        "engine",
        "device",
        "repeats",
        "inference_seconds",
        "inference_seconds_all",
        "load_seconds",
        "prepare_seconds",
        "end_to_end_seconds",
        "edges_per_second",
        "active_rows",
        "categories",
        "validation",
        "gpus",
        "engine_details",
        "provenance",
        "config",
        "parts",
        "shards",
    )

    @property
    def span(self) -> ShardSpan:
        """The input rows it covers (the whole `inputs` when the file names no shard)."""
        return self.shard if self.shard is not None else ShardSpan(0, 1, 0, self.inputs)

    @property
    def shard_count(self) -> int:
        """Shards merged into it (merged results), else its shard's count (1 without one)."""
        return self.shards if self.shards is not None else self.span.count

    def label(self) -> str:
        return f"neuron{self.network.neurons}-l{self.network.layers}"

    def to_json(self) -> dict:
        """The result file's JSON object (the keys written since the first version, in order)."""
        out: dict = {"network": self.network.to_json(), "inputs": self.inputs}
        if self.shard is not None:
            out["shard"] = self.shard.to_json()
        out.update({key: getattr(self, key) for key in self._KEYS[3:21]})
        if self.parts is not None:
            out["parts"] = [p.to_json() for p in self.parts]
        if self.shards is not None:
            out["shards"] = self.shards
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict, path: str | Path | None = None) -> ResultRecord:
        """Read a result file's object; unknown keys go to `extra`, `_path` (the report's) to `path`."""
        known = {k: data[k] for k in cls._KEYS if k in data}
        known["network"] = NetworkInfo.from_json(data.get("network") or {})
        if "shard" in known:
            known["shard"] = ShardSpan.from_json(known["shard"] or {})
        if known.get("parts") is not None:
            known["parts"] = [Part.from_json(p) for p in known["parts"]]
        for key in ("config", "provenance", "engine_details"):
            if key in known and known[key] is None:
                known[key] = {}
        extra = {k: v for k, v in data.items() if k not in cls._KEYS and k != "_path"}
        path = path if path is not None else data.get("_path")
        return cls(**known, extra=extra, path=str(path) if path is not None else None)


def write_record(path: str | Path, record: ResultRecord | dict) -> None:
    """Write a result file (atomically: a reader never sees half of one)."""
    data = record.to_json() if isinstance(record, ResultRecord) else record
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def read_record(path: str | Path) -> ResultRecord:
    """Read a result file."""
    return ResultRecord.from_json(json.loads(Path(path).read_text()), path=path)
