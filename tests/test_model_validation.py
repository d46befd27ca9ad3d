"""The validation scripts end to end on the CPU (a stand-in engine): freeze, measure, analyse, and
the tuned engine against its defaults; an analysis refuses a model changed after freezing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from spdnn.model.hardware import CALIBRATION

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("validate_model", ROOT / "benchmarks" / "validate_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_freeze_measure_analyse(script, tmp_path):
    small = [
        "--cal",
        "1024x30",
        "--networks",
        "4096",
        "--seen",
        "1024",
        "--layers",
        "24",
        "--inputs",
        "600",
        "--pool",
        "600",
        "--reps",
        "2",
        "--tvd-networks",
        "1024x24",
        "--results",
        str(tmp_path),
        "--cal-grid",
        "4x4",
    ]
    freeze = tmp_path / "freeze.json"
    assert script.main(["--freeze", str(freeze)] + small) == 0
    frozen = json.loads(freeze.read_text())
    assert set(frozen["tuned"]) == {"1024x24"} and frozen["tuned"]["1024x24"]["measured"]
    assert script.main(["--fake", "--out", str(tmp_path), "--val-instances", "2"] + small) == 0
    raw = json.loads((tmp_path / "model-validation-raw.json").read_text())
    # two engines of each kernel group: every configuration's figure is the median of their medians
    runs = [r for n in raw["networks"] for r in n["runs"] if "seconds" in r]
    assert runs and all(len(r["instance_seconds"]) == 2 for r in runs)
    assert all(r["seconds"] == pytest.approx(sum(r["instance_seconds"]) / 2) for r in runs)
    assert all(len(r["seconds_all"]) == 2 * 2 for r in runs) and raw["config"]["val_instances"] == 2
    roles = {(n["role"], n["neurons"], n["seed"], n["held_out"]) for n in raw["networks"]}
    assert roles == {
        ("calibration", 1024, 2, ""),
        ("validation", 4096, 3, "N and seed"),
        ("validation", 1024, 3, "seed"),
    }
    packaged = CALIBRATION.read_bytes()
    assert (
        script.main(
            [
                "--analyse",
                str(tmp_path / "model-validation-raw.json"),
                "--freeze-file",
                str(freeze),
                "--write-calibration",
            ]
            + small
        )
        == 0
    )
    assert CALIBRATION.read_bytes() == packaged  # the package is only read
    written = json.loads((tmp_path / "calibration.json").read_text())  # --results' folder by default
    assert set(written) >= set(json.loads(packaged))
    res = json.loads((tmp_path / "model-validation-fake.json").read_text())
    assert written[res["calibration"]["preset"]] == res["calibration"]
    assert res["model"] == "frozen (fingerprints match)"
    assert res["statistics_held_out_n"]["points"] > 0 and res["statistics_held_out_seed_only"]["points"] > 0
    net = res["statistics"]["per_network"]["N=4096 L=24 seed=3"]
    assert {"spearman", "median_signed_error", "first_choice_gap", "targets_met"} <= set(net)
    assert all("dataflow_measured_before" in p for p in res["points"])
    # the engine carried saturated rows: their counts came from the CPU reference (checked against
    # the measured active rows), and the model predicts the runs with carry on and off
    carried = [p for p in res["points"] if p["config"].get("carry_saturated", True)]
    plain = [p for p in res["points"] if not p["config"].get("carry_saturated", True)]
    assert carried and plain
    assert any(p["carried_predicted"] > 0 for p in carried)  # (none where no check point follows saturation)
    assert all(p["carried_predicted"] == 0 for p in plain)
    assert (
        script.main(["--fake", "--out", str(tmp_path), "--tune-vs-default", "--freeze-file", str(freeze)] + small) == 0
    )
    assert (
        script.main(["--analyse-tune", str(tmp_path / "model-tune-raw.json"), "--freeze-file", str(freeze)] + small)
        == 0
    )
    tv = json.loads((tmp_path / "model-tune-vs-default-fake.json").read_text())
    assert tv["networks"][0]["speedup"] > 0 and tv["networks"][0]["tuned_measured_before"]
    # three engines of each option set (--instances' default), alternating which is built first
    tune_raw = json.loads((tmp_path / "model-tune-raw.json").read_text())
    turns = [(r["instance"], r["which"]) for r in tune_raw["networks"][0]["runs"]]
    assert turns == [(0, "default"), (0, "tuned"), (1, "tuned"), (1, "default"), (2, "default"), (2, "tuned")]
    assert tv["networks"][0]["instances"] == {"default": 3, "tuned": 3}
    # a model changed after freezing is refused
    frozen["fingerprint"] = "0" * 64
    freeze.write_text(json.dumps(frozen))
    with pytest.raises(ValueError, match="changed since it was frozen"):
        script.main(["--analyse-tune", str(tmp_path / "model-tune-raw.json"), "--freeze-file", str(freeze)] + small)


def test_calibration_is_written_where_asked_never_into_the_package(script, tmp_path):
    from spdnn.model.validation import write_calibration

    packaged = CALIBRATION.read_bytes()
    src = next(k for k, v in json.loads(packaged).items() if "transferred_from" not in v)
    out = tmp_path / "cal" / "calibration.json"
    assert script.main(["--transfer-calibration", f"{src}:v100", "--calibration-out", str(out)]) == 0
    assert CALIBRATION.read_bytes() == packaged
    data = json.loads(out.read_text())
    assert data["v100"]["transferred_from"] == src and data["v100"]["constants"] == data[src]["constants"]
    with pytest.raises(ValueError, match="read only"):
        write_calibration(CALIBRATION, "v100", data["v100"])
    assert CALIBRATION.read_bytes() == packaged


def test_saturated_rows_of_a_measured_network():
    """A network whose engine carried rows gets the CPU reference's saturated counts (its inputs:
    the pool repeated); measured active rows other than the reference's are refused; an engine
    that carried nothing gets none."""
    from spdnn.challenge import bias
    from spdnn.generate import generate_inputs, generate_layers
    from spdnn.model.network import survival
    from spdnn.model.validation import saturated_rows

    act, sat = survival(generate_layers(1024, 24, 5), bias(1024), generate_inputs(1024, 100, 5))
    net = {
        "neurons": 1024,
        "layers": 24,
        "seed": 5,
        "inputs": 300,
        "pool": 100,
        "active_rows": {"merged": (act * 3).tolist()},
        "runs": [{"seconds": 1.0, "details": {"carry_from": 0}}],
    }
    assert saturated_rows(net, {}) == (sat * 3).tolist()
    assert saturated_rows(dict(net, runs=[{"seconds": 1.0, "details": {"carry_from": 24}}]), {}) is None
    wrong = dict(net, active_rows={"merged": (act * 3 + 1).tolist()})
    with pytest.raises(ValueError, match="differ from the CPU reference's at layer 0"):
        saturated_rows(wrong, {})


def test_tune_margin_and_pairs_of_one_configuration(tmp_path, monkeypatch):
    """analyse_tune's margin is the median |log(predicted / measured speed-up)| (computed here by
    hand), and a network where the freeze kept the defaults is flagged: its pair is one
    configuration measured twice, whose spread is reported apart."""
    import math

    from spdnn.model import validation

    def net(n, d, t, pd, pt):
        return {
            "neurons": n,
            "layers": 120,
            "predicted_default": pd,
            "predicted_tuned": pt,
            "runs": [
                {"which": "default", "seconds": d, "options": {}, "categories": 5},
                {"which": "tuned", "seconds": t, "options": {"warps": 32}, "categories": 5},
            ],
        }

    raw = {
        "gpu": "G",
        "networks": [net(1024, 1.0, 1.1, 2.0, 2.0), net(4096, 2.0, 2.5, 2.5, 2.0), net(16384, 1.0, 0.8, 1.0, 1.0)],
    }
    frozen = {
        "tuned": {
            "1024x120": {"decision": {"choice": "engine defaults"}},
            "4096x120": {"decision": {"choice": "tuned"}},
            "16384x120": {"decision": {"choice": "engine defaults"}},
        }
    }
    # a second engine of each option set at 4096: the median of the two engines' medians, their spread
    raw["networks"][1]["runs"] += [
        {"which": "default", "seconds": 3.0, "options": {}, "categories": 5},
        {"which": "tuned", "seconds": 2.5, "options": {"warps": 32}, "categories": 5},
    ]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    (tmp_path / "frozen.json").write_text(json.dumps(frozen))
    out = validation.analyse_tune(tmp_path / "raw.json", tmp_path / "out.json")  # no freeze: no flags
    assert not any(r["tuned_is_default"] for r in out["networks"]) and out["same_configuration_median_abs_log"] is None
    two = out["networks"][1]
    assert two["default_seconds"] == 2.5 and two["tuned_seconds"] == 2.5 and two["speedup"] == 1.0
    assert two["instances"] == {"default": 2, "tuned": 2} and two["instance_spread"] == {"default": 1.5, "tuned": 1.0}
    # measured speed-ups 1/1.1, 1.0, 1.25 against predicted 1, 1.25, 1
    errs = sorted([math.log(1.1), math.log(1.25), abs(math.log(1 / 1.25))])
    assert out["tune_margin_log"] == pytest.approx(errs[1])
    assert validation.tune_margin(out["networks"]) == pytest.approx(errs[1])
    monkeypatch.setattr(validation, "_check_frozen", lambda raw, frozen, allow: "checked")  # (no fingerprint here)
    out = validation.analyse_tune(tmp_path / "raw.json", tmp_path / "out.json", tmp_path / "frozen.json")
    flags = {r["network"]: r["tuned_is_default"] for r in out["networks"]}
    assert flags == {"1024x120": True, "4096x120": False, "16384x120": True}
    assert out["same_configuration_median_abs_log"] == pytest.approx((math.log(1.1) + math.log(1.25)) / 2)
    # with the freeze's decisions known, only 4096 (where tune chose) measures the model's error
    assert out["tune_margin_log"] == pytest.approx(math.log(1.25))
    for r in out["networks"]:
        r["tuned_is_default"] = True
    assert validation.tune_margin(out["networks"]) is None


def test_transferred_launch_is_this_gpus_call_plus_the_fits_excess():
    """Another GPU's fit carried over: its L2 bandwidth as is, its launch cost as this run's
    microbenchmarked call plus what the other fit found beyond its own microbenchmark (additive:
    a multiple turned the H200's 2.2x slower host call into a 50 us launch against 28 fitted)."""
    from spdnn.model.validation import transferred

    raw = {"calibration": {"launch_s": 12e-6, "kernel_min_s": 3e-6, "sync_s": 60e-6, "copy_bandwidth": 4e12}}
    other = {"constants": {"l2_bandwidth": 6.5e12, "launch_s": 23e-6}, "launch_s_microbenchmark": 6e-6}
    hw = transferred(raw, other, "h200")
    assert hw.l2_bandwidth == 6.5e12 and hw.call_s == 12e-6
    assert hw.launch_s == pytest.approx(12e-6 + 17e-6)
    other["constants"]["launch_s"] = 4e-6  # a fit below its microbenchmark adds nothing
    assert transferred(raw, other, "h200").launch_s == pytest.approx(12e-6)
