"""hw.estimate.model: per-token estimates of real model shapes on the default configuration."""

import json

import pytest

from hw.config import TernConfig
from hw.estimate import EstimateError, ModelShape, estimate

# microsoft/bitnet-b1.58-2B-4T: hidden 2560, intermediate 6912, 20 query / 5 kv heads of 128, 30 layers
SHAPES_2B4T = [(2560, 2560), (640, 2560), (640, 2560), (2560, 2560), (6912, 2560), (6912, 2560),
               (2560, 6912)]
MODEL_2B4T = ModelShape("2b4t", [(name, n, k) for name, (n, k) in
                                 zip(("q", "k", "v", "o", "gate", "up", "down"), SHAPES_2B4T)],
                        layers=30, vocab_size=128256, hidden_size=2560)
# the demo model (sw/model/demo/config.json): hidden 128, intermediate 256, 8 query / 4 kv heads of 16,
# 2 layers, 15 tokens
DEMO = ModelShape("demo", [("q", 128, 128), ("k", 64, 128), ("v", 64, 128), ("o", 128, 128),
                           ("gate", 256, 128), ("up", 256, 128), ("down", 128, 256)],
                  layers=2, vocab_size=15, hidden_size=128)


@pytest.fixture(scope="module")
def decode_2b4t():
    return {node: estimate(MODEL_2B4T, node=node) for node in ("7nm", "45nm")}


@pytest.mark.parametrize("node", ["7nm", "45nm"])
def test_2b4t_decode_is_dram_dominated(decode_2b4t, node):
    r = decode_2b4t[node]
    total = sum(r["breakdown"].values())
    assert r["energy_per_token_j"] == pytest.approx(total, rel=1e-12)
    dram = sum(v for k, v in r["breakdown"].items() if k.startswith("dram_"))
    assert dram / total > 0.5
    assert r["breakdown"]["dram_weights"] == max(r["breakdown"].values())


def test_2b4t_weight_traffic_and_speed_from_an_independent_count(decode_2b4t):
    """Weight bytes per layer: per projection ceil(N/16) tiles x ceil(K/64) words x 1024 codes x 2 bits.
    Decode streams one 16-byte beat per cycle at most, so cycles/token >= weight beats per token."""
    cfg = TernConfig()
    r = decode_2b4t["7nm"]
    words = sum(-(-n // cfg.rows) * -(-k // cfg.lanes) for n, k in SHAPES_2B4T)
    wbytes = words * cfg.rows * cfg.lanes * 2 // 8
    assert r["weight_bytes_per_layer"] == wbytes
    assert r["layers"] == 30
    assert r["breakdown"]["dram_weights"] == pytest.approx(30 * wbytes * 8 * 1300 / 64 * 1e-12, rel=1e-12)
    beats_per_token = 30 * wbytes // cfg.bus_bytes
    assert beats_per_token <= r["cycles_per_token"] <= 1.001 * beats_per_token
    assert r["tokens_per_s"] == pytest.approx(200e6 / r["cycles_per_token"], rel=1e-12)
    # the two nodes share the simulation: same cycles and DRAM energy, less core energy at 7 nm
    r45 = decode_2b4t["45nm"]
    assert r45["cycles_per_token"] == r["cycles_per_token"]
    assert r45["breakdown"]["dram_weights"] == r["breakdown"]["dram_weights"]
    assert r["core_energy_per_token_j"] < r45["core_energy_per_token_j"]
    assert r["area_mm2"] < r45["area_mm2"]
    json.dumps(r)     # JSON-serializable as is


def test_result_names_the_model_and_its_shapes():
    r = estimate(DEMO)
    assert r["model"] == "demo" and r["layers"] == 2
    assert r["projections"][4] == {"name": "gate", "N": 256, "K": 128}
    assert r["host"]["lm_head_params"] == 15 * 128


def test_prefill_amortizes_weights():
    d = estimate(DEMO, tokens=1)
    p = estimate(DEMO, tokens=8)
    assert p["breakdown"]["dram_weights"] == pytest.approx(d["breakdown"]["dram_weights"] / 8, rel=1e-12)
    assert p["energy_per_token_j"] < d["energy_per_token_j"]
    assert p["tokens_per_s"] > d["tokens_per_s"]


def test_clock_scales_tokens_per_s_only():
    a, b = estimate(DEMO, clock_mhz=100.0), estimate(DEMO, clock_mhz=400.0)
    assert b["tokens_per_s"] == pytest.approx(4 * a["tokens_per_s"], rel=1e-12)
    assert b["energy_per_token_j"] == a["energy_per_token_j"]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(node="3nm"), "3nm"),
    (dict(clock_mhz=0.0), "clock_mhz"),
    (dict(tokens=0), "tokens"),
    (dict(dram_pj_per_bit=-1.0), "dram_pj_per_bit"),
])
def test_bad_input(kwargs, needle):
    with pytest.raises(EstimateError, match=needle):
        estimate(DEMO, **kwargs)


def test_bad_model_shape():
    with pytest.raises(EstimateError, match="positive integer"):
        ModelShape("bad", [("q", 0, 128)], layers=2, vocab_size=15, hidden_size=128)
    with pytest.raises(EstimateError, match="layers"):
        ModelShape("bad", [("q", 128, 128)], layers=0, vocab_size=15, hidden_size=128)
    with pytest.raises(TypeError, match="ModelShape"):
        estimate("demo")


def test_model_that_does_not_fit_the_configuration():
    # 2b4t's down projection has K = 6912 = 108 words of 64 > wgt_depth 64
    with pytest.raises(EstimateError, match="wgt_depth"):
        estimate(MODEL_2B4T, TernConfig(wgt_depth=64))
