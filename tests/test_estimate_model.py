"""hw.estimate.model: per-token estimates of real model shapes on the default configuration: the whole
token (core projections, host parts, memory traffic, static power), checked against hand counts."""

import json

import pytest

from hw.config import TernConfig
from hw.estimate import MEMORIES, EstimateError, ModelShape, estimate

# microsoft/bitnet-b1.58-2B-4T: hidden 2560, intermediate 6912, 20 query / 5 kv heads of 128, 30 layers
SHAPES_2B4T = [(2560, 2560), (640, 2560), (640, 2560), (2560, 2560), (6912, 2560), (6912, 2560),
               (2560, 6912)]
MODEL_2B4T = ModelShape("2b4t", [(name, n, k) for name, (n, k) in
                                 zip(("q", "k", "v", "o", "gate", "up", "down"), SHAPES_2B4T)],
                        layers=30, vocab_size=128256, hidden_size=2560, num_heads=20, num_kv_heads=5,
                        head_dim=128, intermediate_size=6912)
# the demo model (sw/model/demo/config.json): hidden 128, intermediate 256, 8 query / 4 kv heads of 16,
# 2 layers, 15 tokens
DEMO = ModelShape("demo", [("q", 128, 128), ("k", 64, 128), ("v", 64, 128), ("o", 128, 128),
                           ("gate", 256, 128), ("up", 256, 128), ("down", 128, 256)],
                  layers=2, vocab_size=15, hidden_size=128, num_heads=8, num_kv_heads=4, head_dim=16,
                  intermediate_size=256)
# LPDDR4X (the default memory): 8 pJ/bit; one 16-bit channel at 4266 MT/s
LPDDR4X_PJ = 8.0
LPDDR4X_PEAK = 4266e6 * 2                        # bytes / s


def _lpddr4x_sustainable():
    """Peak x the DRAM model's sequential efficiency (its refresh bound checked in test_dram)."""
    from hw.dram import sequential_efficiency
    return LPDDR4X_PEAK * sequential_efficiency("lpddr4x")


@pytest.fixture(scope="module")
def decode_2b4t():
    return {node: estimate(MODEL_2B4T, node=node) for node in ("7nm", "45nm")}


def _weight_bytes_per_layer(cfg, shapes):
    """Per projection ceil(N/16) tiles x ceil(K/64) words x 1024 codes x 2 bits."""
    words = sum(-(-n // cfg.rows) * -(-k // cfg.lanes) for n, k in shapes)
    return words * cfg.rows * cfg.lanes * 2 // 8


def _host_bytes_2b4t(context):
    """Host memory bytes of one 2b4t decode token, by hand (bf16 = 2 bytes): embedding row, LM head,
    KV cache (30 layers x K and V x 5 kv heads x 128 x (context read + 1 written)), RMSNorm weights
    (4 per layer: 2560, 2560, 2560, 6912; the final norm 2560)."""
    return (2560 * 2 + 128256 * 2560 * 2 + 30 * 2 * 640 * 2 * (context + 1)
            + (30 * (3 * 2560 + 6912) + 2560) * 2)


@pytest.mark.parametrize("node", ["7nm", "45nm"])
def test_2b4t_decode_is_memory_dominated(decode_2b4t, node):
    r = decode_2b4t[node]
    total = sum(r["breakdown"].values())
    assert r["energy_per_token_j"] == pytest.approx(total, rel=1e-12)
    # the unquantized LM head (128256 x 2560 bf16 = 656.7 MB) outweighs the ternary weights
    # (521 MB at 2 bits): the two largest parts, in that order
    top = sorted(r["breakdown"], key=lambda k: -r["breakdown"][k])[:2]
    assert top == ["lm_head", "dram_weights"]
    assert 128256 * 2560 * 2 > 30 * _weight_bytes_per_layer(TernConfig(), SHAPES_2B4T)
    assert r["memory_fraction"] > 0.5
    assert r["host"]["lm_head_runs_on"] == "host"


def test_2b4t_weight_traffic_and_speed_from_an_independent_count(decode_2b4t):
    """Decode streams one 16-byte beat per cycle at most, so cycles/token >= weight beats per token;
    the token's time is the core's cycles at 200 MHz under the DRAM model (3.2 GB/s < LPDDR4X's 7.8
    GB/s sustainable: not memory-bound) plus the host's bytes over the sustainable bandwidth."""
    cfg = TernConfig()
    r = decode_2b4t["7nm"]
    wbytes = _weight_bytes_per_layer(cfg, SHAPES_2B4T)
    assert r["weight_bytes_per_layer"] == wbytes
    assert r["layers"] == 30
    assert r["breakdown"]["dram_weights"] == pytest.approx(30 * wbytes * 8 * LPDDR4X_PJ * 1e-12, rel=1e-12)
    beats_per_token = 30 * wbytes // cfg.bus_bytes
    assert beats_per_token <= r["cycles_per_token"] <= 1.001 * beats_per_token
    assert not r["memory_bound"]
    assert r["core_tokens_per_s"] == pytest.approx(200e6 / r["cycles_per_token"], rel=1e-12)
    # host bytes = the hand count + the host's side of the core's act/out/instr streams
    core = r["bytes_per_token"]["core"]
    host = _host_bytes_2b4t(1024) + (core - 30 * wbytes)
    assert r["bytes_per_token"]["host"] == pytest.approx(host, rel=1e-12)
    expected_s = r["cycles_per_token"] / 200e6 + host / _lpddr4x_sustainable()
    assert r["tokens_per_s"] == pytest.approx(1 / expected_s, rel=1e-12)
    # the weight stream: its bytes over the core's time, a fraction of the channel's peak; the DRAM
    # model costs the core-bound decode (3.2 of 7.8 GB/s) under 5% of the ideal bus
    wgt_rate = 30 * wbytes / r["time_per_token_s"]["core"]
    assert r["bus_efficiency"] == pytest.approx(wgt_rate / LPDDR4X_PEAK, rel=1e-9)
    assert r["weight_stream_efficiency"] == pytest.approx(wgt_rate / 3.2e9, rel=1e-9)
    assert r["weight_stream_efficiency"] >= 0.95
    assert r["dram"]["early_writes"] == 0
    # the LM head: bytes at 8 pJ/bit + vocab x hidden MACs at FP16 MUL + FP32 ADD (0.34 + 0.38 pJ at 7 nm)
    assert r["breakdown"]["lm_head"] == pytest.approx(
        (128256 * 2560 * 2 * 8 * LPDDR4X_PJ + 128256 * 2560 * (0.34 + 0.38)) * 1e-12, rel=1e-12)
    # the two nodes share the simulation: same cycles and DRAM energy, less core energy at 7 nm
    r45 = decode_2b4t["45nm"]
    assert r45["cycles_per_token"] == r["cycles_per_token"]
    assert r45["breakdown"]["dram_weights"] == r["breakdown"]["dram_weights"]
    assert r["core_energy_per_token_j"] < r45["core_energy_per_token_j"]
    assert r["area_mm2"] < r45["area_mm2"]
    json.dumps(r)     # JSON-serializable as is


PRESETS = ["2b4t", "700m", "1.3b", "3b"]
# the default run: every memory on 2b4t and every preset on the default memory (each case runs the
# layer through the DRAM model); -m slow: every preset on every memory
FLOOR_CASES = ([pytest.param(p, m, marks=() if p == "2b4t" or m == "lpddr4x" else pytest.mark.slow)
                for p in PRESETS for m in MEMORIES])


@pytest.mark.parametrize("preset,memory", FLOOR_CASES)
def test_energy_at_least_bytes_times_energy_per_bit(preset, memory):
    """Physical floor, every preset and memory: energy per token >= (ternary weights at 2 bits + LM head
    at bf16 + the KV cache read at bf16) x the memory's energy per bit, the bytes counted by hand from
    the model's dimensions; tokens/s <= the memory's peak bandwidth / those bytes."""
    from sw.cli.estimate import model_shape
    from sw.model.presets import preset_config
    c = preset_config(preset)
    m = model_shape(preset)
    cfg = TernConfig()
    shapes = [(n, k) for _, n, k in m.projections]
    context = 1024
    floor_bytes = (c.num_hidden_layers * _weight_bytes_per_layer(cfg, shapes)
                   + c.vocab_size * c.hidden_size * 2
                   + c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 2 * context)
    mem = MEMORIES[memory]
    r = estimate(m, cfg, memory=memory, context=context)
    assert r["memory"]["pj_per_bit"] == mem.pj_per_bit
    assert r["energy_per_token_j"] >= floor_bytes * 8 * mem.pj_per_bit * 1e-12
    assert r["bytes_per_token"]["total"] >= floor_bytes
    # and no faster than one channel of that memory, at its peak, can move those bytes
    assert r["tokens_per_s"] <= mem.bandwidth_gb_s * 1e9 / floor_bytes
    # the memory model's prediction held (docs/ESTIMATE.md): no result burst written early
    assert r["dram"]["early_writes"] == 0


def test_memory_bound_core_is_held_to_the_sustainable_bandwidth():
    """At 1 GHz the 16-byte bus wants 16 GB/s; one LPDDR4X channel sustains 7.8 GB/s, so the core's
    time is at least its stream bytes over that; the DRAM model's cycles are the time."""
    r = estimate(DEMO, clock_mhz=1000.0)
    assert r["memory_bound"]
    assert r["weight_stream_gb_s"] <= _lpddr4x_sustainable() / 1e9
    assert r["bus_efficiency"] <= _lpddr4x_sustainable() / LPDDR4X_PEAK
    assert r["time_per_token_s"]["core"] >= r["bytes_per_token"]["core"] / _lpddr4x_sustainable()
    assert r["time_per_token_s"]["core"] == pytest.approx(r["cycles_per_token"] / 1e9, rel=1e-12)
    assert r["dram"]["slowdown_vs_ideal_bus"] > 1.5
    # four channels sustain 31 GB/s > 16 GB/s: the core's bus bounds it again, the DRAM model
    # costs little
    r4 = estimate(DEMO, clock_mhz=1000.0, channels=4)
    assert not r4["memory_bound"]
    assert r4["time_per_token_s"]["core"] < r["time_per_token_s"]["core"]
    assert r4["dram"]["channels"] == 4


def test_demo_host_parts_by_hand():
    """demo: 2 layers, hidden 128, intermediate 256, 8 heads / 4 kv heads of 16, vocab 15, context 10."""
    r = estimate(DEMO, context=10, node="45nm")
    mac, op = 1.1 + 0.9, 3.7            # pJ at 45 nm: FP16 MUL + FP32 ADD; FP32 MUL
    pj = LPDDR4X_PJ
    w = r["host"]["work_per_token"]
    assert w["kv_cache"]["bytes"] == 2 * 2 * 64 * 2 * 11
    assert w["attention"]["macs"] == 2 * 2 * 128 * 11
    assert w["attention"]["ops"] == 2 * (4 * 8 * 11 + 3 * (128 + 64))
    assert r["breakdown"]["lm_head"] == pytest.approx((15 * 128 * 2 * 8 * pj + 15 * 128 * mac) * 1e-12)
    assert r["breakdown"]["embedding"] == pytest.approx(128 * 2 * 8 * pj * 1e-12)
    norm_elems = 2 * (128 + 128 + 128 + 256) + 128
    assert r["breakdown"]["norms"] == pytest.approx((norm_elems * 2 * 8 * pj + norm_elems * mac
                                                     + 2 * norm_elems * op) * 1e-12)
    proj_in = 128 * 6 + 256
    proj_out = 128 + 64 + 64 + 128 + 256 + 256 + 128
    assert r["breakdown"]["activation_quant"] == pytest.approx(2 * (3 * proj_in + 2 * proj_out) * op * 1e-12)
    assert r["breakdown"]["elementwise"] == pytest.approx(2 * (2 * 256 + 2 * 128) * op * 1e-12)
    # static power x time: LPDDR4X background 20 mW, 45 nm core leakage 0.02 W/mm^2 (assumptions)
    t = r["time_per_token_s"]["total"]
    assert r["breakdown"]["static_memory"] == pytest.approx(0.020 * t, rel=1e-12)
    assert r["breakdown"]["static_core"] == pytest.approx(0.02 * r["area_mm2"] * t, rel=1e-12)
    assert r["energy_per_token_j"] == pytest.approx(sum(r["parts"].values()), rel=1e-12)


def test_memory_choice_and_override():
    ddr3 = estimate(DEMO, memory="ddr3")
    assert ddr3["memory"]["pj_per_bit"] == 1300 / 64
    assert ddr3["breakdown"]["dram_weights"] == pytest.approx(
        estimate(DEMO)["breakdown"]["dram_weights"] * (1300 / 64) / LPDDR4X_PJ, rel=1e-12)
    o = estimate(DEMO, memory="hbm2", dram_pj_per_bit=5.0)
    assert o["memory"]["pj_per_bit"] == 5.0 and o["memory"]["name"] == "hbm2"
    assert o["breakdown"]["lm_head"] == pytest.approx((15 * 128 * 2 * 8 * 5.0 + 15 * 128 * 0.72) * 1e-12)
    assert o["memory"]["bandwidth_gb_s"] == 256.0


def test_result_names_the_model_and_its_shapes():
    r = estimate(DEMO)
    assert r["model"] == "demo" and r["layers"] == 2
    assert r["projections"][4] == {"name": "gate", "N": 256, "K": 128}
    assert r["host"]["lm_head_params"] == 15 * 128
    assert r["context"] == 1024 and r["memory"]["name"] == "lpddr4x"


def test_prefill_amortizes_weights():
    d = estimate(DEMO, tokens=1)
    p = estimate(DEMO, tokens=8)
    assert p["breakdown"]["dram_weights"] == pytest.approx(d["breakdown"]["dram_weights"] / 8, rel=1e-12)
    assert p["energy_per_token_j"] < d["energy_per_token_j"]
    assert p["tokens_per_s"] > d["tokens_per_s"]


def test_clock_scales_core_speed_and_static_energy_only():
    """50 and 200 MHz: the bus (0.8 and 3.2 GB/s) stays below the 7.8 GB/s LPDDR4X sustains, so the
    core's speed nearly scales with the clock (the DRAM's fixed latencies cost more cycles at 200 MHz);
    dynamic energy does not change, static energy follows the time."""
    a, b = estimate(DEMO, clock_mhz=50.0), estimate(DEMO, clock_mhz=200.0)
    assert 3.8 * a["core_tokens_per_s"] <= b["core_tokens_per_s"] <= 4 * a["core_tokens_per_s"]
    assert b["time_per_token_s"]["core"] == pytest.approx(b["cycles_per_token"] / 200e6, rel=1e-12)
    for k in a["breakdown"]:
        if k.startswith("static_"):
            ratio = b["time_per_token_s"]["total"] / a["time_per_token_s"]["total"]
            assert b["breakdown"][k] == pytest.approx(a["breakdown"][k] * ratio, rel=1e-12)
        else:
            assert b["breakdown"][k] == a["breakdown"][k], k


@pytest.mark.parametrize("kwargs,needle", [
    (dict(node="3nm"), "3nm"),
    (dict(clock_mhz=0.0), "clock_mhz"),
    (dict(tokens=0), "tokens"),
    (dict(dram_pj_per_bit=-1.0), "dram_pj_per_bit"),
    (dict(memory="sram9"), "sram9"),
    (dict(context=-1), "context"),
    (dict(channels=0), "channels"),
])
def test_bad_input(kwargs, needle):
    with pytest.raises(EstimateError, match=needle):
        estimate(DEMO, **kwargs)


def test_bad_model_shape():
    with pytest.raises(EstimateError, match="positive integer"):
        ModelShape("bad", [("q", 0, 128)], layers=2, vocab_size=15, hidden_size=128, num_heads=8,
                   num_kv_heads=4, head_dim=16, intermediate_size=256)
    with pytest.raises(EstimateError, match="layers"):
        ModelShape("bad", [("q", 128, 128)], layers=0, vocab_size=15, hidden_size=128, num_heads=8,
                   num_kv_heads=4, head_dim=16, intermediate_size=256)
    with pytest.raises(EstimateError, match="num_kv_heads"):
        ModelShape("bad", [("q", 128, 128)], layers=2, vocab_size=15, hidden_size=128, num_heads=8,
                   num_kv_heads=0, head_dim=16, intermediate_size=256)
    with pytest.raises(TypeError, match="ModelShape"):
        estimate("demo")


def test_model_that_does_not_fit_the_configuration():
    # 2b4t's down projection has K = 6912 = 108 words of 64 > wgt_depth 64
    with pytest.raises(EstimateError, match="wgt_depth"):
        estimate(MODEL_2B4T, TernConfig(wgt_depth=64))
