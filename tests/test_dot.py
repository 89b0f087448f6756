"""TernaryDotUnit, every variant of hw.config.DOT_VARIANTS: exhaustive and random vectors against an
independent numpy integer reference, latency observed in simulation (equal to the configuration's),
no multiplier cell after Yosys's coarse flow."""


import itertools

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from hw.config import DOT_VARIANTS, TernConfig, sum_width
from hw.rtl.dot import TernaryDotUnit

CODE_TO_T = np.array([-1, 0, 1, 0], dtype=np.int64)  # code 3 is invalid and counts as weight 0


def reference(acts, codes):
    """(n, L) int8 activations, (n, L) codes -> (n,) int64 dot products."""
    return (np.asarray(acts, np.int64) * CODE_TO_T[np.asarray(codes)]).sum(axis=1)


def run_stream(lanes, tree_reg_every, acts, codes, variant="mux", carry_out=False):
    """Presents vector i in cycle i; returns the `sum` seen in each cycle
    (len(acts) + latency + 2 cycles; with ``carry_out`` ``sum + carry``) and the unit's declared
    latency."""
    dut = TernaryDotUnit(lanes, tree_reg_every, variant=variant, carry_out=carry_out)
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
            seen.append(ctx.get(dut.sum) + (ctx.get(dut.carry) if carry_out else 0))
            await ctx.tick()

    top = Module()
    top.domains.sync = ClockDomain()  # the unit may be purely combinational
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return seen, dut.latency


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("tree_reg_every", [0, 1])
def test_exhaustive_single_lane(tree_reg_every, variant):
    acts = [[a] for a in range(-128, 128) for c in range(4)]
    codes = [[c] for a in range(-128, 128) for c in range(4)]
    seen, lat = run_stream(1, tree_reg_every, acts, codes, variant)
    assert lat == 0  # one lane: no adder level, so no register even with tree_reg_every=1
    expect = [a[0] * {0: -1, 1: 0, 2: 1, 3: 0}[c[0]] for a, c in zip(acts, codes)]
    assert seen[:len(acts)] == expect


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 7, 16, 64])
@pytest.mark.parametrize("tree_reg_every", [0, 1, 2, 3])
def test_random_vectors(lanes, tree_reg_every, variant):
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
    seen, lat = run_stream(lanes, tree_reg_every, acts.tolist(), codes.tolist(), variant)
    levels = (lanes - 1).bit_length()
    assert lat == (levels // tree_reg_every if tree_reg_every else 0), (seed, lanes, tree_reg_every)
    assert lat == TernConfig(lanes=lanes, tree_reg_every=tree_reg_every,
                             dot_variant=variant).dot_latency
    got = np.array(seen[lat:lat + n], dtype=np.int64)
    exp = reference(acts, codes)
    assert np.array_equal(got, exp), f"seed={seed} lanes={lanes} tree_reg_every={tree_reg_every} " \
                                     f"variant={variant}"
    if lat and not variant.startswith("slot"):
        # before the first result arrives the registers hold their reset value (the slot
        # variants' registers hold complemented sums, whose reset value is no result either)
        assert seen[0] == 0


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("lanes", [1, 2, 5, 64, 256])
def test_extremes(lanes, variant):
    cfg = TernConfig(lanes=lanes, acc_width=max(32, TernConfig(lanes=lanes).dot_width))
    acts = [[-128] * lanes, [-128] * lanes, [127] * lanes, [127] * lanes, [-128] * lanes,
            [127] * lanes]
    codes = [[2] * lanes, [0] * lanes, [2] * lanes, [0] * lanes, [3] * lanes, [1] * lanes]
    seen, lat = run_stream(lanes, 2, acts, codes, variant)
    exp = [-128 * lanes, 128 * lanes, 127 * lanes, -127 * lanes, 0, 0]
    assert seen[lat:lat + 6] == exp, f"lanes={lanes} variant={variant}"
    assert sum_width(lanes) == cfg.dot_width
    # 128*L is the largest magnitude and needs exactly dot_width signed bits
    assert 128 * lanes <= 2 ** (cfg.dot_width - 1) - 1 < 2 * 128 * lanes


@pytest.mark.parametrize("lanes,tree_reg_every,latency",
                         [(1, 1, 0), (2, 1, 1), (4, 1, 2), (7, 1, 3), (8, 2, 1), (16, 2, 2),
                          (64, 2, 3), (64, 3, 2), (64, 4, 1), (64, 6, 1), (64, 7, 0), (64, 0, 0)])
@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_latency_observed(lanes, tree_reg_every, latency, variant):
    """The first cycle in which a single non-zero input's result appears is the latency."""
    acts = [[100] * lanes]
    codes = [[2] * lanes]
    seen, lat = run_stream(lanes, tree_reg_every, acts, codes, variant)
    assert lat == latency == TernConfig(lanes=lanes, tree_reg_every=tree_reg_every,
                                        dot_variant=variant).dot_latency
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
    with pytest.raises(ValueError, match="variant"):
        TernaryDotUnit(4, 1, variant="wallace")


EDGE_ACTS = (-128, -127, -1, 0, 1, 126, 127)


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("lanes,tree_reg_every", [(2, 0), (2, 1), (3, 1), (3, 2)])
def test_exhaustive_codes_edge_activations(lanes, tree_reg_every, variant):
    """Every code combination (4**lanes, code 3 included) with every combination of edge activations
    (-128, -127, -1, 0, 1, 126, 127) on 2 lanes, and with each edge value on all lanes plus a
    random activation vector per code combination on 3 lanes."""
    codes_all = list(itertools.product(range(4), repeat=lanes))
    if lanes == 2:
        act_sets = list(itertools.product(EDGE_ACTS, repeat=2))
    else:
        rng = np.random.default_rng(lanes + 10 * tree_reg_every)
        act_sets = [(v,) * lanes for v in EDGE_ACTS] + \
            [tuple(int(x) for x in rng.integers(-128, 128, lanes)) for _ in range(4)]
    acts = [a for a in act_sets for _ in codes_all]
    codes = [c for _ in act_sets for c in codes_all]
    seen, lat = run_stream(lanes, tree_reg_every, acts, codes, variant)
    exp = reference(acts, codes)
    assert np.array_equal(np.array(seen[lat:lat + len(acts)], dtype=np.int64), exp), variant


@pytest.mark.parametrize("variant", DOT_VARIANTS)
@pytest.mark.parametrize("lanes,tree_reg_every", [(1, 1), (2, 1), (5, 2), (16, 2), (64, 2)])
def test_carry_out_sum_plus_carry_is_exact(lanes, tree_reg_every, variant):
    """With ``carry_out`` (the PE array's form) ``sum + carry`` is the dot product, carry 0..1."""
    rng = np.random.default_rng(77 + lanes)
    acts = rng.integers(-128, 128, size=(40, lanes))
    codes = rng.integers(0, 4, size=(40, lanes))
    acts[0], codes[0] = -128, 0
    acts[1], codes[1] = -128, 2
    seen, lat = run_stream(lanes, tree_reg_every, acts.tolist(), codes.tolist(), variant,
                           carry_out=True)
    assert np.array_equal(np.array(seen[lat:lat + 40], dtype=np.int64), reference(acts, codes))


@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_tree_widths_are_the_configuration_s(variant):
    """The root node is ``tree_node_width(lanes, first=True)`` bits (at most ``dot_width``): the
    elaboration check passes for odd and even lane counts, and the carry-based trees are narrower."""
    for lanes in (1, 2, 3, 16, 17, 64):
        cfg = TernConfig(lanes=lanes, tree_reg_every=1, dot_variant=variant)
        assert cfg.tree_node_width(lanes, first=True) <= cfg.dot_width
        Fragment.get(TernaryDotUnit(lanes, 1, variant=variant), None)
    if variant == "carry":
        assert TernConfig(lanes=64, dot_variant=variant).tree_node_width(64) == 14
        assert TernConfig(lanes=64, dot_variant=variant).tree_node_width(2) == 9


@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_no_multiplier_cells(variant):
    """Yosys's coarse flow (before alumacc, so a product would show as $mul) finds no multiplier,
    divider or MAC in the dot unit of any variant."""
    from hw.flows.yosys import cell_histogram, multiplier_cells
    hist = cell_histogram(TernaryDotUnit(16, 2, variant=variant), "prep")
    assert any(c in hist for c in ("$add", "$sub", "$alu")), hist    # the check sees the adders
    assert multiplier_cells(hist) == {}, hist
