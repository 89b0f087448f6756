"""Cycle-accurate Python simulator of the tern core (``docs/SIMULATOR.md``).

    from hw.sim import simulate
    res = simulate(config, program, timing)      # -> RunResult: outputs, cycles, counters, events

Bit-exact and cycle-exact against :class:`hw.rtl.top.TernCore` for the same program and the same
:class:`hw.timing.Timing` (checked by ``tests/test_differential.py`` and :func:`run_verify`).
"""

from hw.sim.machine import Latencies, SimError, adder_tree_widths, rtl_latencies, simulate
from hw.result import PERF_COUNTERS, RunResult, Streams

__all__ = ["simulate", "RunResult", "Streams", "SimError", "Latencies", "rtl_latencies",
           "adder_tree_widths", "PERF_COUNTERS"]
