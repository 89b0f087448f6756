"""hw.sim.output: results leave ``out`` in order, ``result_latency`` after their tokens' last issue
at the earliest and as the ``out`` stream allows; credits come back one ``out_depth`` later."""

from hw.config import TernConfig
from hw.sim.output import OutputFIFO
from hw.sim.recurrence import NEG
from hw.timing import StreamTiming, Timing

CFG = TernConfig(rows=4, lanes=8, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=2, tree_reg_every=1)


def test_config():
    assert CFG.result_latency == (CFG.ram_latency + CFG.operand_latency + CFG.pe_latency
                                  + CFG.out_fifo_latency) == 7


def test_results_follow_their_last_issue():
    import numpy as np
    out = OutputFIFO(CFG, Timing(), 4)
    assert out.last == -1 and out.credit_free(0) == out.credit_free(1) == NEG
    out.write(np.array([10]))
    out.write(np.array([12, 12, 20]))
    assert out.out.t.tolist() == [17, 19, 20, 27]      # in order, one per cycle at most
    assert out.n == 4 and out.last == 27
    assert out.credit_free(2) == 18 and out.credit_free(3) == 20
    assert out.credits_free(1, 3).tolist() == [NEG, 18]


def test_out_stream_gaps():
    import numpy as np
    out = OutputFIFO(CFG, Timing(out=StreamTiming(gaps=[0, 5])), 2)
    out.write(np.array([10, 12]))
    assert out.out.t.tolist() == [17, 23]              # the second waits 1 + 5 cycles after the first


def test_one_result_at_a_time_is_the_same_recurrence():
    """write_one (a decode MATMUL's result) against the closed form by hand, with gaps, a bus
    latency and a withdrawn ``out`` stream: o_n = next_on(max(o_{n-1} + 1 + gap_n, not_before_n,
    last_issue_n + 7))."""
    import numpy as np
    timing = Timing(out=StreamTiming(gaps=[0, 5, 0, 2], latency=3, p_withdraw=0.4), seed=3)
    issues = [1, 12, 13, 40, 41, 41]
    one = OutputFIFO(CFG, timing, len(issues))
    prev, want = -1, []
    for n, c in enumerate(issues):
        one.write_one(c)
        gap = [0, 5, 0, 2][n] if n < 4 else 0
        t = max(prev + 1 + gap, 3, c + 7)
        while timing.withdrawn("out", t):
            t += 1
        want.append(prev := t)
        assert one.n == n + 1 and one.last == t
    assert one.out.t.tolist() == want
    many = OutputFIFO(CFG, timing, len(issues))
    many.write(np.array(issues))
    assert many.out.t.tolist() == want
