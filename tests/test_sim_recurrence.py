"""hw.sim.recurrence: the closed form of ``t_i = max(t_{i-1} + d_i, E_i)`` against the recurrence
evaluated step by step, and the stream parameters it runs on."""

from fractions import Fraction

import numpy as np
import pytest

from hw.sim.recurrence import NEG, StreamTimes, chain, prefix_sums
from hw.timing import StreamTiming, Timing


@pytest.mark.parametrize("seed", range(20))
def test_chain_is_the_recurrence(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    d = rng.integers(0, 5, n + 10)
    lo = int(rng.integers(0, 10))
    e = rng.integers(-20, 100, n)
    e[rng.random(n) < 0.3] = NEG
    prev = int(rng.integers(-5, 50))
    expect, t = [], prev
    for i in range(n):
        t = max(t + int(d[lo + i]), int(e[i]))
        expect.append(t)
    assert chain(prev, prefix_sums(d), lo, e).tolist() == expect


def test_chain_of_one_event_is_the_recurrence():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 5, 12)
    s = prefix_sums(d)
    for lo in range(12):
        for prev in (NEG, -1, 0, 7, 40):
            for e0 in (NEG, -3, 0, 9, 60):
                assert chain(prev, s, lo, np.array([e0])).tolist() == [max(prev + int(d[lo]), e0)]


def test_prefix_sums():
    assert prefix_sums(np.array([2, 0, 3])).tolist() == [0, 2, 2, 5]
    assert prefix_sums(np.zeros(0, dtype=np.int64)).tolist() == [0]


def test_stream_times_follow_the_timing():
    timing = Timing(wgt=StreamTiming(gaps=[0, 2, 1], latency=3, rate=0.5))
    st = StreamTimes(timing, "wgt", 3)
    assert st.d.tolist() == [1, 3, 2]
    assert st.s.tolist() == [0, 1, 4, 6]
    assert st.not_before.tolist() == timing.not_before("wgt", 3).tolist() == [3, 5, 7]
    assert st.t.tolist() == [0, 0, 0] and st.n == 3


def test_stream_chain_skips_withdrawn_cycles():
    """StreamTimes.chain is ``t_i = next_on(max(t_{i-1} + d_i, e_i))``, evaluated here by a loop over
    cycles; without withdrawal it is the closed form."""
    rng = np.random.default_rng(3)
    timing = Timing(out=StreamTiming(p_stall=0.3, p_withdraw=0.45), seed=2)
    st = StreamTimes(timing, "out", 300)
    e = np.sort(rng.integers(0, 900, 300))
    got = st.chain(5, 0, e)
    t, want = 5, []
    for i in range(300):
        c = max(t + int(st.d[i]), int(e[i]))
        while timing.withdrawn("out", c):
            c += 1
        want.append(c)
        t = c
    assert got.tolist() == want and st.withdraws
    plain = StreamTimes(Timing(out=StreamTiming(p_stall=0.3), seed=2), "out", 300)
    assert np.array_equal(plain.chain(5, 0, e), chain(5, plain.s, 0, e)) and not plain.withdraws


def test_stream_params_are_the_timing_s_and_kept_read_only():
    """stream_params: d = 1 + gaps, s their prefix sums, not_before the bus bound, as the Timing
    gives them; kept (the same arrays again) for short streams only, never writable."""
    from hw.sim import recurrence

    timing = Timing(wgt=StreamTiming(p_stall=0.3, latency=2, rate=Fraction(1, 3)), seed=4)
    d, s, nb = recurrence.stream_params(timing, "wgt", 50)
    assert np.array_equal(d, 1 + timing.gaps("wgt", 50)) and np.array_equal(s, prefix_sums(d))
    assert np.array_equal(nb, timing.not_before("wgt", 50))
    again = recurrence.stream_params(timing, "wgt", 50)
    assert all(a is b for a, b in zip(again, (d, s, nb)))
    assert not any(a.flags.writeable for a in (d, s, nb))
    other = recurrence.stream_params(Timing(wgt=StreamTiming(p_stall=0.3, latency=2, rate=Fraction(1, 3)),
                                            seed=5), "wgt", 50)
    assert not np.array_equal(other[0], d)
    big = recurrence.PARAMS_MAX_N + 1
    first = recurrence.stream_params(timing, "act", big)
    assert recurrence.stream_params(timing, "act", big)[0] is not first[0]
