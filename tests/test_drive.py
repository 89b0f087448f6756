"""hw.backends.drive: the stream-drive policy (pure Python, no simulator) and the payload packing its
adapters use (hw.backends.common.pack_payloads / unpack_payloads).

The policy is checked against the timing model's equation ``x_i = max(x_{i-1} + 1 + gap_i, latency +
floor(i / rate))`` evaluated here by an explicit loop, through :func:`drive_streams` on a fake bench (a
one-stage register that is ready in a given set of cycles); the RTL side of the same equation is
tests/test_timing.py.
"""

import asyncio
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from hw.backends.common import pack_payloads, payload_consts, unpack_payloads
from hw.backends.drive import Port, Sink, Source, drive_streams
from hw.timing import StreamTiming, Timing


class FakeBench:
    """A bench whose consumer takes a beat in the cycles of ``ready_cycles`` and whose producer
    offers one result in every cycle of ``valid_cycles``; records every write."""

    def __init__(self, ready_cycles, valid_cycles):
        self.ready_cycles, self.valid_cycles = set(ready_cycles), set(valid_cycles)
        self.c = 0
        self.values = {}
        self.writes = []

    def set(self, signal, value):
        self.values[signal] = int(value)
        self.writes.append((self.c, signal, int(value)))

    def get(self, signal):
        if signal == "in.ready":
            return int(self.c in self.ready_cycles)
        if signal == "out.valid":
            return int(self.c in self.valid_cycles)
        return self.values[signal]

    def put(self, port, item):
        self.writes.append((self.c, port.payload, item))
        self.values[port.payload] = item

    def take(self, port):
        return f"result@{self.c}"

    async def settle(self):
        pass

    async def step(self):
        self.c += 1


IN = Port("in.valid", "in.ready", "in.payload")
OUT = Port("out.valid", "out.ready", "out.payload")


def _model(n, gaps, latency=0, rate=Fraction(1), ready=None):
    """Transfer cycles when the other side is ready in the cycles of ``ready`` (all if None)."""
    out, prev = [], -1
    for i in range(n):
        c = max(prev + 1 + int(gaps[i]), latency + (i * rate.denominator) // rate.numerator)
        while ready is not None and c not in ready:
            c += 1
        out.append(c)
        prev = c
    return out


def _drive(bench, sources, sinks, until, **kw):
    return asyncio.run(drive_streams(bench, sources, sinks, until=until, **kw))


def test_source_replays_the_timing_model_and_holds_valid():
    t = Timing(wgt=StreamTiming(p_stall=0.5, latency=3, rate=Fraction(2, 3)), seed=4)
    ready = {c for c in range(400) if c % 3 != 1}
    items = list(range(40))
    src = Source(t, "wgt", items)
    bench = FakeBench(ready, ())
    why, c = _drive(bench, [(src, IN)], [], until=lambda c: src.done)
    assert why == "done" and src.done
    assert src.cycles == _model(40, t.gaps("wgt", 40), 3, Fraction(2, 3), ready)
    # valid is never withdrawn before the transfer: it falls only in the cycle after one
    valid_writes = [(cy, v) for cy, sig, v in bench.writes if sig == IN.valid]
    for cy, v in valid_writes[1:]:
        if v == 0:
            assert cy - 1 in src.cycles
    # the payload of transfer i is on the bus from the cycle after transfer i-1 (item 0 from cycle 0)
    puts = [(cy, v) for cy, sig, v in bench.writes if sig == IN.payload]
    assert puts == [(0, 0)] + [(x + 1, i + 1) for i, x in enumerate(src.cycles[:-1])]


def test_sink_backpressure_and_records_payloads():
    t = Timing(out=StreamTiming(gaps=(4, 0, 2, 7)))
    valid = set(range(2, 100))
    sink = Sink(t, "out")
    bench = FakeBench((), valid)
    why, _ = _drive(bench, [], [(sink, OUT)], until=lambda c: sink.n == 6)
    assert why == "done"
    exp = _model(6, [4, 0, 2, 7, 0, 0], ready=valid)
    assert sink.cycles == exp and sink.payloads == [f"result@{c}" for c in exp]


def test_until_sees_the_state_before_the_cycles_transfers():
    """``until(c)`` runs before the transfers of cycle ``c`` are committed to the sources (the core's
    completion test: every input accepted in an earlier cycle)."""
    src = Source(Timing(), "instr", [7, 8])
    seen = []

    def until(c):
        seen.append((c, src.n))
        return src.done

    why, c = _drive(FakeBench(range(10), ()), [(src, IN)], [], until=until)
    assert (why, c) == ("done", 2) and seen == [(0, 0), (1, 1), (2, 2)] and src.cycles == [0, 1]


def test_timeout_and_stop():
    src = Source(Timing(), "act", [1, 2, 3])
    assert _drive(FakeBench((), ()), [(src, IN)], [], until=lambda c: False, max_cycles=5) == ("timeout", 5)
    src = Source(Timing(), "act", [1, 2, 3])
    assert _drive(FakeBench((), ()), [(src, IN)], [], until=lambda c: False, max_cycles=50,
                  stop_at=4) == ("stopped", 4)


@pytest.mark.parametrize("layout, values", [
    (data.ArrayLayout(signed(8), 5), [[-128, 127, -1, 0, 5], [1, 2, 3, 4, -5]]),
    (data.ArrayLayout(8, 3), [[0, 255, 17]]),
    (data.ArrayLayout(data.ArrayLayout(2, 3), 2), [[[0, 1, 2], [3, 2, 1]], [[3, 3, 3], [0, 0, 0]]]),
    (data.ArrayLayout(signed(14), 3), [[-8192, 8191, -1]]),
    (data.ArrayLayout(signed(37), 2), [[-(1 << 36), (1 << 36) - 1]]),
])
def test_pack_payloads_is_the_layouts_bit_pattern(layout, values):
    packed = pack_payloads(layout, values)
    assert packed == [layout.const(v).as_bits() for v in values]
    assert np.array_equal(unpack_payloads(layout, packed), np.array(values))
    consts = payload_consts(layout, values)
    assert [c.as_bits() for c in consts] == packed
    assert np.array_equal(unpack_payloads(layout, consts), np.array(values))


def test_pack_payloads_struct_and_empty():
    from hw.isa import INSTR_LAYOUT, matmul
    w = matmul(3, 2, 1).word
    assert pack_payloads(INSTR_LAYOUT, [w]) == [w]
    assert INSTR_LAYOUT.from_bits(pack_payloads(INSTR_LAYOUT, [{"op": 2, "a": 5}])[0]).a == 5
    lay = data.ArrayLayout(signed(8), 4)
    assert pack_payloads(lay, np.zeros((0, 4))) == []
    assert unpack_payloads(lay, []).shape == (0, 4)
    with pytest.raises(TypeError, match="ArrayLayout"):
        unpack_payloads(INSTR_LAYOUT, [0])


def test_withdrawn_valid_and_ready_follow_the_timing_and_garbage_fills_the_idle_bus():
    """A source whose timing withdraws valid (and drives garbage) and a sink whose ready is withdrawn:
    every transfer is in the first cycle >= the model's that is not withdrawn and in which the other
    side is ready/valid (an explicit loop here); valid is low in every withdrawn cycle; while valid is
    low the payload is garbage of the seeded generator, and the item is back when valid rises."""
    import random
    t = Timing(wgt=StreamTiming(p_stall=0.3, p_withdraw=0.4, garbage=True),
               out=StreamTiming(p_withdraw=0.5), seed=9)
    ready = {c for c in range(600) if c % 4 != 2}
    offered = {c for c in range(600) if c % 3 == 0}

    class GarbageBench(FakeBench):
        def put_garbage(self, port, rng):
            self.put(port, ("garbage", rng.getrandbits(16)))

    items = [f"item{i}" for i in range(40)]
    src, sink = Source(t, "wgt", items), Sink(t, "out")
    bench = GarbageBench(ready, offered)
    _drive(bench, [(src, IN)], [(sink, OUT)], until=lambda c: src.done and sink.n >= 30)
    # the model, with the withdrawn cycles skipped
    on = lambda name, c: not t.withdrawn(name, c)
    x, prev = [], -1
    for i in range(40):
        c = max(prev + 1 + t.gap("wgt", i), 0)
        while not (c in ready and on("wgt", c)):
            c += 1
        x.append(c)
        prev = c
    assert src.cycles == x
    o, prev = [], -1
    for j in range(30):
        c = prev + 1
        while not (c in offered and on("out", c)):
            c += 1
        o.append(c)
        prev = c
    assert sink.cycles[:30] == o
    # valid low in every withdrawn cycle; the payload under a high valid is always the next item
    valid_at, payload = {}, None
    writes = sorted(bench.writes, key=lambda w: w[0])
    per_cycle = {}
    for c, sig, v in bench.writes:
        per_cycle.setdefault(c, []).append((sig, v))
    garbage_seen = 0
    rng = random.Random(t.seed * 4 + 2)        # the stream's generator (Timing.garbage_rng)
    n, v = 0, 0
    for c in range(x[-1] + 1):
        for sig, val in per_cycle.get(c, []):
            if sig == IN.valid:
                v = val
            elif sig == IN.payload:
                payload = val
                if isinstance(val, tuple):
                    assert val == ("garbage", rng.getrandbits(16))
                    garbage_seen += 1
        if t.withdrawn("wgt", c):
            assert v == 0, c
        if v:
            assert payload == items[n], c
        if c == x[n]:
            assert v == 1
            n += 1
    assert garbage_seen > 10 and writes
