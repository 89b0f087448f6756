"""The stream-drive policy: how every RTL testbench plays the environment of valid/ready streams.

One policy drives the streams of every RTL run, under Amaranth's simulator
(:mod:`hw.backends.amaranth`, the block tests) and under Verilator with cocotb
(:mod:`hw.backends.verilator`, ``tests/cocotb``), from a :class:`hw.timing.Timing`. The cycle-accurate
simulator (:func:`hw.sim.simulate`) models the same environment, so any RTL run replays on ``hw.sim``
with the same ``Timing`` and gives the same cycle of every transfer.

Policy (cycles count from 0 = the first cycle after the reset that starts a run)
---------------------------------------------------------------------------------
* A :class:`Source` (the environment side of an input stream: ``valid`` and ``payload``) raises
  ``valid`` for transfer ``i`` in cycle ``Timing.avail(name, i, x_{i-1})`` (``x_{i-1}`` = the cycle of
  transfer ``i-1``, ``-1`` for ``i = 0``) and keeps it high until the transfer, except in the cycles
  the timing withdraws it (``Timing.withdrawn(name, c)``: valid taken back before the transfer).
  The payload of transfer ``i`` is on the bus in every cycle ``valid`` is high; in the cycles it is
  low the bus holds the previous payload, or, with the stream's ``garbage``, a seeded random one.
* A :class:`Sink` (the environment side of an output stream: ``ready``) raises ``ready`` for transfer
  ``j`` in cycle ``Timing.avail(name, j, o_{j-1})`` and keeps it high until the transfer
  (backpressure), except in the cycles the timing withdraws it; it records the payload of every
  transfer.
* A transfer happens in cycle ``c`` when ``valid & ready`` is high in ``c`` after the combinational
  logic settled; both sides record ``c`` (:attr:`Source.cycles`, :attr:`Sink.cycles`).
* A run ends in the first cycle its ``until(c)`` says so (sampled like a transfer, before the cycle's
  transfers are committed), at ``max_cycles`` (``"timeout"``) or at ``stop_at`` (``"stopped"``: a run
  cut short by the reset of the next one).

The policy objects are pure Python. :func:`drive_streams` is the one cycle loop; it talks to the
simulator only through a *bench*, an adapter with ``set(signal, value)``, ``get(signal)``,
``put(port, item)``/``take(port)`` (a payload), ``put_garbage(port, rng)`` (random bits of the
payload's width from a ``random.Random``), ``settle()`` (wait until outputs may be sampled),
``step()`` (advance one cycle, to where inputs are written) and ``reset()``:

* :class:`AmaranthBench` (an Amaranth async testbench: ``ctx.set``/``ctx.get``, payloads are values
  of their layouts, e.g. :class:`amaranth.lib.data.Const`);
* :class:`CocotbBench` (cocotb signal handles: inputs written after the falling clock edge, outputs
  sampled in ``ReadOnly``; payloads are the integers Verilog needs, packed by
  :func:`hw.backends.common.pack_payloads`).

:func:`run_core` is one run of :class:`hw.rtl.top.TernCore` with this policy (both RTL backends);
it ends in the first cycle in which every instruction word, activation beat and weight beat has been
accepted and ``idle`` is high, and reads the performance counters and error flags in that cycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

from hw.timing import Timing

__all__ = ["Source", "Sink", "Port", "CoreStatus", "drive_streams", "release", "run_core", "timeout_message",
           "AmaranthBench", "CocotbBench", "INPUTS"]

#: The input streams of TernCore, in the order they are driven.
INPUTS = ("instr", "act", "wgt")


class Source:
    """The environment side of one input stream: offers ``items`` in order, transfer ``i`` from cycle
    ``timing.avail(name, i, x_{i-1})`` on (see the module docstring)."""

    def __init__(self, timing: Timing, name: str, items):
        self.timing, self.name, self.items = timing, name, items
        self.n = 0                 #: transfers so far
        self.cycles: list[int] = []  #: the cycle of every transfer
        self.avail = timing.avail(name, 0, -1)
        self.garbage = timing.garbage_rng(name)   #: random payloads while valid is low (or None)

    @property
    def done(self) -> bool:
        """Every item was transferred."""
        return self.n == len(self.items)

    @property
    def item(self):
        """The payload on the bus now (the next one to transfer)."""
        return self.items[self.n]

    def valid(self, c: int) -> bool:
        """``valid`` in cycle ``c``."""
        return self.n < len(self.items) and c >= self.avail and not self.timing.withdrawn(self.name, c)

    def transfer(self, c: int):
        """Transfer ``n`` happened in cycle ``c``."""
        self.cycles.append(c)
        self.n += 1
        self.avail = self.timing.avail(self.name, self.n, c)


class Sink:
    """The environment side of one output stream: ``ready`` for transfer ``j`` from cycle
    ``timing.avail(name, j, o_{j-1})`` on; records every payload and its cycle."""

    def __init__(self, timing: Timing, name: str = "out"):
        self.timing, self.name = timing, name
        self.n = 0
        self.cycles: list[int] = []
        self.payloads: list = []
        self.avail = timing.avail(name, 0, -1)

    def ready(self, c: int) -> bool:
        """``ready`` in cycle ``c``."""
        return c >= self.avail and not self.timing.withdrawn(self.name, c)

    def transfer(self, c: int, payload):
        """Transfer ``n`` (of ``payload``) happened in cycle ``c``."""
        self.payloads.append(payload)
        self.cycles.append(c)
        self.n += 1
        self.avail = self.timing.avail(self.name, self.n, c)


class Port(NamedTuple):
    """The three signals of one valid/ready stream (as an ``amaranth.lib.stream`` interface has)."""
    valid: object
    ready: object
    payload: object


async def drive_streams(bench, sources, sinks, *, until: Callable[[int], bool],
                        max_cycles: int | None = None, stop_at: int | None = None) -> tuple[str, int]:
    """Drive ``sources`` and ``sinks`` (lists of ``(Source | Sink, port)``) cycle by cycle with the
    policy of the module docstring, from cycle 0 (now) until ``until(c)`` is true in cycle ``c``
    (``"done"``), ``c`` reaches ``max_cycles`` (``"timeout"``) or ``stop_at`` (``"stopped"``).
    Returns ``(why, c)``. After ``"done"`` the bench is still in cycle ``c``, outputs sampled."""
    shown = []   # whether the bus holds the source's next item (not garbage)
    for src, port in sources:
        bench.set(port.valid, 0)
        if not src.done:
            bench.put(port, src.item)
        shown.append(not src.done)
    for _, port in sinks:
        bench.set(port.ready, 0)
    valid = [False] * len(sources)
    ready = [False] * len(sinks)
    c = 0
    while True:
        if stop_at is not None and c >= stop_at:
            return "stopped", c
        if max_cycles is not None and c >= max_cycles:
            return "timeout", c
        for k, (src, port) in enumerate(sources):
            v = src.valid(c)
            if src.garbage is not None and not src.done:
                if v and not shown[k]:
                    bench.put(port, src.item)
                    shown[k] = True
                elif not v:
                    bench.put_garbage(port, src.garbage)
                    shown[k] = False
            if v != valid[k]:
                bench.set(port.valid, v)
                valid[k] = v
        for k, (sink, port) in enumerate(sinks):
            r = sink.ready(c)
            if r != ready[k]:
                bench.set(port.ready, r)
                ready[k] = r
        await bench.settle()
        fired = [valid[k] and bool(bench.get(port.ready)) for k, (_, port) in enumerate(sources)]
        for k, (sink, port) in enumerate(sinks):
            if ready[k] and bench.get(port.valid):
                sink.transfer(c, bench.take(port))
        if until(c):
            return "done", c
        await bench.step()
        for k, (f, (src, port)) in enumerate(zip(fired, sources)):
            if f:
                src.transfer(c)
                if not src.done:
                    bench.put(port, src.item)
                    shown[k] = True
        c += 1


async def release(bench, sources, sinks):
    """End a run: one more cycle, then every ``valid`` and ``ready`` low."""
    await bench.step()
    for _, port in sources:
        bench.set(port.valid, 0)
    for _, port in sinks:
        bench.set(port.ready, 0)


@dataclass
class CoreStatus:
    """The core's status outputs in one cycle: ``idle``, the ``error`` flags, the performance
    ``counters`` (name -> value). Each backend reads them in one function (``core_status``)."""
    idle: bool
    error: int
    counters: dict


def timeout_message(max_cycles: int, accepted: dict, outputs: int, timing: Timing) -> str:
    """The message of a run that hit its cycle limit (``accepted``: stream -> (transfers, items))."""
    (i, ni), (a, na), (w, nw) = (accepted[name] for name in INPUTS)
    return (f"program did not finish within {max_cycles} cycles (accepted {i}/{ni} instructions, "
            f"{a}/{na} act beats, {w}/{nw} weight beats; {outputs} outputs; timing={timing!r})")


async def run_core(bench, ports: dict, status: Callable[[], CoreStatus], items: dict, timing: Timing, *,
                   max_cycles: int, stop_at: int | None = None) -> dict:
    """One run of TernCore: a one-cycle reset, then :func:`drive_streams` of ``items[name]`` (payloads
    in the bench's form) on ``ports["instr"|"act"|"wgt"]`` and a sink on ``ports["out"]`` until every
    input was accepted and ``status().idle``. Returns ``cycles``, ``counters``, ``error`` (or
    ``timeout``, a message, or ``stopped``), ``outputs`` (the payloads taken), the cycle of every
    transfer (``instr_cycles`` ... ``out_cycles``) and ``wall_s``."""
    await bench.reset()
    sources = [(Source(timing, name, items[name]), ports[name]) for name in INPUTS]
    sink = Sink(timing, "out")
    sinks = [(sink, ports["out"])]
    seen = {}

    def until(c):
        if all(src.done for src, _ in sources):
            st = status()
            if st.idle:
                seen["status"] = st
                return True
        return False

    t0 = time.perf_counter()
    why, c = await drive_streams(bench, sources, sinks, until=until, max_cycles=max_cycles,
                                 stop_at=stop_at)
    res = {"wall_s": time.perf_counter() - t0}
    if why == "done":
        st = seen["status"]
        res.update(cycles=c, counters=st.counters, error=st.error)
    elif why == "stopped":
        res["stopped"] = c
    else:
        res["timeout"] = timeout_message(max_cycles, {name: (src.n, len(src.items))
                                                      for name, (src, _) in zip(INPUTS, sources)},
                                         sink.n, timing)
    res["outputs"] = sink.payloads
    res["out_cycles"] = sink.cycles
    for name, (src, _) in zip(INPUTS, sources):
        res[f"{name}_cycles"] = src.cycles
    await release(bench, sources, sinks)
    return res


# ---------------------------------------------------------------------------------------------------
# adapters

class AmaranthBench:
    """The bench of an Amaranth async testbench ``ctx`` (inputs are written and outputs sampled in the
    same cycle: ``ctx.set`` settles the combinational logic; ``step`` is ``ctx.tick()``). Payloads are
    set and taken through their layouts (``ctx.set(port.payload, value)``). ``rst``: the reset signal
    of the domain (``ClockDomain.rst``), for :meth:`reset`."""

    def __init__(self, ctx, rst=None):
        self.ctx, self.rst = ctx, rst

    def set(self, signal, value):
        self.ctx.set(signal, value)

    def get(self, signal):
        return self.ctx.get(signal)

    def put(self, port, item):
        self.ctx.set(port.payload, item)

    def take(self, port):
        return self.ctx.get(port.payload)

    def put_garbage(self, port, rng):
        from amaranth.hdl import Shape
        from amaranth.lib import data
        shape = port.payload.shape()
        if isinstance(shape, data.Layout):
            self.ctx.set(port.payload, shape.from_bits(rng.getrandbits(shape.size)))
        else:
            self.ctx.set(port.payload, rng.getrandbits(Shape.cast(shape).width))

    async def settle(self):
        pass

    async def step(self):
        await self.ctx.tick()

    async def reset(self):
        """Synchronous reset for one cycle."""
        self.ctx.set(self.rst, 1)
        await self.ctx.tick()
        self.ctx.set(self.rst, 0)


class CocotbBench:
    """The bench of a cocotb test on ``dut`` (inputs written after the falling edge of ``dut.clk``,
    outputs sampled in ``ReadOnly``). Payloads are integers (:func:`hw.backends.common.pack_payloads`);
    :meth:`take` gives the unsigned integer on the bus."""

    def __init__(self, dut, clk=None, rst=None):
        self.dut = dut
        self.clk = dut.clk if clk is None else clk
        self.rst = rst if rst is not None else getattr(dut, "rst", None)

    def port(self, name: str) -> Port:
        """The Verilog signals ``<name>__valid``/``__ready``/``__payload`` of a stream port."""
        d = self.dut
        return Port(getattr(d, f"{name}__valid"), getattr(d, f"{name}__ready"), getattr(d, f"{name}__payload"))

    def set(self, signal, value):
        signal.value = int(value)

    def get(self, signal):
        return int(signal.value)

    def put(self, port, item):
        port.payload.value = item

    def take(self, port):
        return port.payload.value.to_unsigned()

    def put_garbage(self, port, rng):
        port.payload.value = rng.getrandbits(len(port.payload))

    async def settle(self):
        from cocotb.triggers import ReadOnly
        await ReadOnly()

    async def step(self):
        from cocotb.triggers import FallingEdge
        await FallingEdge(self.clk)

    async def reset(self):
        """``rst`` high for one rising edge."""
        from cocotb.triggers import FallingEdge
        self.rst.value = 1
        await FallingEdge(self.clk)
        self.rst.value = 0
