"""hw.sim.counters: the six cycle-partitioning counters add up to the cycle count, with every
counter of the configuration's set present."""

import numpy as np
import pytest

from hw.result import PERF_COUNTERS
from hw.sim import simulate
from hw.verify.generate import random_case

PARTS = ("busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle")


@pytest.mark.parametrize("seed", range(20))
def test_counters_partition_cycles(seed):
    case = random_case(100 + seed, 0)
    r = simulate(case.config, case.program, case.timing)
    assert sum(r.counters[k] for k in PARTS) == r.cycles == r.counters["cycles"]
    assert r.counters["busy"] == case.program.n_matmul_steps
    assert np.array_equal(r.outputs, case.program.expected)
    assert r.error == case.program.expected_error
    assert set(r.counters) == set(PERF_COUNTERS)
    assert tuple(r.counters) == case.config.perf_counters   # in port order


def test_reduced_set_end_to_end():
    """A configuration with three 16-bit counters: the RTL (amaranth backend) and the simulator
    report exactly those, wrapped; cycle counts and every transfer agree; derived figures that need
    an absent counter are None."""
    from hw.backends.amaranth import run_rtl
    from hw.config import TernConfig
    from hw.program import ProgramBuilder

    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=4,
                     perf_counters=("cycles", "stall_weight", "wgt_beats"), perf_width=16)
    rng = np.random.default_rng(3)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (8, 4)))
    b.matmul(0, rng.integers(-1, 2, (2, 8)), 4)
    prog = b.build()
    sim, rtl = simulate(cfg, prog), run_rtl(cfg, prog)
    assert sim.compare(rtl) == []
    assert tuple(sim.counters) == tuple(rtl.counters) == ("cycles", "stall_weight", "wgt_beats")
    assert sim.counters["cycles"] == sim.cycles and sim.counters["wgt_beats"] == len(prog.wgt_beats)
    assert sim.utilization is None and sim.summary()["utilization"] is None
    # the energy events do not depend on which counters the core has
    full = simulate(cfg.replace(perf_counters=PERF_COUNTERS, perf_width=48), words=prog.words,
                    act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    assert sim.events == full.events and np.array_equal(sim.outputs, full.outputs)


def test_counters_wrap_in_the_simulator():
    """The simulator's counters wrap at perf_width like the registers (the cycle count does not)."""
    from hw.config import TernConfig
    from hw.sim.counters import PerfCounters

    c = PerfCounters(TernConfig(perf_width=16))
    c.busy = (1 << 16) + 5
    v = c.values(c.counts(cycles=(1 << 17) + 9, act_beats=3, wgt_beats=(1 << 16)))
    assert (v["cycles"], v["busy"], v["act_beats"], v["wgt_beats"]) == (9, 5, 3, 0)


def test_driver_reports_absent_counters_as_none():
    """The driver (Accelerator, its report) on a core without busy/wgt_beats counters: the result is
    still exact, the figures that need those counters are None."""
    from hw.config import TernConfig
    from sw.driver.runtime import Accelerator

    cfg = TernConfig(rows=4, lanes=8, acc_width=20, act_depth=64, wgt_depth=8, out_depth=4,
                     perf_counters=("cycles", "stall_weight"), perf_width=32)
    rng = np.random.default_rng(5)
    q, w = rng.integers(-128, 128, (3, 20)), rng.integers(-1, 2, (6, 20))
    acc = Accelerator(cfg)
    assert np.array_equal(acc.linear(q, w), q @ w.T)
    s = acc.stats
    assert s["cycles"] > 0 and s["utilization"] is None and s["bus_utilization"] is None
    assert acc.totals()["busy"] is None and acc.totals()["cycles"] == s["cycles"]
    assert all(k["busy"] is None for k in s["breakdown"].values())
