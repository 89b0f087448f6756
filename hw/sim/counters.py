"""Performance counters of the simulator (RTL: :class:`hw.rtl.counters.PerfCounters`).

The stages add the cycles of their events as they time them; :meth:`PerfCounters.counts` closes the
run and :meth:`PerfCounters.values` keeps the counters the configuration has, wrapped to their width.
Exactly one of ``busy``, ``act_beats``, ``stall_weight``, ``stall_act``, ``stall_out`` and ``idle``
holds in every cycle (definitions in ``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

__all__ = ["PerfCounters"]


class PerfCounters:
    """Counts accumulated by the stages: ``busy`` (issue steps), ``stall_weight``, ``stall_out``,
    ``stall_act`` and ``x_valid`` (cycles the execute engine has a current instruction)."""

    __slots__ = ("names", "mask", "busy", "stall_weight", "stall_out", "stall_act", "x_valid")

    def __init__(self, config):
        self.names = config.perf_counters
        self.mask = (1 << config.perf_width) - 1
        self.busy = self.stall_weight = self.stall_out = self.stall_act = self.x_valid = 0

    def counts(self, *, cycles: int, act_beats: int, wgt_beats: int) -> dict:
        """The events of all eight counters over a run of ``cycles`` cycles (not wrapped)."""
        return {"cycles": cycles, "busy": self.busy, "act_beats": act_beats,
                "stall_weight": self.stall_weight, "stall_act": self.stall_act,
                "stall_out": self.stall_out, "idle": cycles - self.x_valid, "wgt_beats": wgt_beats}

    def values(self, counts: dict) -> dict:
        """The counters the core has (``config.perf_counters``, in port order) for the event
        ``counts`` of :meth:`counts`, wrapped at ``2**perf_width`` as the registers wrap."""
        return {name: counts[name] & self.mask for name in self.names}
