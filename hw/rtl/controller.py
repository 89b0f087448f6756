"""Controller of the tern core: the composition of its four stage components.

* :class:`hw.rtl.dispatch.Dispatch`: dispatch register D, operand checks, execute and loader queues,
  SYNC and quiescence;
* :class:`hw.rtl.loader.WeightLoader`: loader queue pop, weight words -> weight buffer, the bank
  scoreboard (``bank_owned``, ``bank0_fill``/``bank1_fill``) and the weight stream gate;
* :class:`hw.rtl.execute.ExecuteEngine`: execute queue pop, LOAD_ACT, MATMUL issue, output credits
  (``out_reserved``), PE controls;
* :class:`hw.rtl.counters.PerfCounters`: the performance counters.

The exact cycle behaviour is specified in ``docs/ARCHITECTURE.md`` (section "Timing") and the
instruction semantics in ``docs/ISA.md``; the cycle-accurate simulator (``hw.sim``) has one function
per stage with the same names.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.isa import INSTR_LAYOUT
from hw.rtl.buffers import act_addr_width, act_word_layout, weight_word_layout, wgt_addr_width
from hw.rtl.counters import PerfCounters, counters_layout
from hw.rtl.dispatch import Dispatch
from hw.rtl.execute import EXECUTE_EVENTS, ExecuteEngine
from hw.rtl.loader import WeightLoader

__all__ = ["Controller"]


class Controller(wiring.Component):
    """Dispatch + weight loader + execute engine + counters (module docstring).

    Ports (all synchronous to the ``sync`` domain)
    ------------------------------------------------
    instr : In(stream.Signature(INSTR_LAYOUT))
        Instruction words (:class:`Dispatch`).
    act : In(stream.Signature(ArrayLayout(signed(8), lanes)))
        Activation beats; ``act.ready`` is high only while a LOAD_ACT is current.
    words : In(stream.Signature(weight word layout))
        Decoded weight words from the WeightDecoder (:class:`WeightLoader`).
    act_w, act_r : In(WritePort.Signature / ReadPort.Signature of the activation buffer)
        The activation buffer's ports (:class:`ExecuteEngine`).
    wgt_w, wgt_r : In(WritePort.Signature / ReadPort.Signature of the weight buffer)
        The weight buffer's ports (write: :class:`WeightLoader`, read: :class:`ExecuteEngine`).
    pe_valid, pe_first, pe_last : Out(1); pe_act, pe_codes : Out
        One step for the PE array per cycle after an issue: controls (registered) and the buffers'
        read data.
    wgt_gate : Out(1)
        Registered; high while the loader holds a MATMUL. The top level lets weight beats into the
        decoder only while it is high.
    wgt_beat : In(1)
        A weight beat was accepted from the ``wgt`` stream this cycle (the ``wgt_beats`` counter).
    out_pop : In(1)
        A result vector left the ``out`` stream this cycle (returns one output credit).
    dec_error : In(1)
        The decoder's sticky invalid-code flag.
    error : Out(2)
        Bit 0: a bad instruction was skipped (sticky). Bit 1: ``dec_error``.
    idle : Out(1)
        Nothing dispatched, queued, executing or waiting in the output path (a SYNC would retire).
    perf : Out(counters_layout(config))
        The performance counters (:class:`PerfCounters`).
    """

    def __new__(cls, config, *args, **kwargs):
        if not isinstance(config, TernConfig):
            raise TypeError(f"Controller: config must be a hw.config.TernConfig, not {config!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, config: TernConfig):
        self.config = config
        act_l, wgt_l = act_word_layout(config), weight_word_layout(config)
        AW, WA = act_addr_width(config), wgt_addr_width(config)
        super().__init__({
            "instr": In(stream.Signature(INSTR_LAYOUT)),
            "act": In(stream.Signature(act_l)),
            "words": In(stream.Signature(wgt_l)),
            "act_w": In(WritePort.Signature(addr_width=AW, shape=act_l)),
            "act_r": In(ReadPort.Signature(addr_width=AW, shape=act_l)),
            "wgt_w": In(WritePort.Signature(addr_width=WA, shape=wgt_l)),
            "wgt_r": In(ReadPort.Signature(addr_width=WA, shape=wgt_l)),
            "pe_valid": Out(1),
            "pe_first": Out(1),
            "pe_last": Out(1),
            "pe_act": Out(act_l),
            "pe_codes": Out(wgt_l),
            "wgt_gate": Out(1),
            "wgt_beat": In(1),
            "out_pop": In(1),
            "dec_error": In(1),
            "error": Out(2),
            "idle": Out(1),
            "perf": Out(counters_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        if set(cfg.perf_counters) != {"cycles", "wgt_beats", *EXECUTE_EVENTS}:
            raise AssertionError(f"Controller drives the counters cycles, wgt_beats and "
                                 f"{', '.join(EXECUTE_EVENTS)}; the configuration has "
                                 f"{', '.join(cfg.perf_counters)}")
        m.submodules.dispatch = dispatch = Dispatch(cfg)
        m.submodules.loader = loader = WeightLoader(cfg)
        m.submodules.execute = execute = ExecuteEngine(cfg)
        m.submodules.counters = counters = PerfCounters(cfg)

        wiring.connect(m, wiring.flipped(self.instr), dispatch.instr)
        wiring.connect(m, dispatch.load_q, loader.load_q)
        wiring.connect(m, dispatch.exec_q, execute.exec_q)
        wiring.connect(m, wiring.flipped(self.words), loader.words)
        wiring.connect(m, wiring.flipped(self.wgt_w), loader.wgt_w)
        wiring.connect(m, wiring.flipped(self.act), execute.act)
        wiring.connect(m, wiring.flipped(self.act_w), execute.act_w)
        wiring.connect(m, wiring.flipped(self.act_r), execute.act_r)
        wiring.connect(m, wiring.flipped(self.wgt_r), execute.wgt_r)
        m.d.comb += [
            execute.bank_owned.eq(loader.bank_owned),
            execute.bank0_fill.eq(loader.bank0_fill),
            execute.bank1_fill.eq(loader.bank1_fill),
            loader.bank_release.eq(execute.bank_release),
            execute.out_pop.eq(self.out_pop),
            dispatch.engine_idle.eq(execute.engine_idle),

            self.pe_valid.eq(execute.pe_valid),
            self.pe_first.eq(execute.pe_first),
            self.pe_last.eq(execute.pe_last),
            self.pe_act.eq(execute.pe_act),
            self.pe_codes.eq(execute.pe_codes),
            self.wgt_gate.eq(loader.wgt_gate),
            self.error.eq(Cat(dispatch.bad_instr, self.dec_error)),
            self.idle.eq(dispatch.idle),

            counters.events.cycles.eq(1),
            counters.events.wgt_beats.eq(self.wgt_beat),
            self.perf.eq(counters.perf),
        ]
        for name in EXECUTE_EVENTS:
            m.d.comb += counters.events[name].eq(execute.events[name])
        return m
