"""Performance counters of the simulator (RTL: :class:`hw.rtl.counters.PerfCounters`).

The stages add the cycles of their events as they time them; :meth:`PerfCounters.values` closes the
run. Exactly one of ``busy``, ``act_beats``, ``stall_weight``, ``stall_act``, ``stall_out`` and
``idle`` holds in every cycle (definitions in ``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

__all__ = ["PerfCounters"]


class PerfCounters:
    """Counts accumulated by the stages: ``busy`` (issue steps), ``stall_weight``, ``stall_out``,
    ``stall_act`` and ``x_valid`` (cycles the execute engine has a current instruction)."""

    __slots__ = ("names", "busy", "stall_weight", "stall_out", "stall_act", "x_valid")

    def __init__(self, config):
        self.names = config.perf_counters
        self.busy = self.stall_weight = self.stall_out = self.stall_act = self.x_valid = 0

    def values(self, *, cycles: int, act_beats: int, wgt_beats: int) -> dict:
        """The counters at the end of a run of ``cycles`` cycles, in port order."""
        v = {"cycles": cycles, "busy": self.busy, "act_beats": act_beats,
             "stall_weight": self.stall_weight, "stall_act": self.stall_act,
             "stall_out": self.stall_out, "idle": cycles - self.x_valid, "wgt_beats": wgt_beats}
        return {name: v[name] for name in self.names}
