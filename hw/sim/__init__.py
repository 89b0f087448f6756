"""Cycle-accurate Python simulator of the tern core (``docs/SIMULATOR.md``).

    from hw.sim import simulate
    res = simulate(config, program, timing)      # -> RunResult: outputs, cycles, counters, events

Bit-exact and cycle-exact against :class:`hw.rtl.top.TernCore` for the same program and the same
:class:`hw.timing.Timing` (checked by ``tests/test_differential.py`` and :func:`run_verify`). The
modules mirror the RTL's stages: ``dispatch``, ``loader``, ``execute``, ``output``, ``counters``, with
``results`` for the values, ``events`` for the energy event counts and ``recurrence`` for the closed
form they all evaluate; ``machine`` connects them.
"""

from hw.sim.events import event_counts
from hw.sim.machine import SimError, simulate
from hw.result import PERF_COUNTERS, RunResult, Streams

__all__ = ["simulate", "RunResult", "Streams", "SimError", "event_counts", "PERF_COUNTERS"]
