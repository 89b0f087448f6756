"""hw.estimate.energy: the per-operation tables, the BitNet b1.58 71.4x reproduction and the energy of a
tiny simulated program against a hand count."""

import math

import numpy as np
import pytest

from hw.config import TernConfig
from hw.estimate.energy import (add_energy_pj, core_energy, energy_table, paper_matmul_energy_pj,
                                sram_pj_per_bit)
from hw.program import linear_program
from hw.sim import simulate


def test_bitnet_b158_71_4x_at_7nm_from_the_table():
    """BitNet b1.58 (arXiv 2402.17764): 71.4x less arithmetic energy for matrix multiplication at 7 nm
    than the FP16 LLaMA baseline. Recomputed from the per-operation table (BitNet, arXiv 2310.11453,
    Table 2) the way the paper counts it: FP16 model m(n-1)p ADD + mnp MUL, BitNet b1.58 m(n-1)p INT8
    ADD; for a LLaMA-7B-sized projection (n = p = 4096) at 512 tokens."""
    t = energy_table("7nm")
    m, n, p = 512, 4096, 4096
    fp16 = paper_matmul_energy_pj(t, m, n, p, "fp16")
    b158 = paper_matmul_energy_pj(t, m, n, p, "bitnet_b1.58")
    assert fp16 == pytest.approx(m * (n - 1) * p * 0.16 + m * n * p * 0.34, rel=1e-12)
    assert b158 == pytest.approx(m * (n - 1) * p * 0.007, rel=1e-12)
    ratio = fp16 / b158
    assert round(ratio, 1) == 71.4
    # and at 45 nm the same table gives (0.4 + 1.1) / 0.03 = 50x: the ratio depends on the node
    t45 = energy_table("45nm")
    assert round(paper_matmul_energy_pj(t45, m, n, p, "fp16")
                 / paper_matmul_energy_pj(t45, m, n, p, "bitnet_b1.58"), 0) == 50


def test_tables_hold_the_cited_values():
    t45, t7 = energy_table("45nm"), energy_table("7nm")
    assert (t45.int8_add, t45.int8_mul, t45.fp16_add, t45.fp16_mul, t45.fp32_add, t45.fp32_mul) == \
        (0.03, 0.2, 0.4, 1.1, 0.9, 3.7)
    assert (t7.int8_add, t7.int8_mul, t7.fp16_add, t7.fp16_mul, t7.fp32_add, t7.fp32_mul) == \
        (0.007, 0.07, 0.16, 0.34, 0.38, 1.31)
    assert t45.dram_pj_per_bit == 1300 / 64


def test_adder_energy_linear_in_width_through_horowitz_points():
    t45, t7 = energy_table("45nm"), energy_table("7nm")
    assert add_energy_pj(t45, 8) == pytest.approx(0.03)
    assert add_energy_pj(t45, 32) == pytest.approx(0.1)
    assert abs(add_energy_pj(t45, 16) - 0.05) / 0.05 < 0.07      # Horowitz's 16-bit point, within 7%
    assert add_energy_pj(t7, 8) == pytest.approx(0.007)
    for w in (9, 12, 20, 32):
        assert add_energy_pj(t7, w) / add_energy_pj(t45, w) == pytest.approx(0.007 / 0.03)
    with pytest.raises(ValueError, match="width"):
        add_energy_pj(t45, 0)


def test_sram_per_bit_interpolation():
    t = energy_table("45nm")
    kb = 8 * 1024
    assert sram_pj_per_bit(t, 8 * kb) == pytest.approx(10 / 64)
    assert sram_pj_per_bit(t, 100) == pytest.approx(10 / 64)          # clamped below 8 KB
    assert sram_pj_per_bit(t, 32 * kb) == pytest.approx(20 / 64)
    assert sram_pj_per_bit(t, 1024 * kb) == pytest.approx(100 / 64)
    # log-log midpoint between 8 KB and 32 KB (16 KB): geometric mean
    assert sram_pj_per_bit(t, 16 * kb) == pytest.approx(math.sqrt(10 * 20) / 64)
    assert sram_pj_per_bit(t, 2048 * kb) > 100 / 64


def test_unknown_node():
    with pytest.raises(ValueError, match="3nm"):
        energy_table("3nm")


@pytest.mark.parametrize("node", ["45nm", "7nm"])
def test_core_energy_matches_hand_count_on_tiny_program(node):
    """R=2, L=4, A=16, bus 2 bytes, 2bit: q (T=2, K=8), w (N=2, K=8). Counted by hand: 1 tile, 2 words
    of K, so 4 issue steps; every buffer is below 8 KB (Horowitz's 8 KB SRAM figure applies)."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, bus_bytes=2, act_depth=16, wgt_depth=4,
                     out_depth=2, tree_reg_every=1)
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, size=(2, 8), dtype=np.int8)
    w = rng.integers(-1, 2, size=(2, 8), dtype=np.int8)
    prog = linear_program(cfg, q, w)
    res = simulate(cfg, prog)
    R, L, A, T, kw, tiles = 2, 4, 16, 2, 2, 1
    busy = T * kw * tiles
    n_words = kw * tiles
    beats = n_words * 1                # 8 codes per word, 8 codes (2 bytes x 4) per beat
    n_out = T * tiles
    n_instr = 3                        # LOAD_ACT, MATMUL, SYNC
    scale = {"45nm": 1.0, "7nm": 0.007 / 0.03}[node]

    def add(wd):                       # pJ, linear through (8, 0.03) and (32, 0.1) at 45 nm
        return (0.03 + (wd - 8) * 0.07 / 24) * scale

    sram = 10 / 64 * scale             # pJ/bit, 8 KB macro
    dram = 1300 / 64                   # pJ/bit
    # adder tree of 4 lanes: two adders of dot_width(2) = 10 bits, one of dot_width(4) = 11 bits
    expected_pj = {
        "lane_negation": busy * R * L * add(9),
        "adder_tree": busy * R * (2 * add(10) + add(11)),
        "accumulators": busy * R * add(A),
        "weight_decoder": beats * 2 * add(8),
        "sram_act_buffer": (busy * 8 * L + T * kw * 8 * L) * sram,
        "sram_weight_buffer": (busy * 2 * R * L + n_words * 2 * R * L) * sram,
        "sram_output_fifo": 2 * n_out * A * R * sram,
        "dram_weights": beats * 2 * 8 * dram,
        "dram_activations": (T * kw * L + n_out * R * 2) * 8 * dram,
        "dram_instructions": n_instr * 8 * 8 * dram,
    }
    got = core_energy(res.events, cfg, energy_table(node))
    assert set(got) == set(expected_pj)
    for k, v in expected_pj.items():
        assert got[k] == pytest.approx(v * 1e-12, rel=1e-12), k
    # the DRAM override replaces only the DRAM terms
    low = core_energy(res.events, cfg, energy_table(node), dram_pj_per_bit=4.0)
    assert low["dram_weights"] == pytest.approx(beats * 2 * 8 * 4.0e-12)
    assert low["adder_tree"] == got["adder_tree"]
    with pytest.raises(ValueError, match="DRAM"):
        core_energy(res.events, cfg, energy_table(node), dram_pj_per_bit=-1.0)
