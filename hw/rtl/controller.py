"""Controller of the tern core: the composition of its four stage components.

* :class:`hw.rtl.dispatch.Dispatch`: dispatch register D, operand checks, execute and loader queues,
  SYNC and quiescence;
* :class:`hw.rtl.loader.WeightLoader`: loader queue pop, weight words -> weight buffer, the bank
  scoreboard (``bank_owned``, ``bank0_fill``/``bank1_fill``) and the weight stream gate;
* :class:`hw.rtl.execute.ExecuteEngine`: execute queue pop, LOAD_ACT, MATMUL issue, output credits
  (``out_reserved``), PE controls;
* :class:`hw.rtl.counters.PerfCounters`: the performance counters (those of
  ``config.perf_counters``, ``config.perf_width`` bits each).

The exact cycle behaviour is specified in ``docs/ARCHITECTURE.md`` (section "Timing") and the
instruction semantics in ``docs/ISA.md``; the cycle-accurate simulator (``hw.sim``) has one function
per stage with the same names.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.component import ConfigComponent
from hw.rtl.counters import PerfCounters
from hw.rtl.dispatch import Dispatch
from hw.rtl.execute import EXECUTE_EVENTS, ExecuteEngine
from hw.rtl.loader import WeightLoader

__all__ = ["Controller"]

#: The ports of each stage that are the controller's own (same names, same members).
_EXPORTED = {
    "dispatch": ("instr", "idle"),
    "loader": ("words", "wgt_w", "wgt_gate"),
    "execute": ("act", "act_w", "act_r", "wgt_r", "out_pop", "pe_valid", "pe_first", "pe_last",
                "pe_act", "pe_codes"),
    "counters": ("perf",),
}


class Controller(ConfigComponent):
    """Dispatch + weight loader + execute engine + counters (module docstring).

    Ports (all synchronous to the ``sync`` domain; each is the port of the same name of the stage
    named, passed through, except ``wgt_beat``, ``dec_error`` and ``error``)
    --------------------------------------------------------------------------------------------
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

    def __init__(self, config: TernConfig):
        self.dispatch = Dispatch(config)
        self.loader = WeightLoader(config)
        self.execute = ExecuteEngine(config)
        self.counters = PerfCounters(config)
        members = {name: getattr(self, stage).signature.members[name]
                   for stage, names in _EXPORTED.items() for name in names}
        super().__init__(config, {**members, "wgt_beat": In(1), "dec_error": In(1), "error": Out(2)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        driven = {"cycles", "wgt_beats", *EXECUTE_EVENTS}
        if not driven >= set(cfg.perf_counters):
            raise AssertionError(f"Controller drives the counters {', '.join(sorted(driven))}; the "
                                 f"configuration has {', '.join(cfg.perf_counters)}")
        m.submodules.dispatch = dispatch = self.dispatch
        m.submodules.loader = loader = self.loader
        m.submodules.execute = execute = self.execute
        m.submodules.counters = counters = self.counters

        # the stages' own ports, passed through under their names
        for stage, names in _EXPORTED.items():
            for name in names:
                outer, inner = getattr(self, name), getattr(getattr(self, stage), name)
                member = self.signature.members[name]
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)

        # between the stages
        wiring.connect(m, dispatch.load_q, loader.load_q)
        wiring.connect(m, dispatch.exec_q, execute.exec_q)
        m.d.comb += [
            execute.bank_owned.eq(loader.bank_owned),
            execute.bank0_fill.eq(loader.bank0_fill),
            execute.bank1_fill.eq(loader.bank1_fill),
            execute.bank_set.eq(loader.bank_set),
            execute.bank_write.eq(loader.bank_write),
            execute.write_word.eq(loader.write_word),
            loader.bank_release.eq(execute.bank_release),
            dispatch.engine_idle.eq(execute.engine_idle),
            self.error.eq(Cat(dispatch.bad_instr, self.dec_error)),
        ]
        # the events of the counters the configuration has (the others are not built)
        events = {"cycles": 1, "wgt_beats": self.wgt_beat,
                  **{name: execute.events[name] for name in EXECUTE_EVENTS}}
        for name in cfg.perf_counters:
            m.d.comb += counters.events[name].eq(events[name])
        return m
