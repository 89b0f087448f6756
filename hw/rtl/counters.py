"""Performance counters of the tern core: one ``perf_width``-bit counter per name of
``config.perf_counters``, presented as one :class:`amaranth.lib.data.Struct` (definitions of the events
in ``docs/ARCHITECTURE.md``, section "Performance counters")."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.component import ConfigComponent

__all__ = ["PerfCounters", "counters_layout", "events_layout"]


def counters_layout(config: TernConfig) -> data.StructLayout:
    """The counters: one field per name of ``config.perf_counters`` (in that order, lowest bits
    first), each ``config.perf_width`` bits unsigned."""
    return data.StructLayout({name: unsigned(config.perf_width) for name in config.perf_counters})


def events_layout(config: TernConfig) -> data.StructLayout:
    """One event bit per counter of ``config.perf_counters``."""
    return data.StructLayout({name: 1 for name in config.perf_counters})


class PerfCounters(ConfigComponent):
    """The performance counters: each counts the cycles in which its event bit is high.

    Ports (``sync`` domain)
    -----------------------
    events : In(events_layout(config))
        One bit per counter: the counter's event holds in this cycle.
    perf : Out(counters_layout(config))
        The counters (registers, reset to 0): the value in cycle ``c`` counts the events of cycles
        ``0 .. c-1``, wrapping at ``2**perf_width``.

    Internal signals: ``perf_<name>_q`` (the counter registers), ``perf_<name>_event``.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, {
            "events": In(events_layout(config)),
            "perf": Out(counters_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        for name in cfg.perf_counters:
            counter = Signal(cfg.perf_width, name=f"perf_{name}_q")
            event = Signal(name=f"perf_{name}_event")
            m.d.comb += [event.eq(self.events[name]), self.perf[name].eq(counter)]
            with m.If(event):
                m.d.sync += counter.eq(counter + 1)
        return m
