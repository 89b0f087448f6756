"""Amaranth-simulation runner for :class:`hw.rtl.top.TernCore` that replays a :class:`hw.timing.Timing`.

:func:`run_rtl` drives the four streams of the core cycle by cycle with the one stream-drive
policy, :mod:`hw.backends.drive` (the environment's side of transfer ``i`` rises in cycle
``Timing.avail(name, i, x_{i-1})`` and stays high until the transfer), and returns a
:class:`hw.result.RunResult`: the result vectors, the cycle count, the performance counters, the error
flags and the cycle of every transfer. The cycle-accurate simulator
(:func:`hw.sim.simulate`) returns the same structure for the same inputs; the differential tests
compare the two field by field.

Cycle count (the definition shared with the simulator): cycles are numbered from 0, the first cycle
after the one-cycle reset that starts every run. ``cycles`` is the first cycle ``c`` in which
every instruction word, activation beat and weight beat has been accepted and the core's ``idle``
output is high (nothing dispatched, queued or executing, and every result has left ``out``). The
performance counters are read in that cycle, so ``counters["cycles"] == cycles``.
"""

from __future__ import annotations

from hw.backends.common import HarnessError, RunCase, payload_consts, plan_runs, run_result
from hw.backends.drive import AmaranthBench, CoreStatus, run_core
from hw.config import TernConfig
from hw.result import RunResult
from hw.timing import Timing

__all__ = ["run", "run_rtl", "run_rtl_cases", "core_status", "RunCase", "HarnessError"]


def core_status(ctx, core) -> CoreStatus:
    """The status outputs of ``core`` (a :class:`hw.rtl.top.TernCore`) in the current cycle of the
    testbench ``ctx``: ``idle``, ``error`` and the performance counters."""
    perf = ctx.get(core.perf)   # the counters struct
    return CoreStatus(idle=bool(ctx.get(core.idle)), error=int(ctx.get(core.error)),
                      counters={k: int(perf[k]) for k in core.config.perf_counters})


def run_rtl_cases(config: TernConfig, cases) -> list:
    """Run every case (a :class:`hw.backends.common.RunCase`, or a ``(program, timing)`` pair) on one
    :class:`TernCore` in ONE Amaranth simulation, each from a one-cycle reset (an ``interrupt``
    program first runs for its cycles and is cut short by that reset). Returns, per case, a
    :class:`RunResult` or the :class:`HarnessError` of a case that did not finish within its limit."""
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator

    from hw.rtl.top import TernCore

    if not isinstance(config, TernConfig):
        raise TypeError(f"run_rtl: config must be a hw.config.TernConfig, not {config!r}")
    plan = plan_runs("run_rtl", config, cases)
    core = TernCore(config)
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.core = core
    ports = {"instr": core.instr, "act": core.act, "wgt": core.wgt, "out": core.out}
    layouts = {name: port.payload.shape() for name, port in ports.items()}
    observed = []

    async def tb(ctx):
        bench = AmaranthBench(ctx, cd.rst)
        for run in plan:
            items = {"instr": payload_consts(layouts["instr"], run.streams.words),
                     "act": payload_consts(layouts["act"], run.streams.act_beats),
                     "wgt": payload_consts(layouts["wgt"], run.streams.wgt_beats)}
            r = await run_core(bench, ports, lambda: core_status(ctx, core), items, run.timing,
                               max_cycles=run.max_cycles, stop_at=run.stop_at)
            if run.keep:
                observed.append(r)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return [run_result("amaranth", config, r, "run_rtl") for r in observed]


def run_rtl(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
            act_beats=None, wgt_beats=None, max_cycles: int | None = None,
            interrupt: tuple | None = None) -> RunResult:
    """Run a program on :class:`TernCore` under Amaranth's simulator, replaying ``timing`` exactly.

    ``program``: a :class:`hw.program.Program` (or pass ``words``/``act_beats``/``wgt_beats``);
    ``timing``: a :class:`hw.timing.Timing` (default: ideal). The streams must hold exactly the
    beats the program's valid instructions consume (otherwise the run cannot finish and
    :class:`HarnessError` is raised at ``max_cycles``). ``interrupt``: ``(program, timing, cycles)``
    run first and cut short by a reset after ``cycles`` cycles (see :class:`RunCase`).
    """
    (r,) = run_rtl_cases(config, [RunCase(program, timing, words, act_beats, wgt_beats, max_cycles,
                                          interrupt)])
    if isinstance(r, Exception):
        raise r
    return r


#: The backend entry point (:mod:`hw.backends`).
run = run_rtl
