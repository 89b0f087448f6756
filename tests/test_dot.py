"""TernaryDotUnit: exhaustive and random vectors against an independent numpy integer reference,
latency observed in simulation."""


import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.config import TernConfig, sum_width
from hw.rtl.dot import TernaryDotUnit

CODE_TO_T = np.array([-1, 0, 1, 0], dtype=np.int64)  # code 3 is invalid and counts as weight 0


def reference(acts, codes):
    """(n, L) int8 activations, (n, L) codes -> (n,) int64 dot products."""
    return (np.asarray(acts, np.int64) * CODE_TO_T[np.asarray(codes)]).sum(axis=1)


def run_stream(lanes, tree_reg_every, acts, codes):
    """Presents vector i in cycle i; returns the `sum` seen in each cycle
    (len(acts) + latency + 2 cycles) and the unit's declared latency."""
    dut = TernaryDotUnit(lanes, tree_reg_every)
    seen = []
    n = len(acts)

    async def tb(ctx):
        for i in range(n + dut.latency + 2):
            if i < n:   # payloads set through their layouts
                ctx.set(dut.act, [int(x) for x in acts[i]])
                ctx.set(dut.codes, [int(x) for x in codes[i]])
            else:
                ctx.set(dut.act, [0] * lanes)
                ctx.set(dut.codes, [0] * lanes)
            seen.append(ctx.get(dut.sum))
            await ctx.tick()

    top = Module()
    top.domains.sync = ClockDomain()  # the unit may be purely combinational
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return seen, dut.latency


@pytest.mark.parametrize("tree_reg_every", [0, 1])
def test_exhaustive_single_lane(tree_reg_every):
    acts = [[a] for a in range(-128, 128) for c in range(4)]
    codes = [[c] for a in range(-128, 128) for c in range(4)]
    seen, lat = run_stream(1, tree_reg_every, acts, codes)
    assert lat == 0  # one lane: no adder level, so no register even with tree_reg_every=1
    expect = [a[0] * {0: -1, 1: 0, 2: 1, 3: 0}[c[0]] for a, c in zip(acts, codes)]
    assert seen[:len(acts)] == expect


@pytest.mark.parametrize("lanes", [1, 3, 4, 7, 16, 64])
@pytest.mark.parametrize("tree_reg_every", [0, 1, 2, 3])
def test_random_vectors(lanes, tree_reg_every):
    seed = 1000 * lanes + tree_reg_every
    rng = np.random.default_rng(seed)
    n = 60
    acts = rng.integers(-128, 128, size=(n, lanes))
    codes = rng.integers(0, 4, size=(n, lanes))
    # a few extreme vectors among the random ones
    acts[0], codes[0] = -128, 0
    acts[1], codes[1] = -128, 2
    acts[2], codes[2] = 127, 2
    acts[3], codes[3] = 127, 0
    seen, lat = run_stream(lanes, tree_reg_every, acts.tolist(), codes.tolist())
    levels = TernConfig(lanes=lanes, tree_reg_every=tree_reg_every,
                        acc_width=32).tree_levels
    assert lat == (levels // tree_reg_every if tree_reg_every else 0), (seed, lanes, tree_reg_every)
    got = np.array(seen[lat:lat + n], dtype=np.int64)
    exp = reference(acts, codes)
    assert np.array_equal(got, exp), f"seed={seed} lanes={lanes} tree_reg_every={tree_reg_every}"
    if lat:
        assert seen[0] == 0  # before the first result arrives the registers hold their reset value


@pytest.mark.parametrize("lanes", [1, 2, 5, 64, 256])
def test_extremes(lanes):
    cfg = TernConfig(lanes=lanes, acc_width=max(32, TernConfig(lanes=lanes).dot_width))
    acts = [[-128] * lanes, [-128] * lanes, [127] * lanes, [127] * lanes]
    codes = [[2] * lanes, [0] * lanes, [2] * lanes, [0] * lanes]
    seen, lat = run_stream(lanes, 2, acts, codes)
    exp = [-128 * lanes, 128 * lanes, 127 * lanes, -127 * lanes]
    assert seen[lat:lat + 4] == exp, f"lanes={lanes}"
    assert sum_width(lanes) == cfg.dot_width
    # 128*L is the largest magnitude and needs exactly dot_width signed bits
    assert 128 * lanes <= 2 ** (cfg.dot_width - 1) - 1 < 2 * 128 * lanes


@pytest.mark.parametrize("lanes,tree_reg_every,latency",
                         [(1, 1, 0), (2, 1, 1), (4, 1, 2), (7, 1, 3), (8, 2, 1), (16, 2, 2),
                          (64, 2, 3), (64, 3, 2), (64, 4, 1), (64, 6, 1), (64, 7, 0), (64, 0, 0)])
def test_latency_observed(lanes, tree_reg_every, latency):
    """The first cycle in which a single non-zero input's result appears is the latency."""
    acts = [[100] * lanes]
    codes = [[2] * lanes]
    seen, lat = run_stream(lanes, tree_reg_every, acts, codes)
    assert lat == latency
    first = next(i for i, s in enumerate(seen) if s == 100 * lanes)
    assert first == latency
    assert all(s == 0 for s in seen[latency + 1:])  # followed by zero inputs


def test_bad_parameters():
    with pytest.raises(ValueError, match="lanes"):
        TernaryDotUnit(0, 1)
    with pytest.raises(TypeError, match="lanes"):
        TernaryDotUnit(4.0, 1)
    with pytest.raises(ValueError, match="tree_reg_every"):
        TernaryDotUnit(4, 17)
