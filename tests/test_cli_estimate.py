"""``tern estimate`` (sw/cli/estimate.py): JSON contract, table output, bad input (exit 2, one line),
and the resolution of ``--model`` into the :class:`hw.estimate.ModelShape` the estimator prices."""

import json
import shutil
from pathlib import Path

import pytest

from hw.config import TernConfig
from hw.estimate import EstimateError, ModelShape, estimate
from sw.cli.estimate import model_shape
from helpers import run

DEMO = Path(__file__).resolve().parent.parent / "sw" / "model" / "demo"


def test_json_contract(capsys):
    code, out, err = run(capsys, "estimate", "--model", "demo", "--json")
    assert code == 0, err
    r = json.loads(out)
    for key in ("energy_per_token_j", "tokens_per_s", "area_mm2", "breakdown", "memory", "bus_efficiency"):
        assert key in r
    assert r["energy_per_token_j"] > 0 and r["tokens_per_s"] > 0 and r["area_mm2"] > 0
    assert r["energy_per_token_j"] == pytest.approx(sum(r["breakdown"].values()), rel=1e-12)
    assert r["node"] == "7nm" and r["clock_mhz"] == 200.0 and r["tokens"] == 1 and r["context"] == 1024
    # the whole token: the core's projections, the host's parts, static power
    for part in ("dram_weights", "lm_head", "embedding", "kv_cache", "attention", "norms",
                 "activation_quant", "host_transfers", "static_core", "static_memory"):
        assert part in r["breakdown"], part
    m = r["memory"]
    assert m["name"] == "lpddr4x" and m["pj_per_bit"] == 8.0
    assert m["bandwidth_gb_s"] == pytest.approx(8.532, rel=1e-12) and "JESD209-4" in m["source"]
    # the weight stream's share of the channel's peak under the DRAM model: the core's 3.2 GB/s of
    # 8.532 GB/s at most, a little less for the memory's latencies
    assert 0.95 * 3.2 / 8.532 <= r["bus_efficiency"] <= 3.2 / 8.532
    assert r["weight_stream_efficiency"] >= 0.95
    assert r["host"]["lm_head_runs_on"] == "host"


def test_configuration_flags_and_options(capsys):
    code, out, _ = run(capsys, "estimate", "--model", "demo", "--json", "--rows", "8", "--lanes", "32",
                       "--node", "45nm", "--clock-mhz", "100", "--tokens", "4", "--dram-pj-per-bit", "5")
    assert code == 0
    r = json.loads(out)
    assert r["config"]["rows"] == 8 and r["config"]["lanes"] == 32
    assert r["node"] == "45nm" and r["clock_mhz"] == 100.0 and r["tokens"] == 4
    assert r["energy_table"]["dram_pj_per_bit"] == 5.0 and r["memory"]["pj_per_bit"] == 5.0
    code, out, _ = run(capsys, "estimate", "--model", "demo", "--json", "--memory", "HBM2", "--context", "7",
                       "--channels", "2")
    assert code == 0
    r = json.loads(out)
    assert r["memory"]["name"] == "hbm2" and r["memory"]["pj_per_bit"] == 3.9 and r["memory"]["channels"] == 2
    assert r["context"] == 7 and r["memory"]["sustainable_gb_s"] == pytest.approx(
        2 * 256 * r["memory"]["sustainable_efficiency"])


def test_table_output(capsys):
    code, out, _ = run(capsys, "estimate", "--model", "demo")
    assert code == 0
    assert "dram_weights" in out and "total" in out and "tokens/s" in out and "mm^2" in out
    assert "lm_head" in out and "lpddr4x" in out and "static" in out


def test_default_clock_is_the_drivers(capsys):
    from sw.driver.runtime import DEFAULT_CLOCK_MHZ as DRIVER
    code, out, _ = run(capsys, "estimate", "--model", "demo", "--json")
    assert code == 0 and json.loads(out)["clock_mhz"] == DRIVER


@pytest.mark.parametrize("argv,needle", [
    (["--model", "nonsense"], "no such checkpoint folder"),
    (["--model", "demo", "--clock-mhz", "0"], "--clock-mhz"),
    (["--model", "demo", "--clock-mhz", "nan"], "--clock-mhz"),
    (["--model", "demo", "--node", "3nm"], "3nm"),
    (["--model", "demo", "--tokens", "0"], "--tokens"),
    (["--model", "demo", "--dram-pj-per-bit", "-1"], "--dram-pj-per-bit"),
    (["--model", "demo", "--memory", "sram9"], "sram9"),
    (["--model", "demo", "--context", "-1"], "--context"),
    (["--model", "demo", "--channels", "0"], "--channels"),
    (["--model", "demo", "--rows", "0"], "rows"),
    (["--model", "2b4t", "--wgt-depth", "64"], "wgt_depth"),
    (["--node", "7nm"], "--model"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "estimate", *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err


# -- --model: demo, a preset or a checkpoint folder --------------------------------------------------

def test_model_shapes_of_a_preset():
    """2b4t (microsoft/bitnet-b1.58-2B-4T): hidden 2560, intermediate 6912, 20 query / 5 kv heads of
    128, 30 layers."""
    m = model_shape("2B4T")
    assert isinstance(m, ModelShape) and m.name == "2b4t" and m.layers == 30
    assert m.projections == (("q", 2560, 2560), ("k", 640, 2560), ("v", 640, 2560), ("o", 2560, 2560),
                             ("gate", 6912, 2560), ("up", 6912, 2560), ("down", 2560, 6912))
    assert (m.vocab_size, m.hidden_size) == (128256, 2560)
    assert (m.num_heads, m.num_kv_heads, m.head_dim, m.intermediate_size, m.sub_norms) == (20, 5, 128, 6912, True)


def test_demo_name_and_checkpoint_folder_agree(tmp_path):
    a = estimate(model_shape("demo"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(DEMO / "config.json", folder / "config.json")
    b = estimate(model_shape(str(folder)))
    assert a["energy_per_token_j"] == b["energy_per_token_j"]
    assert a["cycles_per_token"] == b["cycles_per_token"]
    assert a["layers"] == 2


def test_unknown_model():
    with pytest.raises(EstimateError, match="no such checkpoint folder"):
        model_shape("nonsense")


def test_bad_checkpoint_folder(tmp_path):
    with pytest.raises(EstimateError, match="config.json"):
        model_shape(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EstimateError, match="config.json"):
        model_shape(str(tmp_path))


def test_reduced_counters_do_not_change_the_estimate():
    # utilizations and energy come from the unwrapped event counts, not the built counters
    full = estimate(model_shape("demo"))
    small = estimate(model_shape("demo"), TernConfig().replace(perf_counters=("cycles",),
                                                               perf_width=16))
    for key in ("energy_per_token_j", "cycles_per_token", "bus_utilization", "pe_utilization"):
        assert small[key] == full[key], key
    assert 0 < full["pe_utilization"] <= 1 and 0 < full["bus_utilization"] <= 1
