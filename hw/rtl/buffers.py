"""On-chip buffers of the tern core and the word layouts they hold, all built on
:class:`amaranth.lib.memory.Memory`.

* :class:`ActBuffer`: the activation buffer, ``act_depth`` words of ``lanes`` int8 values.
* :class:`WeightBuffer`: the double-buffered weight buffer, 2 banks of ``wgt_depth`` weight words
  (``rows x lanes`` 2-bit ternary codes each).
* :class:`OutputFIFO`: the result queue in front of the ``out`` stream, ``out_depth`` result vectors
  (``rows`` signed ``acc_width``-bit accumulators each).

The two RAM buffers expose their memory's ports unchanged, as ``write`` (a
:class:`amaranth.lib.memory.WritePort.Signature`) and ``read`` (a
:class:`amaranth.lib.memory.ReadPort.Signature`), so the top level connects them to the controller
with :func:`amaranth.lib.wiring.connect`.

Timing conventions (see ``docs/ARCHITECTURE.md``): a write presented in cycle ``c`` (``write.en`` high)
is stored at the clock edge that ends cycle ``c``; a read address presented in cycle ``c`` returns its
word on ``read.data`` during cycle ``c + ram_latency`` (``TernConfig.ram_latency`` = 1: the read port
is synchronous). The RAM read ports are not transparent: reading an address in the same cycle it is
written returns the old word. The core never uses such a word (the read address follows the execute
engine even while it does not issue; no issue reads an address written in its cycle, a property of
the controller's formal harness), so FPGA builds leave those collisions undefined
(``hw.flows.yosys.BUFFER_COLLISIONS_UNDEFINED``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.component import ConfigComponent

__all__ = ["ActBuffer", "WeightBuffer", "OutputFIFO", "act_word_layout",
           "weight_word_layout", "result_layout", "act_addr_width", "wgt_addr_width"]


def act_word_layout(config: TernConfig) -> data.ArrayLayout:
    """One activation word: ``lanes`` signed int8 values (lane ``l`` multiplies weight column ``l``)."""
    return data.ArrayLayout(signed(8), config.lanes)


def weight_word_layout(config: TernConfig) -> data.ArrayLayout:
    """One weight word: ``codes[r][l]``, ``rows`` rows of ``lanes`` 2-bit codes (code = t + 1; code 3
    reads as 0)."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(2), config.lanes), config.rows)


def result_layout(config: TernConfig) -> data.ArrayLayout:
    """One result vector: ``rows`` signed ``acc_width``-bit accumulators."""
    return data.ArrayLayout(signed(config.acc_width), config.rows)


def act_addr_width(config: TernConfig) -> int:
    """Address bits of the activation buffer (``log2(act_depth)``)."""
    return (config.act_depth - 1).bit_length()


def wgt_addr_width(config: TernConfig) -> int:
    """Address bits of the weight buffer: ``log2(wgt_depth)`` word bits plus the bank (the MSB)."""
    return (2 * config.wgt_depth - 1).bit_length()


class _ConfigBuffer(ConfigComponent):
    """A RAM of words of one configuration, its ports those of the memory."""

    def __init__(self, config: TernConfig, layout, depth: int):
        self._layout = layout
        self._depth = depth
        addr_width = (depth - 1).bit_length()
        super().__init__(config, {
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=layout)),
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=layout)),
        })

    @property
    def latency(self) -> int:
        """Cycles from a read address to its data: ``config.ram_latency``."""
        return self.config.ram_latency

    def elaborate(self, platform):
        self.check_built("ram_latency", 1)   # one synchronous read port: one register stage
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._layout, depth=self._depth, init=[])
        wiring.connect(m, wiring.flipped(self.write), mem.write_port())
        wiring.connect(m, wiring.flipped(self.read), mem.read_port(domain="sync"))
        return m


class ActBuffer(_ConfigBuffer):
    """Activation buffer: ``config.act_depth`` words of :func:`act_word_layout`.

    Ports
    -----
    write : Out(WritePort.Signature(addr_width=log2(act_depth), shape=act_word_layout))
        ``write.en`` (1 bit), ``write.addr``, ``write.data`` in: the word is stored at the edge
        ending the cycle in which ``en`` is high.
    read : Out(ReadPort.Signature(addr_width=log2(act_depth), shape=act_word_layout))
        ``read.addr`` in (presented in cycle ``c``; ``read.en`` in, high by default), ``read.data``
        out: the word during cycle ``c + 1``. Not transparent to a write of the same cycle.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, act_word_layout(config), config.act_depth)


class WeightBuffer(_ConfigBuffer):
    """Double-buffered weight buffer: 2 banks x ``config.wgt_depth`` words of
    :func:`weight_word_layout`.

    One RAM of ``2 * wgt_depth`` words; word ``k`` of bank ``b`` lives at address
    ``b * wgt_depth + k`` (the bank is the address MSB). One write port (the weight loader) and one
    read port (the execute engine), so the loader can fill one bank while the PE array reads the
    other.

    Ports
    -----
    write : Out(WritePort.Signature(addr_width=log2(wgt_depth) + 1, shape=weight_word_layout))
        Stored at the edge ending the cycle in which ``write.en`` is high.
    read : Out(ReadPort.Signature(addr_width=log2(wgt_depth) + 1, shape=weight_word_layout))
        Address presented in cycle ``c``, ``read.data`` during cycle ``c + 1``; not transparent.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, weight_word_layout(config), 2 * config.wgt_depth)


class OutputFIFO(wiring.Component):
    """First-in first-out queue of ``depth`` entries of ``shape`` on a :class:`Memory`.

    Ports
    -----
    w : In(stream.Signature(shape))
        ``w.ready`` is high in cycle ``c`` iff fewer than ``depth`` entries are stored at the start of
        ``c`` (a pop in the same cycle does not free space until ``c + 1``). An entry written in cycle
        ``c`` is presented on ``r`` from cycle ``c + 1`` if it is then the oldest entry.
    r : Out(stream.Signature(shape))
        ``r.valid`` is high iff at least one entry is stored (registered level). The oldest entry is on
        ``r.payload``; it is removed at the edge ending a cycle with ``r.valid & r.ready``.
    level : Out(range(depth + 1))
        Entries stored (start of the cycle).

    :attr:`latency` = 1 (``TernConfig.out_fifo_latency``): cycles from a write into an empty queue
    to ``r.valid``.

    Why not :mod:`amaranth.lib.fifo`: neither of its synchronous FIFOs keeps both this timing and a
    block RAM. Measured for 64 entries of 128 bits (Amaranth 0.5 simulation; Yosys ``synth_ecp5``
    through ``hw.flows.yosys.cell_histogram(..., "ecp5")``):

    ========================  ====================  =========================================
    FIFO                      write in ``c``:       ECP5 cells
                              first ``r.valid``
    ========================  ====================  =========================================
    this one                  ``c + 1``             4 ``DP16KD`` (block RAM), 148 FF, 14 CCU2C
    ``lib.fifo.SyncFIFO``     ``c + 1``             128 ``TRELLIS_DPR16X4`` (LUT RAM), 19 FF
    ``SyncFIFOBuffered``      ``c + 2``             4 ``DP16KD``, 283 FF
    ========================  ====================  =========================================

    ``SyncFIFOBuffered`` would add a cycle to every result (a different core timing); ``SyncFIFO``
    reads its memory asynchronously, so it cannot use a block RAM. Here the read port is synchronous
    and transparent for the write port, and it is addressed with the *next* read pointer, so the
    oldest entry is on ``r.payload`` in the cycle after it was written or after the previous entry
    left.
    """

    #: Register stages from a write into an empty queue to ``r.valid``.
    LATENCY = 1

    def __new__(cls, shape, depth, *args, **kwargs):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"OutputFIFO depth must be a positive integer, not {depth!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, shape, depth: int):
        self.shape = shape
        self.depth = depth
        super().__init__({
            "w": In(stream.Signature(shape)),
            "r": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @classmethod
    def for_config(cls, config: TernConfig) -> "OutputFIFO":
        """The result FIFO of a configuration: ``out_depth`` entries of :func:`result_layout`; its
        latency is checked against ``config.out_fifo_latency``."""
        if not isinstance(config, TernConfig):
            raise TypeError(f"OutputFIFO: config must be a hw.config.TernConfig, not {config!r}")
        if config.out_fifo_latency != cls.LATENCY:
            raise AssertionError(f"OutputFIFO has latency {cls.LATENCY}, the configuration says "
                                 f"out_fifo_latency = {config.out_fifo_latency}")
        return cls(result_layout(config), config.out_depth)

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.fifo_mem = mem = Memory(shape=self.shape, depth=depth, init=[])
        wp = mem.write_port()
        # Transparent for the write port: an entry written into an empty queue is read the next cycle.
        rp = mem.read_port(domain="sync", transparent_for=(wp,))

        level = Signal(range(depth + 1), name="fifo_level")
        wr_ptr = Signal(range(depth), name="fifo_wr_ptr")
        rd_ptr = Signal(range(depth), name="fifo_rd_ptr")
        rd_ptr_next = Signal(range(depth), name="fifo_rd_ptr_next")
        do_w = Signal(name="fifo_do_write")
        do_r = Signal(name="fifo_do_read")

        def incr(p):
            return Mux(p == depth - 1, 0, p + 1)

        m.d.comb += [
            self.level.eq(level),
            self.w.ready.eq(level != depth),
            self.r.valid.eq(level != 0),
            do_w.eq(self.w.valid & self.w.ready),
            do_r.eq(self.r.valid & self.r.ready),
            wp.en.eq(do_w),
            wp.addr.eq(wr_ptr),
            wp.data.eq(self.w.payload),
            rd_ptr_next.eq(Mux(do_r, incr(rd_ptr), rd_ptr)),
            rp.addr.eq(rd_ptr_next),
            self.r.payload.eq(rp.data),
        ]
        with m.If(do_w):
            m.d.sync += wr_ptr.eq(incr(wr_ptr))
        m.d.sync += rd_ptr.eq(rd_ptr_next)
        with m.If(do_w & ~do_r):
            m.d.sync += level.eq(level + 1)
        with m.Elif(do_r & ~do_w):
            m.d.sync += level.eq(level - 1)
        return m
