"""The engine registry's one "auto" rule (spdnn.engines.registry.auto_engine), for the challenge
engines and the DAG engines: the GPU engine if it starts, else the CPU engine, said in the log;
each engine gets the options it has and the others are named in a warning."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from spdnn.engines import get_engine
from spdnn.engines.base import EngineUnavailable
from spdnn.engines.registry import auto_engine, constructor_options, engine_options, split_options

no_pycuda = pytest.mark.skipif(
    importlib.util.find_spec("pycuda") is not None, reason="pycuda present: this test is for machines without it"
)


def test_constructor_options_and_split():
    class Engine:
        def __init__(self, a: int = 1, b: int = 2, **ignored):
            pass

    assert constructor_options(Engine) == ["a", "b"]
    assert split_options({"b": 3, "z": 4, "a": 5}, ["a", "b"]) == ({"b": 3, "a": 5}, ["z"])
    assert set(engine_options("cpu")) <= set(engine_options("auto"))


def test_auto_gives_each_engine_its_options_and_names_the_rest(caplog):
    def gpu(**options):
        return ("gpu", options)

    def no_gpu(**options):
        raise EngineUnavailable("no GPU here")

    def cpu(**options):
        return ("cpu", options)

    options = {"threads": 2, "variant": "dedup", "workers": 3}
    with caplog.at_level(logging.WARNING, logger="spdnn.engines.registry"):
        assert auto_engine(gpu, ["variant"], cpu, ["threads", "workers"], options) == ("gpu", {"variant": "dedup"})
    assert "the CUDA engine has no option 'threads', 'workers', so they are dropped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spdnn.engines.registry"):
        chosen = auto_engine(no_gpu, ["variant"], cpu, ["threads", "workers"], options)
    assert chosen == ("cpu", {"threads": 2, "workers": 3})
    assert "using the CPU reference engine, because the CUDA engine is unavailable: no GPU here" in caplog.text
    assert (
        "the CPU reference engine has no option 'variant', so it is dropped (its options: threads, workers)"
        in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spdnn.engines.registry"):
        auto_engine(no_gpu, [], cpu, ["threads"], {"threads": 1})
    assert "dropped" not in caplog.text  # nothing dropped: nothing said about options


@no_pycuda
def test_auto_falls_back_to_cpu_keeping_every_cpu_option(caplog):
    with caplog.at_level(logging.WARNING, logger="spdnn.engines.registry"):
        engine = get_engine("auto", threads=2, workers=3, carry_saturated=False, variant="dedup", warps=4)
    assert engine.name == "cpu"
    assert (engine.threads, engine.workers, engine.carry_saturated) == (2, 3, False)
    assert "using the CPU reference engine, because the CUDA engine is unavailable" in caplog.text
    assert "has no option 'variant', 'warps', so they are dropped" in caplog.text


@no_pycuda
def test_dag_auto_uses_the_same_rule(caplog):
    from spdnn.dag.cpu import VectorisedEngine
    from spdnn.dag.registry import get_dag_engine

    with caplog.at_level(logging.WARNING, logger="spdnn.engines.registry"):
        engine = get_dag_engine("auto", free_values=False, max_columns=64)
    assert isinstance(engine, VectorisedEngine) and engine.free_values is False
    assert (
        "dag engine auto: using the vectorised CPU engine, because the cuda-lane engine is unavailable" in caplog.text
    )
    assert "has no option 'max_columns', so it is dropped" in caplog.text
    with pytest.raises(ValueError, match="unknown DAG engine"):
        get_dag_engine("nope")
