"""Helpers shared by the test suites (one place for what several test files need)."""


def random_stream_config(rng, *, min_lanes=1):
    """A random weight-stream geometry for the codec and decoder tests (``rng``: ``random.Random``):
    rows 1..16, lanes ``min_lanes``..64, bus_bytes 1..32, either weight format; the rest default."""
    from hw.config import TernConfig
    return TernConfig(rows=rng.randint(1, 16), lanes=rng.randint(min_lanes, 64),
                      bus_bytes=rng.randint(1, 32), weight_format=rng.choice(["2bit", "base3"]))


def core_timings(seed):
    """The three stream timings the core tests replay on every backend: ideal; seeded stalls on
    every input and backpressure; a slow weight bus with first-beat latency, activation stalls and
    heavy backpressure."""
    from fractions import Fraction

    from hw.timing import StreamTiming, Timing
    return [Timing.ideal(),
            Timing.random(seed, p_instr=0.3, p_act=0.3, p_wgt=0.4, p_out=0.5),
            Timing(wgt=StreamTiming(latency=7, rate=Fraction(1, 3)), act=StreamTiming(p_stall=0.2),
                   out=StreamTiming(p_stall=0.7), seed=seed + 1)]


def assert_same_as_sim(config, program, timing, res, hint=""):
    """``res`` (an RTL backend's RunResult of ``program`` under ``timing``) equals hw.sim.simulate of
    the same case field by field: outputs, cycles, counters, error flags, every transfer cycle."""
    from hw.sim import simulate
    diffs = res.compare(simulate(config, program, timing))
    assert not diffs, f"{res.backend} vs hw.sim, timing={timing!r}: " + "; ".join(diffs) + f"; {hint}"
