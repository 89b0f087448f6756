"""hw.sim.machine: :func:`hw.sim.simulate`, the stages connected into the core.

* cycle counts equal to the closed forms of docs/ARCHITECTURE.md (derived there from the RTL and
  asserted on the RTL by tests/test_top.py) for stall-free decode and prefill programs;
* every pipeline latency comes from the configuration (a configuration with a deeper PE array
  simulates exactly that many cycles longer), and the configuration's latencies are the RTL's;
* argument checks.

Results: tests/test_sim_results.py; cycle-exactness against the RTL under arbitrary timings:
tests/test_differential.py.
"""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from hw.config import TernConfig
from hw.program import decode_program, prefill_program
from hw.sim import SimError, simulate

CONFIGS = [
    TernConfig(),
    TernConfig(rows=4, lanes=8, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=4, tree_reg_every=1),
    TernConfig(rows=3, lanes=13, weight_format="base3", bus_bytes=3, act_depth=64, wgt_depth=8,
               out_depth=8, tree_reg_every=2),
    TernConfig(rows=8, lanes=16, bus_bytes=16, act_depth=64, wgt_depth=16, out_depth=6, tree_reg_every=0),
]


class _DeeperPE(TernConfig):
    """A configuration whose PE array is three cycles deeper than the RTL's (only the simulator can
    run it: it asks the configuration for every latency)."""

    @property
    def pe_latency(self) -> int:
        return super().pe_latency + 3


def _lat(cfg):
    """R (result_latency), Ld, bpw and D (dispatch_latency) of the closed forms."""
    return cfg.result_latency, cfg.decoder_latency, cfg.beats_per_word, cfg.dispatch_latency


# the closed forms' sufficient conditions (ARCHITECTURE.md), applied when the cases are enumerated
DECODE_CASES = [(ci, n_mm, kw) for ci, cfg in enumerate(CONFIGS)
                for n_mm, kw in [(1, 1), (3, 2), (6, 5), (2, 8), (1, 16)]
                if kw <= cfg.wgt_depth and kw * _lat(cfg)[2] >= 2
                and _lat(cfg)[0] // kw < cfg.out_depth]
PREFILL_CASES = [(ci, n_mm, kw, T) for ci, cfg in enumerate(CONFIGS)
                 for n_mm, kw, T in [(1, 1, 8), (3, 2, 7), (2, 4, 9), (4, 3, 16), (2, 1, 40)]
                 if kw <= cfg.wgt_depth and T * kw <= cfg.act_depth
                 and T * kw >= kw * (_lat(cfg)[2] - 1) + _lat(cfg)[1] + 2
                 and _lat(cfg)[0] // kw < cfg.out_depth]


@pytest.mark.parametrize("ci, n_mm, kw", DECODE_CASES)
def test_decode_closed_form(ci, n_mm, kw):
    cfg = CONFIGS[ci]
    R, Ld, bpw, D = _lat(cfg)
    prog = decode_program(cfg, n_mm, kw)
    r = simulate(cfg, prog)
    closed = max(D + 1 + n_mm * kw * bpw + Ld, D - 1 + kw + n_mm * kw) + R + 1
    assert r.cycles == closed == r.last_out_cycle + 1
    assert np.array_equal(r.outputs, prog.expected)
    # the weight stream is accepted on every cycle from cycle D + 1
    assert r.wgt_cycles.tolist() == list(range(D + 1, D + 1 + n_mm * kw * bpw))
    assert r.counters["wgt_beats"] == n_mm * kw * bpw and r.counters["busy"] == n_mm * kw


@pytest.mark.parametrize("ci, n_mm, kw, T", PREFILL_CASES)
def test_prefill_closed_form(ci, n_mm, kw, T):
    cfg = CONFIGS[ci]
    R, Ld, bpw, D = _lat(cfg)
    prog = prefill_program(cfg, n_mm, kw, T)
    r = simulate(cfg, prog)
    assert r.cycles == T * kw * (n_mm + 1) + D + R
    assert np.array_equal(r.outputs, prog.expected)
    assert r.counters["busy"] == n_mm * T * kw
    assert r.counters["stall_weight"] == r.counters["stall_out"] == 0


def test_closed_form_cases_cover_every_config():
    assert {c[0] for c in DECODE_CASES} == {c[0] for c in PREFILL_CASES} == set(range(len(CONFIGS)))


def test_latencies_come_from_the_config_and_match_the_rtl():
    cfg = CONFIGS[1]
    from hw.rtl.decoder import WeightDecoder
    from hw.rtl.pe_array import PEArray
    pe, dec = PEArray(cfg), WeightDecoder(cfg)
    for block in (pe, dec):
        Fragment.get(block, None)   # elaboration checks the block's structure against the config
    assert (cfg.pe_latency, cfg.decoder_latency) == (pe.latency, dec.latency)
    prog = decode_program(cfg, 3, 2)
    base = simulate(cfg, prog).cycles
    slower = simulate(_DeeperPE(**cfg.to_dict()), words=prog.words, act_beats=prog.act_beats,
                      wgt_beats=prog.wgt_beats).cycles
    assert slower == base + 3


def test_stream_length_mismatch_and_bad_arguments():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    prog = decode_program(cfg, 2, 1)
    with pytest.raises(SimError, match="weight stream holds"):
        simulate(cfg, prog, wgt_beats=prog.wgt_beats[:-1])
    with pytest.raises(SimError, match="act stream holds"):
        simulate(cfg, prog, act_beats=np.zeros((0, 4), dtype=np.int8))
    with pytest.raises(TypeError, match="TernConfig"):
        simulate("cfg", prog)
    with pytest.raises(TypeError, match="Timing"):
        simulate(cfg, prog, timing={"wgt": 1})
    with pytest.raises(ValueError, match="act_beats"):
        simulate(cfg, words=prog.words, act_beats=np.zeros((1, 3)), wgt_beats=prog.wgt_beats)
    with pytest.raises(ValueError, match="instruction word 0"):
        simulate(cfg, words=[-1])
    assert simulate(cfg, words=[]).cycles == 0




def test_bad_words_are_rejected_as_before():
    """The fast path for lists of Python integers rejects what hw.result.as_streams rejects."""
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    prog = decode_program(cfg, 1, 1)
    for bad, i in (([True], 0), ([*prog.words[:1], 1 << 64], 1), ([*prog.words[:1], 1.0], 1)):
        with pytest.raises(ValueError, match=f"instruction word {i}"):
            simulate(cfg, words=bad, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    r = simulate(cfg, words=[np.uint64(w) for w in prog.words], act_beats=prog.act_beats,
                 wgt_beats=prog.wgt_beats)
    assert np.array_equal(r.outputs, prog.expected)


def _timings():
    from hw.timing import StreamTiming, Timing
    w = StreamTiming(p_stall=0.2, p_withdraw=0.3)
    return [Timing(), Timing.random(4, p_instr=0.3, p_act=0.2, p_wgt=0.3, p_out=0.4),
            Timing(instr=w, act=w, wgt=w, out=StreamTiming(p_withdraw=0.4), seed=9)]


@pytest.mark.parametrize("ti", range(3))
def test_a_known_programs_timing_is_reused_and_equal_to_a_fresh_run(monkeypatch, ti):
    """The same program under the same timing with new activation and weight values (as generation
    runs it): the second run takes cycles, counters and every transfer cycle from
    hw.sim.machine.TIMINGS and computes its own values; everything equals a run with that cache off,
    and another timing or program is not taken from it."""
    from hw.program import linear_program
    from hw.sim import machine

    cache = machine.TimingCache(64 << 20)
    monkeypatch.setattr(machine, "TIMINGS", cache)
    cfg = CONFIGS[1]
    timing = _timings()[ti]
    rng = np.random.default_rng(ti)
    q, w = rng.integers(-128, 128, (5, 40)), rng.integers(-1, 2, (12, 40))
    first = simulate(cfg, linear_program(cfg, q, w), timing)
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    q2, w2 = rng.integers(-128, 128, (5, 40)), rng.integers(-1, 2, (12, 40))
    prog2 = linear_program(cfg, q2, w2)
    again = simulate(cfg, prog2, timing)
    assert cache.hits == 1
    assert np.array_equal(again.outputs, prog2.expected) and not np.array_equal(again.outputs, first.outputs)
    monkeypatch.setattr(machine, "TIMINGS", machine.TimingCache(0))           # off
    fresh = simulate(cfg, prog2, timing)
    assert len(machine.TIMINGS) == 0
    assert not again.compare(fresh) and again.events == fresh.events
    assert again.cycles == first.cycles and np.array_equal(again.wgt_cycles, first.wgt_cycles)
    monkeypatch.setattr(machine, "TIMINGS", cache)
    other = _timings()[(ti + 1) % 3]
    simulate(cfg, prog2, other)
    simulate(cfg, linear_program(cfg, q2[:4], w2), timing)
    assert (cache.hits, cache.misses) == (1, 3)


def test_timing_cache_keeps_bad_instructions_and_error_bits():
    """A program with a bad instruction (error bit 0) and an invalid weight byte (bit 1, a value):
    the reused timing keeps bit 0, bit 1 comes from each run's bytes."""
    from hw.isa import matmul
    from hw.sim import machine

    cfg = CONFIGS[1]
    prog = decode_program(cfg, 2, 2)
    words = [matmul(cfg.act_depth + 1, 1, 1).word, *prog.words]
    beats = prog.wgt_beats.copy()
    beats[0, 0] = 0xFF
    machine.TIMINGS.clear()
    a = simulate(cfg, words=words, act_beats=prog.act_beats, wgt_beats=beats)
    b = simulate(cfg, words=words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    assert (a.error, b.error) == (3, 1) and a.cycles == b.cycles
    assert np.array_equal(b.outputs, prog.expected)


def test_program_words_are_the_encoder_s():
    """hw.sim.machine._program_words (the words a Program's run is keyed and dispatched by) equal
    hw.isa.encode of every instruction, illegal opcodes and the widest fields included."""
    from hw.isa import FIELD_MAX, Instr, Op, encode
    from hw.sim.machine import _program_words

    instrs = [Instr(Op.NOP), Instr(Op.SYNC), Instr(Op.LOAD_ACT, 3, 7), Instr(Op.MATMUL, 1, 2, 3),
              Instr(Op.MATMUL, FIELD_MAX, FIELD_MAX, FIELD_MAX), Instr(15, FIELD_MAX, 0, 1), Instr(4)]
    words = _program_words(instrs)
    assert words == [encode(i) for i in instrs]
    assert all(type(w) is int and 0 <= w < 1 << 64 for w in words)


def test_timing_key_follows_the_timing_not_its_object():
    """The timing part of a TimingCache key is the timing's JSON: equal timings (distinct objects)
    share it, different ones do not."""
    from hw.sim.machine import _timing_json
    from hw.timing import StreamTiming, Timing

    a, b = Timing(wgt=StreamTiming(latency=4)), Timing(wgt=StreamTiming(latency=4))
    c = Timing(wgt=StreamTiming(latency=5))
    assert _timing_json(a) == _timing_json(b) == a.to_json() and _timing_json(a) == _timing_json(a)
    assert _timing_json(c) == c.to_json() != _timing_json(a)
