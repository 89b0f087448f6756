"""PerfCounters: one counter per name of config.perf_counters in one struct port; each counts the cycles
its event bit was high (the value in cycle c covers cycles 0..c-1). The events of the whole core are
checked in test_controller.py (they partition the cycles) and test_top.py."""

import random

import pytest
from amaranth.sim import Simulator

from hw.config import PERF_COUNTERS, TernConfig
from hw.rtl.counters import PerfCounters, counters_layout


def test_layout_from_config():
    cfg = TernConfig()
    layout = counters_layout(cfg)
    assert tuple(name for name, _ in layout) == PERF_COUNTERS == cfg.perf_counters
    assert all(field.width == cfg.perf_width == 48 and not field.shape.signed
               for _, field in layout)
    assert layout.size == 48 * len(PERF_COUNTERS)


@pytest.mark.parametrize("seed", [1, 2])
def test_counts_random_events(seed):
    rng = random.Random(seed)
    cfg = TernConfig()
    dut = PerfCounters(cfg)
    names = cfg.perf_counters
    p = {name: rng.uniform(0.2, 0.8) for name in names}
    model = dict.fromkeys(names, 0)

    async def tb(ctx):
        for cycle in range(300):
            events = {name: rng.random() < p[name] for name in names}
            for name, v in events.items():
                ctx.set(dut.events[name], v)
            perf = ctx.get(dut.perf)
            assert {name: perf[name] for name in names} == model, f"seed={seed} cycle={cycle}"
            await ctx.tick()
            for name, v in events.items():
                model[name] += v
        assert all(0 < model[name] < 300 for name in names), model  # every counter really counted

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_bad_config():
    with pytest.raises(TypeError, match="TernConfig"):
        PerfCounters(None)


def test_reduced_set_and_width():
    """A configuration with fewer, narrower counters: only those fields, in PERF_COUNTERS order."""
    cfg = TernConfig(perf_counters=["busy", "cycles", "wgt_beats"], perf_width=16)
    layout = counters_layout(cfg)
    assert tuple(name for name, _ in layout) == ("cycles", "busy", "wgt_beats")
    assert layout.size == 3 * 16


def test_counters_wrap_at_their_width():
    """Counting every cycle, a 16-bit counter reads c mod 2**16 in cycle c."""
    cfg = TernConfig(perf_counters=("cycles",), perf_width=16)
    dut = PerfCounters(cfg)

    async def tb(ctx):
        ctx.set(dut.events.cycles, 1)
        await ctx.tick().repeat((1 << 16) - 2)
        assert ctx.get(dut.perf.cycles) == (1 << 16) - 2
        await ctx.tick().repeat(5)
        assert ctx.get(dut.perf.cycles) == 3        # 65539 mod 65536

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
