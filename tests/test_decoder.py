"""WeightDecoder: every byte in every lane, sticky error, random words/configs/stalls against the
independent numpy decoder in hw.formats, exact throughput."""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.backends.common import payload_consts, unpack_payloads
from hw.backends.drive import AmaranthBench, Sink, Source, drive_streams, release
from hw.config import TernConfig
from hw.formats import stream_error, stream_to_weight_words, weight_words_to_stream
from hw.rtl.decoder import WeightDecoder
from hw.timing import StreamTiming, Timing

from helpers import random_stream_config


def codes_of(dut, payloads, cfg):
    """The words taken from ``dut.words`` (layout constants) as a (k, R, L) array of codes."""
    return unpack_payloads(dut.words.payload.shape(), payloads).reshape(-1, cfg.rows, cfg.lanes)


def beat_values(dut, beats):
    """The beats ((n, B) bytes) as values of the ``beats`` payload layout."""
    return payload_consts(dut.beats.payload.shape(), beats)


def stalls(seed, p_in, p_out):
    """Seeded input gaps on ``beats`` (the ``wgt`` stream) and backpressure on ``words`` (``out``)."""
    return Timing(wgt=StreamTiming(p_in), out=StreamTiming(p_out), seed=seed)


def run(cfg, beats, *, timing=None, n_words=None, extra_cycles=0):
    """Feeds ``beats`` ((n, B) uint8) with the drive policy (hw.backends.drive): ``timing``'s ``wgt``
    stream offers the beats, its ``out`` stream takes the words. Returns the received words ((k, R,
    L) codes), the cycles of their transfers, the cycles of the beat transfers and the error flag
    seen in every cycle up to ``extra_cycles`` after the last word."""
    timing = Timing() if timing is None else timing
    dut = WeightDecoder(cfg)
    bpw = cfg.beats_per_word
    if n_words is None:
        n_words = len(beats) // bpw
    src = Source(timing, "wgt", beat_values(dut, beats))
    sink = Sink(timing, "out")
    errors, state = [], {}
    limit = int(200 + 40 * len(beats) * (1 + 10 * (timing.wgt.p_stall + timing.out.p_stall)))

    async def tb(ctx):
        def until(c):
            errors.append(ctx.get(dut.error))
            return sink.n >= n_words and c >= sink.cycles[n_words - 1] + extra_cycles

        state["why"], _ = await drive_streams(AmaranthBench(ctx), [(src, dut.beats)], [(sink, dut.words)],
                                              until=until, max_cycles=limit)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert state["why"] == "done", "decoder did not deliver every word (hang)"
    run.dut, run.latency = dut, dut.latency
    return codes_of(dut, sink.payloads, cfg), sink.cycles, src.cycles, errors


def random_words(rng, cfg, k):
    return np.array([rng.randint(-1, 1) for _ in range(k * cfg.rows * cfg.lanes)],
                    dtype=np.int8).reshape(k, cfg.rows, cfg.lanes)


@pytest.mark.parametrize("bus_bytes", [5, 8])
def test_every_base3_byte_in_every_lane(bus_bytes):
    cfg = TernConfig(rows=1, lanes=5 * bus_bytes, bus_bytes=bus_bytes, weight_format="base3")
    assert cfg.beats_per_word == 1
    beats = np.array([[(i + 47 * j) % 243 for j in range(bus_bytes)] for i in range(243)],
                     dtype=np.uint8)
    got, _, _, errors = run(cfg, beats)
    expect = stream_to_weight_words(beats, cfg).astype(np.int64) + 1
    assert np.array_equal(got, expect), f"bus_bytes={bus_bytes}"
    assert not any(errors)
    for j in range(bus_bytes):  # each lane saw all 243 values
        assert sorted(beats[:, j].tolist()) == list(range(243))


@pytest.mark.parametrize("fmt", ["base3", "2bit"])
def test_invalid_bytes_raise_sticky_error(fmt):
    """Every invalid byte value in every byte lane (payload and padding lanes): the flag rises in the
    cycle after the beat is accepted, stays set through later clean words, and only reset clears it.
    The decoded words (invalid input -> zero weights) match hw.formats' lax decoder."""
    # base3: 10 trits -> 2 bytes, B=3 -> 1 beat with one padding byte (lane 2).
    # 2bit: 10 codes -> 3 bytes, B=2 -> 2 beats, the last with one padding byte (lane 1 of beat 1).
    cfg = TernConfig(rows=2, lanes=5, bus_bytes=3 if fmt == "base3" else 2, weight_format=fmt)
    bpw = cfg.beats_per_word
    bad_values = list(range(243, 256)) if fmt == "base3" else [
        b for b in range(256) if any((b >> (2 * q)) & 3 == 3 for q in range(4))]
    assert len(bad_values) == (13 if fmt == "base3" else 256 - 81)
    rng = random.Random(3)
    cases = [(beat, lane, bad) for beat in range(bpw) for lane in range(cfg.bus_bytes)
             for bad in bad_values]
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = dut = WeightDecoder(cfg)

    async def tb(ctx):
        bench = AmaranthBench(ctx, cd.rst)
        for beat_i, lane, bad in cases:
            msg = f"fmt={fmt} beat={beat_i} lane={lane} bad={bad}"
            words = random_words(rng, cfg, 3)
            beats = weight_words_to_stream(words, cfg)
            pos = bpw + beat_i                          # in word 1
            beats[pos, lane] = bad
            expect = stream_to_weight_words(beats, cfg, strict=False).astype(np.int64) + 1
            src = Source(Timing(), "wgt", beat_values(dut, beats))
            sink = Sink(Timing(), "out")
            errors = []

            def until(c):
                errors.append(ctx.get(dut.error))
                return src.done

            why, c = await drive_streams(bench, [(src, dut.beats)], [(sink, dut.words)], until=until,
                                         max_cycles=len(beats) + 1)
            assert why == "done" and c == len(beats), msg
            assert src.cycles == list(range(len(beats))), msg   # beats.ready high in every cycle
            # the flag rises in the cycle after the bad beat, and is still high once the beats ended
            assert errors == [int(i > pos) for i in range(len(beats))] + [1], msg
            assert np.array_equal(codes_of(dut, sink.payloads, cfg), expect), msg
            await release(bench, [(src, dut.beats)], [(sink, dut.words)])
            assert ctx.get(dut.error) == 1, msg            # sticky while idle
            await bench.reset()
            assert ctx.get(dut.error) == 0, msg            # cleared by reset only

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_clean_stream_never_raises_error():
    rng = random.Random(4)
    for fmt in ("2bit", "base3"):
        cfg = TernConfig(rows=3, lanes=7, bus_bytes=2, weight_format=fmt)
        beats = weight_words_to_stream(random_words(rng, cfg, 6), cfg)
        assert not stream_error(beats, cfg)
        got, _, _, errors = run(cfg, beats, timing=stalls(4, 0.3, 0.3), extra_cycles=3)
        assert not any(errors), fmt


@pytest.mark.parametrize("seed", range(16))
def test_random_words_with_stalls(seed):
    rng = random.Random(seed)
    cfg = random_stream_config(rng, min_lanes=4)
    if cfg.beats_per_word > 24:                         # keep the beat count (test time) bounded
        cfg = cfg.replace(bus_bytes=cfg.bus_bytes * 4)
    k = rng.randint(3, 10)
    words = random_words(rng, cfg, k)
    beats = weight_words_to_stream(words, cfg)
    p_in, p_out = rng.choice([0.0, 0.3, 0.6]), rng.choice([0.0, 0.3, 0.8])
    got, word_cycles, beat_cycles, errors = run(cfg, beats, timing=stalls(seed, p_in, p_out))
    msg = f"seed={seed} p_in={p_in} p_out={p_out} {cfg}"
    assert got.shape == (k, cfg.rows, cfg.lanes), msg
    assert np.array_equal(got, words.astype(np.int64) + 1), msg
    assert len(beat_cycles) == len(beats) and len(word_cycles) == k, msg
    assert not any(errors), msg


@pytest.mark.parametrize("rows,lanes,bus_bytes,fmt", [
    (1, 4, 1, "2bit"),      # bpw = 1
    (1, 5, 1, "base3"),     # bpw = 1
    (2, 16, 4, "2bit"),     # bpw = 2
    (3, 7, 2, "base3"),     # bpw = 3: 21 trits in 5 bytes (4 padding trits) + 1 padding byte
    (16, 64, 16, "2bit"),   # default: bpw = 16
    (16, 64, 16, "base3"),  # bpw = 13
])
def test_throughput_no_stalls(rows, lanes, bus_bytes, fmt):
    """Beats every cycle, words.ready always high: beat i accepted in cycle i, word n transferred in
    cycle (n+1)*bpw - 1 + latency; N words take N*bpw + latency cycles."""
    cfg = TernConfig(rows=rows, lanes=lanes, bus_bytes=bus_bytes, weight_format=fmt)
    rng = random.Random(rows * 1000 + lanes)
    n = 6
    words = random_words(rng, cfg, n)
    beats = weight_words_to_stream(words, cfg)
    got, word_cycles, beat_cycles, _ = run(cfg, beats)
    bpw = cfg.beats_per_word
    lat = run.latency
    assert lat == 1
    assert np.array_equal(got, words.astype(np.int64) + 1)
    assert beat_cycles == list(range(n * bpw))
    assert word_cycles == [(i + 1) * bpw - 1 + lat for i in range(n)]
    assert word_cycles[-1] + 1 == n * bpw + lat


def test_backpressure_buffering():
    """words.ready low for 20 cycles: one finished word plus bpw-1 beats of the next are accepted,
    then it stalls; nothing is lost when ready returns."""
    cfg = TernConfig(rows=2, lanes=16, bus_bytes=2, weight_format="2bit")   # 32 codes, bpw = 4
    bpw = cfg.beats_per_word
    assert bpw == 4
    rng = random.Random(9)
    words = random_words(rng, cfg, 3)
    beats = weight_words_to_stream(words, cfg)
    got, word_cycles, beat_cycles, _ = run(cfg, beats, timing=Timing(out=StreamTiming(latency=20)))
    assert run.dut.latency == 1 and run.dut.max_buffered_beats == bpw - 1
    assert [c for c in beat_cycles if c < 20] == list(range(2 * bpw - 1))  # word 0 + 3 beats of word 1
    assert word_cycles[0] == 20                       # word 0 was waiting when ready rose
    assert len(beat_cycles) == len(beats)
    assert np.array_equal(got, words.astype(np.int64) + 1)


def test_bad_config():
    with pytest.raises(TypeError, match="TernConfig"):
        WeightDecoder(None)
