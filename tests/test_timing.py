"""hw.timing: the stream timing model, and the RTL harness (hw.backends.amaranth) replaying it exactly.

The harness checks compare the cycle of every transfer on the RTL with the model's equation
``x_i = max(x_{i-1} + 1 + gap_i, latency + floor(i / rate))`` evaluated here by an explicit loop, in
situations where the core's side of the stream is known to be ready (NOPs are accepted every cycle, a
single LOAD_ACT takes one beat per cycle, an ``out`` FIFO that is full waits only for the sink).
"""

from fractions import Fraction

import numpy as np
import pytest

from hw.config import TernConfig
from hw.isa import nop
from hw.program import ProgramBuilder
from hw.backends.amaranth import run_rtl
from hw.backends.common import HarnessError
from hw.timing import STREAMS, StreamTiming, Timing, TimingError

CFG = TernConfig(rows=2, lanes=4, acc_width=16, bus_bytes=1, act_depth=32, wgt_depth=4, out_depth=2,
                 tree_reg_every=1)


def _model(n, gaps, latency=0, rate=Fraction(1), ready_from=0):
    """Transfer cycles when the core side is ready from cycle ``ready_from`` on."""
    out, prev = [], -1
    for i in range(n):
        avail = max(prev + 1 + int(gaps[i]), latency + (i * rate.denominator) // rate.numerator)
        prev = max(avail, ready_from)
        out.append(prev)
    return out


def test_ideal_default():
    t = Timing()
    assert t.is_ideal and Timing.ideal() == t
    for s in STREAMS:
        assert t.gaps(s, 5).tolist() == [0] * 5
        assert t.not_before(s, 4).tolist() == [0, 1, 2, 3]
    assert t.avail("wgt", 0, -1) == 0 and t.avail("wgt", 7, 10) == 11


def test_gaps_seeded_prefix_consistent_and_block_independent():
    t = Timing.random(11, p_wgt=0.4, p_out=0.7)
    a = t.gaps("wgt", 10000)
    b = Timing.random(11, p_wgt=0.4, p_out=0.7).gaps("wgt", 5000)
    assert np.array_equal(a[:5000], b)
    # any window equals the same slice of the whole sequence (blocks are seeded on their own)
    assert np.array_equal(t.gaps("wgt", 300, start=4000), a[4000:4300])
    assert all(t.gap("wgt", i) == a[i] for i in (0, 1, 4095, 4096, 9999))
    assert a.min() >= 0 and a.max() > 0
    # geometric: P(gap >= 1) = p
    assert abs((a > 0).mean() - 0.4) < 0.03
    assert not np.array_equal(t.gaps("out", 100), t.gaps("wgt", 100))   # streams differ
    assert t.gaps("instr", 100).tolist() == [0] * 100
    assert not np.array_equal(Timing.random(12, p_wgt=0.4).gaps("wgt", 100), a[:100])


def test_explicit_gaps_and_bus():
    st = StreamTiming(gaps=(3, 0, 2))
    t = Timing(act=st)
    assert t.gaps("act", 5).tolist() == [3, 0, 2, 0, 0]
    b = Timing.bus(rate=Fraction(2, 3), latency=5)
    assert b.not_before("wgt", 6).tolist() == [5, 6, 8, 9, 11, 12]
    assert Timing.bus(rate=0.25).not_before("wgt", 3).tolist() == [0, 4, 8]
    assert not b.is_ideal and b.act.is_ideal


def test_round_trip():
    t = Timing(StreamTiming(0.2), StreamTiming(latency=3, rate=Fraction(1, 3)), StreamTiming(gaps=(1, 2)),
               StreamTiming(0.5), seed=9)
    u = Timing.from_dict(t.to_dict())
    assert u == t and hash(u) == hash(t)
    assert np.array_equal(u.gaps("out", 50), t.gaps("out", 50))
    assert t.replace(seed=10) != t


@pytest.mark.parametrize("kwargs, msg", [
    ({"p_stall": 1.0}, "p_stall"), ({"p_stall": -0.1}, "p_stall"), ({"latency": -1}, "latency"),
    ({"rate": 0}, "rate"), ({"rate": Fraction(3, 2)}, "rate"), ({"rate": "fast"}, "rate"),
    ({"gaps": (1, -1)}, "gaps"), ({"latency": True}, "latency"),
])
def test_stream_timing_rejects(kwargs, msg):
    with pytest.raises(TimingError, match=msg):
        StreamTiming(**kwargs)


def test_timing_rejects():
    with pytest.raises(TimingError, match="seed"):
        Timing(seed=-1)
    with pytest.raises(TimingError, match="instr"):
        Timing(instr=3)
    with pytest.raises(TimingError, match="unknown stream"):
        Timing().gaps("bus", 3)
    with pytest.raises(TimingError, match="unknown key"):
        Timing.from_dict({"wgt": {}, "clock": 1})


def test_harness_replays_instr_gaps():
    """NOPs retire in their first cycle in D, so instr.ready is always high: every accept cycle is
    exactly the model's."""
    gaps = (2, 0, 5, 1, 0, 0, 3)
    t = Timing(instr=StreamTiming(gaps=gaps, latency=1, rate=Fraction(1, 2)))
    prog_words = [nop().word] * 10
    r = run_rtl(CFG, words=prog_words, timing=t)
    exp = _model(10, list(gaps) + [0] * 3, latency=1, rate=Fraction(1, 2))
    assert r.instr_cycles.tolist() == exp
    # the last NOP reaches D check_stages + 1 cycles after it was taken and retires there
    assert r.cycles == exp[-1] + CFG.check_stages + 2 == r.counters["cycles"]
    assert r.counters["idle"] == r.cycles


def test_harness_replays_act_stalls():
    """One LOAD_ACT: current from cycle D = dispatch_latency (ARCHITECTURE.md), then one beat per
    offered cycle."""
    rng = np.random.default_rng(0)
    n = 20
    t = Timing.random(5, p_act=0.5)
    prog = ProgramBuilder(CFG).load_act(0, rng.integers(-128, 128, (n, 4))).build()
    r = run_rtl(CFG, prog, t)
    d = CFG.dispatch_latency
    exp = _model(n, t.gaps("act", n), ready_from=d)
    assert r.act_cycles.tolist() == exp
    assert r.counters["act_beats"] == n and r.counters["stall_act"] == exp[-1] - (d - 1) - n


def test_harness_replays_out_backpressure():
    """A long MATMUL of one-word tokens with a slow sink: once the FIFO is full, every result leaves
    exactly when the sink's ready rises (out_depth=2 results queued, more credits blocked)."""
    rng = np.random.default_rng(1)
    T = 12
    t = Timing(out=StreamTiming(gaps=(9,) * T))
    b = ProgramBuilder(CFG).load_act(0, rng.integers(-128, 128, (T, 4)))
    b.matmul(0, rng.integers(-1, 2, (2, 4)), T)
    prog = b.build()
    r = run_rtl(CFG, prog, t)
    assert np.array_equal(r.outputs, prog.expected)
    oc = r.out_cycles.tolist()
    # the sink is ready 10 cycles after each transfer, and a result is always waiting by then
    assert all(oc[i] - oc[i - 1] == 10 for i in range(1, T))
    # ARCHITECTURE.md: act beats in cycles D .. D-1+T, the first issue in D+T (its word was written
    # long before), its result leaves R cycles later (the sink has been ready since cycle 9)
    assert oc[0] == CFG.dispatch_latency + T + CFG.result_latency


def test_harness_cycle_limit():
    b = ProgramBuilder(CFG)
    b.load_act(0, np.zeros((2, 4), dtype=int))
    prog = b.build()
    with pytest.raises(HarnessError, match="did not finish"):
        run_rtl(CFG, words=prog.words, act_beats=prog.act_beats[:1])


def test_withdrawn_cycles_are_seeded_per_stream_and_next_on_skips_them():
    t = Timing(act=StreamTiming(p_withdraw=0.3), out=StreamTiming(p_withdraw=0.6), seed=5)
    off = [t.withdrawn("act", c) for c in range(9000)]
    assert abs(np.mean(off) - 0.3) < 0.03
    assert off == [Timing(act=StreamTiming(p_withdraw=0.3), seed=5).withdrawn("act", c) for c in range(9000)]
    assert off[:500] != [t.withdrawn("out", c) for c in range(500)]
    assert not any(t.withdrawn("wgt", c) for c in range(100)) and not t.withdraws("wgt")
    for c in (0, 7, 4095, 4096, 8190):
        n = c
        while off[n]:
            n += 1
        assert t.next_on("act", c) == n
    assert t.next_on("wgt", 17) == 17 and t.next_on("act", -1) == -1
    # serialized and replayed exactly; garbage is a flag of the sources
    g = t.replace(wgt=StreamTiming(garbage=True))
    assert Timing.from_dict(g.to_dict()) == g and not g.wgt.is_ideal and g.wgt.garbage
    assert g.garbage_rng("wgt").getrandbits(32) == g.garbage_rng("wgt").getrandbits(32)
    assert g.garbage_rng("act") is None


@pytest.mark.parametrize("kwargs, needle", [({"p_withdraw": 1.0}, "p_withdraw"),
                                            ({"p_withdraw": -0.1}, "p_withdraw"),
                                            ({"garbage": 1}, "garbage")])
def test_bad_withdrawal_fields(kwargs, needle):
    with pytest.raises(TimingError, match=needle):
        StreamTiming(**kwargs)
