"""WeightDecoder: every byte in every lane, sticky error, random words/configs/stalls against the
independent numpy decoder in hw.formats, exact throughput."""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.config import TernConfig
from hw.formats import stream_error, stream_to_weight_words, weight_words_to_stream
from hw.rtl.decoder import WeightDecoder
from hw.rtl.testing import Stalls, stream_get, stream_put


def codes_of(value, cfg):
    """Unpack a words payload (int) into an (R, L) array of codes."""
    n = cfg.rows * cfg.lanes
    return np.array([(value >> (2 * i)) & 3 for i in range(n)], dtype=np.int64).reshape(
        cfg.rows, cfg.lanes)


def run(cfg, beats, *, seed=0, p_in=0.0, p_out=0.0, n_words=None, extra_cycles=0):
    """Feeds ``beats`` ((n, B) uint8) with seeded input gaps and output backpressure. Returns the
    received words ((k, R, L) codes), the cycles of their transfers, the cycles of the beat
    transfers and the error flag seen in every cycle."""
    dut = WeightDecoder(cfg)
    bpw = cfg.beats_per_word
    if n_words is None:
        n_words = len(beats) // bpw
    words, word_cycles, beat_cycles, errors = [], [], [], []
    state = {"cycle": 0, "done": False}

    async def producer(ctx):
        stalls = Stalls(p_in, seed) if p_in else None
        for beat in beats:
            await stream_put(ctx, dut.beats, [int(x) for x in beat], stalls=stalls)

    async def consumer(ctx):
        stalls = Stalls(p_out, seed + 1) if p_out else None
        for _ in range(n_words):
            payload = await stream_get(ctx, dut.words, stalls=stalls)
            words.append(codes_of(payload.as_value().value, cfg))
        for _ in range(extra_cycles):
            await ctx.tick()
        state["done"] = True

    async def monitor(ctx):
        # samples the state at each clock edge: whether a transfer happened in the cycle before it
        async for _, _, bv, br, wv, wr, err in ctx.tick().sample(
                dut.beats.valid, dut.beats.ready, dut.words.valid, dut.words.ready, dut.error):
            if bv and br:
                beat_cycles.append(state["cycle"])
            if wv and wr:
                word_cycles.append(state["cycle"])
            errors.append(err)
            state["cycle"] += 1
            if state["done"]:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.add_process(monitor)
    sim.run_until(1e-6 * (200 + 40 * len(beats) * (1 + 10 * (p_in + p_out))))
    assert state["done"], "decoder did not deliver every word (hang)"
    run.latency = dut.latency
    return (np.array(words, dtype=np.int64).reshape(-1, cfg.rows, cfg.lanes), word_cycles,
            beat_cycles, errors)


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
    pack = lambda beat: [int(x) for x in beat]

    async def tb(ctx):
        ctx.set(dut.words.ready, 1)
        for beat_i, lane, bad in cases:
            msg = f"fmt={fmt} beat={beat_i} lane={lane} bad={bad}"
            words = random_words(rng, cfg, 3)
            beats = weight_words_to_stream(words, cfg)
            pos = bpw + beat_i                          # in word 1
            beats[pos, lane] = bad
            expect = stream_to_weight_words(beats, cfg, strict=False).astype(np.int64) + 1
            got = []
            for i, beat in enumerate(beats):
                ctx.set(dut.beats.valid, 1)
                ctx.set(dut.beats.payload, pack(beat))
                assert ctx.get(dut.beats.ready), msg
                assert ctx.get(dut.error) == (i > pos), msg
                if ctx.get(dut.words.valid):
                    got.append(codes_of(ctx.get(dut.words.payload).as_value().value, cfg))
                await ctx.tick()
            ctx.set(dut.beats.valid, 0)
            assert ctx.get(dut.error) == 1, msg
            got.append(codes_of(ctx.get(dut.words.payload).as_value().value, cfg))
            assert np.array_equal(np.array(got), expect), msg
            await ctx.tick()
            assert ctx.get(dut.error) == 1, msg            # sticky while idle
            ctx.set(cd.rst, 1)
            await ctx.tick()
            ctx.set(cd.rst, 0)
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
        got, _, _, errors = run(cfg, beats, p_in=0.3, p_out=0.3, seed=4, extra_cycles=3)
        assert not any(errors), fmt


def random_config(rng):
    return TernConfig(rows=rng.randint(1, 16), lanes=rng.randint(4, 64),
                      bus_bytes=rng.randint(1, 32), weight_format=rng.choice(["2bit", "base3"]))


@pytest.mark.parametrize("seed", range(16))
def test_random_words_with_stalls(seed):
    rng = random.Random(seed)
    cfg = random_config(rng)
    if cfg.beats_per_word > 24:                         # keep the beat count (test time) bounded
        cfg = cfg.replace(bus_bytes=cfg.bus_bytes * 4)
    k = rng.randint(3, 10)
    words = random_words(rng, cfg, k)
    beats = weight_words_to_stream(words, cfg)
    p_in, p_out = rng.choice([0.0, 0.3, 0.6]), rng.choice([0.0, 0.3, 0.8])
    got, word_cycles, beat_cycles, errors = run(cfg, beats, seed=seed, p_in=p_in, p_out=p_out)
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
    """words.ready low: one finished word plus bpw-1 beats of the next are accepted, then it stalls;
    nothing is lost when ready returns."""
    cfg = TernConfig(rows=2, lanes=16, bus_bytes=2, weight_format="2bit")   # 32 codes, bpw = 4
    bpw = cfg.beats_per_word
    assert bpw == 4
    rng = random.Random(9)
    words = random_words(rng, cfg, 3)
    beats = weight_words_to_stream(words, cfg)
    dut = WeightDecoder(cfg)
    assert dut.latency == 1 and dut.max_buffered_beats == bpw - 1
    accepted = []

    async def tb(ctx):
        ctx.set(dut.words.ready, 0)
        i = 0
        for cycle in range(20):
            ctx.set(dut.beats.valid, i < len(beats))
            if i < len(beats):
                ctx.set(dut.beats.payload, [int(x) for x in beats[i]])
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                accepted.append(cycle)
                i += 1
            await ctx.tick()
        assert accepted == list(range(2 * bpw - 1))       # word 0 complete + 3 beats of word 1
        assert ctx.get(dut.words.valid)
        got = []
        ctx.set(dut.words.ready, 1)
        for cycle in range(40):
            ctx.set(dut.beats.valid, i < len(beats))
            if i < len(beats):
                ctx.set(dut.beats.payload, [int(x) for x in beats[i]])
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                i += 1
            if ctx.get(dut.words.valid):
                got.append(codes_of(ctx.get(dut.words.payload).as_value().value, cfg))
            await ctx.tick()
        assert i == len(beats)
        assert np.array_equal(np.array(got), words.astype(np.int64) + 1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_bad_config():
    with pytest.raises(TypeError, match="TernConfig"):
        WeightDecoder(None)
