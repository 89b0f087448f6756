"""On-chip buffers of the tern core, all built on :class:`amaranth.lib.memory.Memory`.

* :class:`ActBuffer`: the activation buffer, ``act_depth`` words of ``lanes`` int8 values.
* :class:`WeightBuffer`: the double-buffered weight buffer, 2 banks of ``wgt_depth`` weight words
  (``rows x lanes`` 2-bit ternary codes each).
* :class:`OutputFIFO`: the result queue in front of the ``out`` stream, ``out_depth`` result vectors
  (``rows`` signed ``acc_width``-bit accumulators each).

Timing conventions (see ``docs/ARCHITECTURE.md``): a write presented in cycle ``c`` (``w_en`` high) is
stored at the clock edge that ends cycle ``c``; a read address presented in cycle ``c`` returns its word on
``r_data`` during cycle ``c + 1`` (``latency == 1``). The RAM read ports are not transparent: reading an
address in the same cycle it is written returns the old word (the controller never does this).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig

__all__ = ["ActBuffer", "WeightBuffer", "OutputFIFO", "act_word_layout", "weight_word_layout",
           "result_layout"]


def _check_config(owner, config):
    """Reject a non-:class:`TernConfig` (marking ``owner`` used so Amaranth does not warn about it)."""
    if not isinstance(config, TernConfig):
        owner._MustUse__used = True
        raise TypeError(f"{type(owner).__name__}: config must be a hw.config.TernConfig, not {config!r}")


def act_word_layout(config: TernConfig) -> data.ArrayLayout:
    """One activation word: ``lanes`` signed int8 values (lane ``l`` multiplies weight column ``l``)."""
    return data.ArrayLayout(signed(8), config.lanes)


def weight_word_layout(config: TernConfig) -> data.ArrayLayout:
    """One weight word: ``rows`` rows of ``lanes`` 2-bit codes (code = t + 1; code 3 reads as 0)."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(2), config.lanes), config.rows)


def result_layout(config: TernConfig) -> data.ArrayLayout:
    """One result vector: ``rows`` signed ``acc_width``-bit accumulators."""
    return data.ArrayLayout(signed(config.acc_width), config.rows)


class ActBuffer(wiring.Component):
    """Activation buffer: ``config.act_depth`` words of ``config.lanes`` int8 values.

    Ports
    -----
    w_en : In(1)
        Write strobe; the word ``w_data`` is stored at ``w_addr`` at the edge ending the cycle.
    w_addr : In(range(act_depth))
    w_data : In(ArrayLayout(signed(8), lanes))
    r_addr : In(range(act_depth))
        Read address, presented in cycle ``c``.
    r_data : Out(ArrayLayout(signed(8), lanes))
        The word at ``r_addr`` of cycle ``c``, during cycle ``c + 1`` (:attr:`latency` = 1). Not
        transparent to a write of the same cycle.
    """

    def __init__(self, config: TernConfig):
        _check_config(self, config)
        self._config = config
        layout = act_word_layout(config)
        super().__init__({
            "w_en": In(1),
            "w_addr": In(range(config.act_depth)),
            "w_data": In(layout),
            "r_addr": In(range(config.act_depth)),
            "r_data": Out(layout),
        })

    @property
    def config(self) -> TernConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from a read address to its data on ``r_data``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.act_mem = mem = Memory(shape=act_word_layout(cfg), depth=cfg.act_depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")
        m.d.comb += [
            wp.en.eq(self.w_en),
            wp.addr.eq(self.w_addr),
            wp.data.eq(self.w_data),
            rp.addr.eq(self.r_addr),
            self.r_data.eq(rp.data),
        ]
        return m


class WeightBuffer(wiring.Component):
    """Double-buffered weight buffer: 2 banks x ``config.wgt_depth`` weight words.

    One RAM of ``2 * wgt_depth`` words; word ``k`` of bank ``b`` lives at address ``b * wgt_depth + k``
    (the bank is the address MSB). One write port (the weight loader) and one read port (the execute
    engine), so the loader can fill one bank while the PE array reads the other.

    Ports
    -----
    w_en, w_bank : In(1)
    w_addr : In(range(wgt_depth))
    w_data : In(ArrayLayout(ArrayLayout(unsigned(2), lanes), rows))
        Stored at the edge ending the cycle in which ``w_en`` is high.
    r_bank : In(1)
    r_addr : In(range(wgt_depth))
        Read address, presented in cycle ``c``.
    r_data : Out(ArrayLayout(ArrayLayout(unsigned(2), lanes), rows))
        The word during cycle ``c + 1`` (:attr:`latency` = 1); not transparent.
    """

    def __init__(self, config: TernConfig):
        _check_config(self, config)
        self._config = config
        layout = weight_word_layout(config)
        super().__init__({
            "w_en": In(1),
            "w_bank": In(1),
            "w_addr": In(range(config.wgt_depth)),
            "w_data": In(layout),
            "r_bank": In(1),
            "r_addr": In(range(config.wgt_depth)),
            "r_data": Out(layout),
        })

    @property
    def config(self) -> TernConfig:
        return self._config

    @property
    def latency(self) -> int:
        """Cycles from a read address to its data on ``r_data``."""
        return 1

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.wgt_mem = mem = Memory(shape=weight_word_layout(cfg), depth=2 * cfg.wgt_depth,
                                            init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")
        m.d.comb += [
            wp.en.eq(self.w_en),
            wp.addr.eq(Cat(self.w_addr, self.w_bank)),
            wp.data.eq(self.w_data),
            rp.addr.eq(Cat(self.r_addr, self.r_bank)),
            self.r_data.eq(rp.data),
        ]
        return m


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

    :attr:`latency` = 1: cycles from a write into an empty queue to ``r.valid``.
    """

    def __init__(self, shape, depth: int):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            self._MustUse__used = True
            raise ValueError(f"OutputFIFO depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "w": In(stream.Signature(shape)),
            "r": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @classmethod
    def for_config(cls, config: TernConfig) -> "OutputFIFO":
        """The result FIFO of a configuration: ``out_depth`` entries of :func:`result_layout`."""
        if not isinstance(config, TernConfig):
            raise TypeError(f"OutputFIFO: config must be a hw.config.TernConfig, not {config!r}")
        return cls(result_layout(config), config.out_depth)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.fifo_mem = mem = Memory(shape=self._shape, depth=depth, init=[])
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
