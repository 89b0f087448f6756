"""PEArray: random configurations and step schedules against a numpy int64 reference with explicit
A-bit wrapping; result_valid timing checked cycle by cycle; every dot-unit variant, also through the
whole core against the simulator (bit- and cycle-exact)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import DOT_VARIANTS, TernConfig
from hw.rtl.pe_array import PEArray

CODE_TO_T = np.array([-1, 0, 1, 0], dtype=np.int64)


def wrap(x, bits):
    x = np.asarray(x, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(x >= 1 << (bits - 1), x - (1 << bits), x)


def make_schedule(cfg, rng, n_tokens, k_words, p_bubble):
    """Per-cycle inputs (valid, first, last, act (L,), codes (R, L)) and the expected results:
    a list of (cycle of the token's last step, (R,) int64 result)."""
    R, L = cfg.rows, cfg.lanes
    cycles, expected = [], []
    for _ in range(n_tokens):
        acc = np.zeros(R, dtype=np.int64)
        kw = k_words if k_words else rng.randint(1, 5)
        for k in range(kw):
            while rng.random() < p_bubble:  # bubble: random garbage that must be ignored
                cycles.append((0, rng.randint(0, 1), rng.randint(0, 1),
                               np.array([rng.randint(-128, 127) for _ in range(L)]),
                               np.array([[rng.randint(0, 3) for _ in range(L)] for _ in range(R)])))
            act = np.array([rng.randint(-128, 127) for _ in range(L)], dtype=np.int64)
            codes = np.array([[rng.randint(0, 3) for _ in range(L)] for _ in range(R)])
            if rng.random() < 0.1:
                act[:] = rng.choice([-128, 127])
                codes[:] = rng.choice([0, 2])
            d = (CODE_TO_T[codes] * act[None, :]).sum(axis=1)  # (R,)
            acc = d if k == 0 else acc + d
            cycles.append((1, int(k == 0), int(k == kw - 1), act, codes))
            if k == kw - 1:
                expected.append((len(cycles) - 1, wrap(acc, cfg.acc_width)))
    return cycles, expected


def run(cfg, cycles):
    """Drives the schedule; returns [(cycle, result list)] for every cycle with result_valid."""
    dut = PEArray(cfg)
    lat = dut.latency
    R = cfg.rows
    got = []

    async def tb(ctx):
        for i in range(len(cycles) + lat + 3):
            if i < len(cycles):
                v, f, la, act, codes = cycles[i]
            else:
                v, f, la, act, codes = 0, 1, 1, np.zeros(cfg.lanes), np.zeros((cfg.rows, cfg.lanes))
            ctx.set(dut.valid, v)
            ctx.set(dut.first, f)
            ctx.set(dut.last, la)
            # payloads set and read through their layouts
            ctx.set(dut.act, [int(x) for x in act])
            ctx.set(dut.codes, [[int(x) for x in row] for row in codes])
            if ctx.get(dut.result_valid):
                result = ctx.get(dut.result)
                got.append((i, [result[r] for r in range(R)]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got, lat


def check(cfg, seed, n_tokens, k_words, p_bubble):
    rng = random.Random(seed)
    cycles, expected = make_schedule(cfg, rng, n_tokens, k_words, p_bubble)
    got, lat = run(cfg, cycles)
    msg = f"seed={seed} config={cfg}"
    assert lat == cfg.dot_latency + 1, msg
    assert [c for c, _ in got] == [c + lat for c, _ in expected], msg
    for (_, g), (_, e) in zip(got, expected):
        assert np.array_equal(np.array(g, dtype=np.int64), e), msg


def random_config(rng, variant="mux"):
    rows = rng.randint(1, 16)
    lanes = rng.choice([4, 5, 8, 13, 16, 32, 64])
    tre = rng.randint(0, 3)
    base = TernConfig(rows=rows, lanes=lanes, tree_reg_every=tre, dot_variant=variant)
    return base.replace(acc_width=rng.choice([base.dot_width, base.dot_width + 2, 32]))


@pytest.mark.parametrize("seed", range(8))
def test_random_configs_with_bubbles(seed):
    rng = random.Random(seed)
    cfg = random_config(rng)
    check(cfg, seed, n_tokens=12, k_words=0, p_bubble=0.3)


@pytest.mark.parametrize("variant", [v for v in DOT_VARIANTS if v != "mux"])
@pytest.mark.parametrize("seed", range(4))
def test_variants_random_configs_with_bubbles(variant, seed):
    rng = random.Random(500 + seed)
    cfg = random_config(rng, variant)
    check(cfg, 500 + seed, n_tokens=12, k_words=0, p_bubble=0.3)


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("rows,lanes,tre", [(2, 1, 1), (3, 2, 1), (2, 3, 0), (2, 16, 2), (1, 64, 2)])
def test_variants_one_step_tokens_and_wrap(variant, rows, lanes, tre):
    """Every variant, first & last on every step (a result every cycle, with and without bubbles)
    and the smallest accumulator (acc_width = dot_width), so the results wrap."""
    base = TernConfig(rows=rows, lanes=lanes, tree_reg_every=tre, dot_variant=variant)
    check(base.replace(acc_width=base.dot_width), 600 + lanes, n_tokens=16, k_words=1, p_bubble=0.0)
    check(base.replace(acc_width=base.dot_width), 700 + lanes, n_tokens=6, k_words=0, p_bubble=0.4)


@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_variants_no_multiplier_cells(variant):
    """Yosys's coarse flow finds no multiplier/MAC cell in the PE array of any variant."""
    from hw.flows.yosys import cell_histogram, multiplier_cells
    hist = cell_histogram(PEArray(TernConfig(rows=2, lanes=8, acc_width=20, tree_reg_every=1,
                                             dot_variant=variant)), "prep")
    assert multiplier_cells(hist) == {}, hist


@pytest.mark.parametrize("variant", [v for v in DOT_VARIANTS if v != "mux"])
def test_variant_through_the_core_is_bit_and_cycle_exact(variant):
    """The whole core with a non-default dot unit against the simulator: random programs, no output
    or cycle mismatch (the simulator knows nothing of the variant: the machine is the same)."""
    from hw.verify.differential import run_verify
    cfg = TernConfig(rows=3, lanes=7, weight_format="2bit", bus_bytes=2, act_depth=16, wgt_depth=4,
                     out_depth=2, tree_reg_every=1, acc_width=16, dot_variant=variant)
    r = run_verify("amaranth", 4, 11, config=cfg)
    assert r["programs"] == 4 and r["mismatches"] == r["cycle_mismatches"] == 0, r


@pytest.mark.parametrize("tre", [0, 1, 2, 3])
def test_back_to_back_no_bubbles(tre):
    """Tokens of 3 steps back to back: a result every 3 cycles, none lost."""
    cfg = TernConfig(rows=4, lanes=16, tree_reg_every=tre)
    check(cfg, 100 + tre, n_tokens=10, k_words=3, p_bubble=0.0)


@pytest.mark.parametrize("tre", [0, 1, 3])
def test_first_and_last_same_cycle(tre):
    """k_words = 1: every step is first & last, a result every cycle."""
    cfg = TernConfig(rows=3, lanes=8, tree_reg_every=tre)
    check(cfg, 200 + tre, n_tokens=20, k_words=1, p_bubble=0.0)
    check(cfg, 300 + tre, n_tokens=20, k_words=1, p_bubble=0.5)


@pytest.mark.parametrize("lanes", [4, 7])
def test_wraparound_small_accumulator(lanes):
    """acc_width = dot_width: long accumulations of extreme values wrap two's complement."""
    base = TernConfig(rows=2, lanes=lanes, tree_reg_every=1)
    cfg = base.replace(acc_width=base.dot_width)
    R, L = cfg.rows, cfg.lanes
    cycles, acc = [], np.zeros(R, dtype=np.int64)
    steps = 9
    for k in range(steps):
        act = np.full(L, -128 if k % 3 else 127)
        codes = np.array([[2] * L, [0] * L])
        acc = acc + (CODE_TO_T[codes] * act[None, :]).sum(axis=1)
        cycles.append((1, int(k == 0), int(k == steps - 1), act, codes))
    assert np.abs(acc).max() >= 2 ** (cfg.acc_width - 1)  # the test really wraps
    got, lat = run(cfg, cycles)
    assert [c for c, _ in got] == [steps - 1 + lat]
    assert np.array_equal(np.array(got[0][1]), wrap(acc, cfg.acc_width))


def test_large_default_config():
    cfg = TernConfig()  # 16 rows x 64 lanes
    check(cfg, 7, n_tokens=4, k_words=0, p_bubble=0.2)


def test_bad_config():
    with pytest.raises(TypeError, match="TernConfig"):
        PEArray({"rows": 4})
