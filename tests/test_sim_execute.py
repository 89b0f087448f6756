"""hw.sim.execute: the execute engine's timing rules on hand-worked cases: no bubble between
instructions, token 0 streaming behind the weight words, output credits, and the counters of each
stall."""

import numpy as np

from hw.config import TernConfig
from hw.sim.counters import PerfCounters
from hw.sim.execute import ExecuteEngine
from hw.sim.output import OutputFIFO
from hw.timing import StreamTiming, Timing

CFG = TernConfig(rows=4, lanes=8, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=4, tree_reg_every=1)


class _Values:
    """Stands in for hw.sim.results.Datapath: records what the engine hands it."""

    def __init__(self):
        self.calls = []

    def load_act(self, *args):
        self.calls.append(("load_act", *args))

    def matmul(self, *args):
        self.calls.append(("matmul", *args))


def _engine(timing=Timing(), n_act=5, n_results=6):
    counters, values = PerfCounters(CFG), _Values()
    out = OutputFIFO(CFG, timing, n_results)
    return ExecuteEngine(CFG, timing, n_act, n_results, out, counters, values), out, counters, values


def test_config():
    assert (CFG.out_depth, CFG.result_latency) == (4, 7)


def test_load_act_then_matmul_without_a_bubble():
    ex, out, c, values = _engine()
    ex.load_act(ex.pop(2), 0, 5)                       # popped in 3: beats in 4..8
    assert ex.act.t.tolist() == [4, 5, 6, 7, 8] and ex.x_finish == [8]
    popped = ex.pop(3)
    assert popped == 8                                 # popped in the LOAD_ACT's last cycle
    ex.matmul(popped, 0, 2, 6, np.array([1, 2]), 0)    # words long written: 12 steps in 9..20
    assert ex.credit_take.tolist() == [10, 12, 14, 16, 18, 20]
    assert out.out.t.tolist() == [17, 19, 21, 23, 25, 27]
    assert ex.x_finish == [8, 20] and ex.bank_release == [20]
    assert (c.busy, c.stall_act, c.stall_weight, c.stall_out, c.x_valid) == (12, 0, 0, 0, 17)
    assert values.calls == [("load_act", 0, 0, 5), ("matmul", 0, 2, 6, 0, 0)]


def test_token_zero_waits_for_its_words():
    ex, out, c, _ = _engine(n_results=1)
    ex.matmul(8, 0, 2, 1, np.array([20, 30]), 0)       # word k readable from its write + 1
    assert ex.credit_take.tolist() == [31] and ex.x_finish == [31]
    assert (c.busy, c.stall_weight, c.stall_out) == (2, (21 - 9) + (31 - 22), 0)


def test_last_step_waits_for_an_output_credit():
    ex, out, c, _ = _engine(Timing(out=StreamTiming(latency=100)))
    ex.matmul(8, 0, 2, 6, np.array([1, 2]), 0)
    # results 0..3 hold all four credits: token 4's last step waits for result 0's transfer (100);
    # result 1's credit is back (102) before token 5 has issued its two steps
    assert ex.credit_take.tolist() == [10, 12, 14, 16, 101, 103]
    assert out.out.t.tolist() == [100, 101, 102, 103, 108, 110]
    assert (c.busy, c.stall_weight, c.stall_out) == (12, 0, 83)
    assert c.x_valid == 103 - 8 == c.busy + c.stall_out
