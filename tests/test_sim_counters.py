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
