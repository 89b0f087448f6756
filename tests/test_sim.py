"""hw.sim: the cycle-accurate simulator on its own.

* results bit-exact against the numpy int64 reference (hw.program), including accumulator wrap,
  K not a multiple of lanes, invalid weight bytes and bad instructions;
* cycle counts equal to the closed forms of docs/ARCHITECTURE.md (derived there from the RTL and
  asserted on the RTL by tests/test_top.py) for stall-free decode and prefill programs;
* event counts against hand-computed adder trees and counts taken from the program itself;
* a 2B4T-sized layer at T=1 against an int64 reference of the decoded weight stream.

Cycle-exactness against the RTL under arbitrary timings is tests/test_differential.py.
"""

import dataclasses

import numpy as np
import pytest

from hw.config import TernConfig
from hw.formats import stream_to_weight_words
from hw.isa import Instr, Op
from hw.program import (ProgramBuilder, decode_program, instr_is_valid, linear_program, outputs_to_matrix,
                        prefill_program, reference_matmul, wrap_signed)
from hw.sim import SimError, adder_tree_widths, rtl_latencies, simulate
from hw.result import PERF_COUNTERS
from hw.verify.generate import random_case
from hw.workloads import BITNET_2B4T_LAYER, layer_streams, tokens_per_group
from hw.timing import Timing

PARTS = ("busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle")


CONFIGS = [
    TernConfig(),
    TernConfig(rows=4, lanes=8, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=4, tree_reg_every=1),
    TernConfig(rows=3, lanes=13, weight_format="base3", bus_bytes=3, act_depth=64, wgt_depth=8,
               out_depth=8, tree_reg_every=2),
    TernConfig(rows=8, lanes=16, bus_bytes=16, act_depth=64, wgt_depth=16, out_depth=6, tree_reg_every=0),
]


def _lat(cfg):
    lat = rtl_latencies(cfg)
    return lat.pe, lat.decoder, cfg.beats_per_word


# the closed forms' sufficient conditions (ARCHITECTURE.md), applied when the cases are enumerated
DECODE_CASES = [(ci, n_mm, kw) for ci, cfg in enumerate(CONFIGS)
                for n_mm, kw in [(1, 1), (3, 2), (6, 5), (2, 8), (1, 16)]
                if kw <= cfg.wgt_depth and kw * _lat(cfg)[2] >= 2
                and (_lat(cfg)[0] + 2) // kw < cfg.out_depth]
PREFILL_CASES = [(ci, n_mm, kw, T) for ci, cfg in enumerate(CONFIGS)
                 for n_mm, kw, T in [(1, 1, 8), (3, 2, 7), (2, 4, 9), (4, 3, 16), (2, 1, 40)]
                 if kw <= cfg.wgt_depth and T * kw <= cfg.act_depth
                 and T * kw >= kw * (_lat(cfg)[2] - 1) + _lat(cfg)[1] + 2
                 and (_lat(cfg)[0] + 2) // kw < cfg.out_depth]


@pytest.mark.parametrize("ci, n_mm, kw", DECODE_CASES)
def test_decode_closed_form(ci, n_mm, kw):
    cfg = CONFIGS[ci]
    P, Ld, bpw = _lat(cfg)
    prog = decode_program(cfg, n_mm, kw)
    r = simulate(cfg, prog)
    closed = max(4 + n_mm * kw * bpw + Ld, 2 + kw + n_mm * kw) + P + 3
    assert r.cycles == closed == r.last_out_cycle + 1
    assert np.array_equal(r.outputs, prog.expected)
    # the weight stream is accepted on every cycle from cycle 4
    assert r.wgt_cycles.tolist() == list(range(4, 4 + n_mm * kw * bpw))
    assert r.counters["wgt_beats"] == n_mm * kw * bpw and r.counters["busy"] == n_mm * kw


@pytest.mark.parametrize("ci, n_mm, kw, T", PREFILL_CASES)
def test_prefill_closed_form(ci, n_mm, kw, T):
    cfg = CONFIGS[ci]
    P, Ld, bpw = _lat(cfg)
    prog = prefill_program(cfg, n_mm, kw, T)
    r = simulate(cfg, prog)
    assert r.cycles == T * kw * (n_mm + 1) + P + 5
    assert np.array_equal(r.outputs, prog.expected)
    assert r.counters["busy"] == n_mm * T * kw
    assert r.counters["stall_weight"] == r.counters["stall_out"] == 0


def test_closed_form_cases_cover_every_config():
    assert {c[0] for c in DECODE_CASES} == {c[0] for c in PREFILL_CASES} == set(range(len(CONFIGS)))


def test_latencies_come_from_the_rtl_and_can_be_overridden():
    cfg = CONFIGS[1]
    lat = rtl_latencies(cfg)
    from hw.rtl.pe_array import PEArray
    from hw.rtl.decoder import WeightDecoder
    pe, dec = PEArray(cfg), WeightDecoder(cfg)
    pe._MustUse__used = dec._MustUse__used = True
    assert (lat.pe, lat.decoder) == (pe.latency, dec.latency)
    prog = decode_program(cfg, 3, 2)
    base = simulate(cfg, prog).cycles
    slower = simulate(cfg, prog, latencies=dataclasses.replace(lat, pe=lat.pe + 3)).cycles
    assert slower == base + 3


@pytest.mark.parametrize("seed", range(6))
def test_linear_program_bit_exact(seed):
    rng = np.random.default_rng(seed)
    cfg = TernConfig(rows=int(rng.integers(1, 9)), lanes=int(rng.choice([4, 5, 16, 13])),
                     weight_format=str(rng.choice(["2bit", "base3"])), bus_bytes=int(rng.choice([1, 4, 8])),
                     act_depth=128, wgt_depth=16, out_depth=int(rng.integers(2, 7)))
    cfg = cfg.replace(acc_width=cfg.dot_width)   # sums of several words wrap
    T, N = int(rng.integers(1, 9)), int(rng.integers(1, 20))
    K = int(rng.integers(1, cfg.lanes * 6))        # rarely a multiple of lanes
    q = rng.integers(-128, 128, (T, K))
    w = rng.integers(-1, 2, (N, K))
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog, Timing.random(seed, p_instr=0.2, p_act=0.3, p_wgt=0.3, p_out=0.4))
    d = outputs_to_matrix(cfg, r.outputs, T, N)
    assert np.array_equal(d, wrap_signed(reference_matmul(q, w), cfg.acc_width))
    assert r.error == 0


def test_many_tokens_wrapping_extreme_values():
    cfg = TernConfig(rows=4, lanes=8, act_depth=512, wgt_depth=8, out_depth=2, acc_width=12)
    T, K = 100, 20
    q = np.full((T, K), -128)
    q[::3] = 127
    w = np.ones((7, K), dtype=int)
    w[1] = -1
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog, Timing.random(3, p_out=0.5))
    assert np.array_equal(outputs_to_matrix(cfg, r.outputs, T, 7),
                          wrap_signed(reference_matmul(q, w), 12))


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_invalid_weight_byte_reads_zero(fmt):
    cfg = TernConfig(rows=2, lanes=5, weight_format=fmt, bus_bytes=2, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(0)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (2, 5)))
    tile = rng.integers(-1, 2, (2, 10))
    tile[0, :5] = 1   # the byte we spoil carries only row 0, lanes 0..3 (2bit) / 0..4 (base3)
    b.matmul(0, tile, 1)
    prog = b.build()
    beats = prog.wgt_beats.copy()
    beats[0, 0] = 0xFF if fmt == "2bit" else 250
    r = simulate(cfg, prog, wgt_beats=beats)
    spoiled = tile.copy()
    spoiled[0, :4 if fmt == "2bit" else 5] = 0
    exp = reference_matmul(np.concatenate(list(prog.act_beats)).reshape(1, 10), spoiled)
    assert np.array_equal(r.outputs, exp)
    assert r.error == 2


def test_bad_instructions_skipped():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(1)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (4, 4)))
    b.bad(Instr(Op.MATMUL, 0, 5, 1))          # k_words > wgt_depth
    b.bad(Instr(9, 1, 2, 3))                   # illegal opcode
    b.bad(Instr(Op.LOAD_ACT, 10, 7))           # past the end of the buffer
    b.matmul(0, rng.integers(-1, 2, (2, 8)), 2)
    b.bad(Instr(Op.MATMUL, 0, 1, 0))           # zero tokens
    b.sync()
    prog = b.build()
    r = simulate(cfg, prog)
    assert np.array_equal(r.outputs, prog.expected) and r.error == 1
    assert r.counters["busy"] == 4 and r.counters["wgt_beats"] == 2 * cfg.beats_per_word


@pytest.mark.parametrize("seed", range(20))
def test_counters_partition_cycles(seed):
    case = random_case(100 + seed, 0)
    r = simulate(case.config, case.program, case.timing)
    assert sum(r.counters[k] for k in PARTS) == r.cycles == r.counters["cycles"]
    assert r.counters["busy"] == case.program.n_matmul_steps
    assert np.array_equal(r.outputs, case.program.expected)
    assert r.error == case.program.expected_error
    assert set(r.counters) == set(PERF_COUNTERS)


def test_adder_tree_widths_hand_computed():
    # 64 lanes: 32 adders of 2 lanes (|sum| <= 256: 10 bits), 16 of 4 (11), 8 (12), 4 (13), 2 (14), 1 (15)
    assert adder_tree_widths(64) == {10: 32, 11: 16, 12: 8, 13: 4, 14: 2, 15: 1}
    # 5 lanes: (0+1) (2+3) 4 -> (01+23) 4 -> (0123+4): widths 10, 10, 11, 11
    assert adder_tree_widths(5) == {10: 2, 11: 2}
    assert adder_tree_widths(1) == {}


def test_event_counts():
    cfg = TernConfig(rows=3, lanes=5, weight_format="base3", bus_bytes=2, act_depth=32, wgt_depth=4,
                     out_depth=3)
    case = random_case(7, 3, cfg)
    while not case.program.n_matmul_steps or case.program.expected_error & 2:
        case = random_case(7, case.index + 1, cfg)   # MATMULs, and stream words = builder words
    prog = case.program
    r = simulate(cfg, prog, case.timing)
    ev = r.events
    busy = prog.n_matmul_steps
    mms = [i for i in prog.instrs if i.op == Op.MATMUL and instr_is_valid(cfg, i)]
    tokens = sum(i.c for i in mms)
    nz = neg = 0
    g = 0
    for i in mms:   # weights of each MATMUL from the builder's words (not the stream)
        wds = prog.wgt_words[g:g + i.b]
        nz += i.c * int(np.count_nonzero(wds))
        neg += i.c * int((wds < 0).sum())
        g += i.b
    assert ev["pe_issues"] == busy and ev["dot_products"] == 3 * busy
    assert ev["tree_adds_by_width"] == {10: 2 * 3 * busy, 11: 2 * 3 * busy}
    assert ev["acc_adds"] == (busy - tokens) * 3 and ev["acc_loads"] == tokens * 3
    assert ev["nonzero_terms"] == nz and ev["negated_terms"] == neg
    n_act = len(prog.act_beats)
    assert ev["sram_bits"]["act_buffer"] == {"read": busy * 40, "write": n_act * 40}
    assert ev["sram_bits"]["weight_buffer"] == {"read": busy * 30, "write": g * 30}
    assert ev["sram_bits"]["output_fifo"]["write"] == tokens * 3 * cfg.acc_width
    assert ev["bus_bytes"]["wgt"] == len(prog.wgt_beats) * 2
    assert ev["active_cycles"] + ev["stall_cycles"] + ev["idle_cycles"] == r.cycles


def test_stream_length_mismatch_and_bad_arguments():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    prog = decode_program(cfg, 2, 1)
    with pytest.raises(SimError, match="weight stream holds"):
        simulate(cfg, prog, wgt_beats=prog.wgt_beats[:-1])
    with pytest.raises(SimError, match="act stream holds"):
        simulate(cfg, prog, act_beats=np.zeros((0, 4), dtype=np.int8))
    with pytest.raises(TypeError, match="TernConfig"):
        simulate("cfg", prog)
    with pytest.raises(TypeError, match="Timing"):
        simulate(cfg, prog, timing={"wgt": 1})
    with pytest.raises(ValueError, match="act_beats"):
        simulate(cfg, words=prog.words, act_beats=np.zeros((1, 3)), wgt_beats=prog.wgt_beats)
    with pytest.raises(ValueError, match="instruction word 0"):
        simulate(cfg, words=[-1])
    assert simulate(cfg, words=[]).cycles == 0


def test_2b4t_projection_bit_exact_against_builder_reference():
    cfg = TernConfig()
    rng = np.random.default_rng(5)
    q = rng.integers(-128, 128, (3, 2560))
    w = rng.integers(-1, 2, (640, 2560))
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog)
    assert np.array_equal(outputs_to_matrix(cfg, r.outputs, 3, 640), reference_matmul(q, w))
    assert r.counters["busy"] == 40 * 3 * 40


def test_2b4t_layer_t1_bit_exact():
    """All seven projections of a 2B4T layer in one program; the reference decodes each
    projection's weight stream with hw.formats and multiplies in int64."""
    cfg = TernConfig()
    st, n_out = layer_streams(cfg, 1, BITNET_2B4T_LAYER, np.random.default_rng(0))
    r = simulate(cfg, words=st.words, act_beats=st.act_beats, wgt_beats=st.wgt_beats)
    assert r.outputs.shape == (n_out, cfg.rows)
    L, R, bpw = cfg.lanes, cfg.rows, cfg.beats_per_word
    a = b = o = 0
    for _, N, K in BITNET_2B4T_LAYER:
        kw, tiles = K // L, N // R
        assert tokens_per_group(cfg, K) >= 1
        x = st.act_beats[a:a + kw].reshape(1, K).astype(np.int64)
        wds = stream_to_weight_words(st.wgt_beats[b:b + tiles * kw * bpw], cfg)   # (tiles*kw, R, L)
        wmat = wds.reshape(tiles, kw, R, L).transpose(0, 2, 1, 3).reshape(N, K).astype(np.int64)
        assert np.array_equal(r.outputs[o:o + tiles].reshape(N), (x @ wmat.T).reshape(N))
        a, b, o = a + kw, b + tiles * kw * bpw, o + tiles
    # decode is weight-bus bound: the stream runs at one beat per cycle
    assert r.counters["wgt_beats"] / r.cycles > 0.99
