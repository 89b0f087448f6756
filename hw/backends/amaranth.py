"""Amaranth-simulation runner for :class:`hw.rtl.top.TernCore` that replays a :class:`hw.timing.Timing`.

:func:`run_rtl` drives the four streams of the core cycle by cycle exactly as the timing model of
:mod:`hw.timing` says (the environment's side of transfer ``i`` rises in cycle
``max(x_{i-1} + 1 + gap_i, latency + floor(i / rate))`` and stays high until the transfer), and
returns a :class:`hw.result.RunResult`: the result vectors, the cycle count, the performance
counters, the error flags and the cycle of every transfer. The cycle-accurate simulator
(:func:`hw.sim.simulate`) returns the same structure for the same inputs; the differential tests
compare the two field by field.

Cycle count (the definition shared with the simulator): cycles are numbered from 0, the first cycle
after reset (the simulation starts in the reset state). ``cycles`` is the first cycle ``c`` in which
every instruction word, activation beat and weight beat has been accepted and the core's ``idle``
output is high (nothing dispatched, queued or executing, and every result has left ``out``). The
performance counters are read in that cycle, so ``counters["cycles"] == cycles``.
"""

from __future__ import annotations

import time

import numpy as np

from hw.backends.common import HarnessError, pack_rows, prepare_run, unpack_rows
from hw.config import TernConfig
from hw.result import PERF_COUNTERS, RunResult
from hw.timing import Timing

__all__ = ["run", "run_rtl", "HarnessError"]


def run_rtl(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
            act_beats=None, wgt_beats=None, max_cycles: int | None = None) -> RunResult:
    """Run a program on :class:`TernCore` under Amaranth's simulator, replaying ``timing`` exactly.

    ``program``: a :class:`hw.program.Program` (or pass ``words``/``act_beats``/``wgt_beats``);
    ``timing``: a :class:`hw.timing.Timing` (default: ideal). The streams must hold exactly the
    beats the program's valid instructions consume (otherwise the run cannot finish and
    :class:`HarnessError` is raised at ``max_cycles``).
    """
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator

    from hw.rtl.top import TernCore

    timing, st, max_cycles = prepare_run("run_rtl", config, program, timing, words=words,
                                         act_beats=act_beats, wgt_beats=wgt_beats, max_cycles=max_cycles)
    R, A = config.rows, config.acc_width

    core = TernCore(config)
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.core = core

    names = ("instr", "act", "wgt")
    ports = (core.instr, core.act, core.wgt)
    items = (list(st.words), pack_rows(st.act_beats, 8), pack_rows(st.wgt_beats, 8))
    n = tuple(len(x) for x in items)
    stamps = ([], [], [])
    outputs, out_cycles = [], []
    state = {}

    async def tb(ctx):
        ptr = [0, 0, 0]
        avail = [timing.avail(nm, 0, -1) for nm in names]
        valid = [False, False, False]
        for s in range(3):
            if n[s]:
                ctx.set(ports[s].payload.as_value(), items[s][0])
        n_out = 0
        out_avail = timing.avail("out", 0, -1)
        out_ready = False
        c = 0
        while True:
            if c >= max_cycles:
                raise HarnessError(
                    f"run_rtl: program did not finish within {max_cycles} cycles (accepted "
                    f"{ptr[0]}/{n[0]} instructions, {ptr[1]}/{n[1]} act beats, {ptr[2]}/{n[2]} weight "
                    f"beats; {n_out} outputs; timing={timing!r})")
            for s in range(3):
                v = ptr[s] < n[s] and c >= avail[s]
                if v != valid[s]:
                    ctx.set(ports[s].valid, v)
                    valid[s] = v
            r = c >= out_avail
            if r != out_ready:
                ctx.set(core.out.ready, r)
                out_ready = r
            xfer = [valid[s] and bool(ctx.get(ports[s].ready)) for s in range(3)]
            o_x = out_ready and bool(ctx.get(core.out.valid))
            if o_x:
                outputs.append(ctx.get(core.out.payload.as_value()))
                out_cycles.append(c)
            if ptr[0] == n[0] and ptr[1] == n[1] and ptr[2] == n[2] and ctx.get(core.idle):
                state["cycles"] = c
                state["counters"] = {k: int(ctx.get(getattr(core, f"perf_{k}"))) for k in PERF_COUNTERS}
                state["error"] = int(ctx.get(core.error))
                return
            await ctx.tick()
            for s in range(3):
                if xfer[s]:
                    stamps[s].append(c)
                    ptr[s] += 1
                    avail[s] = timing.avail(names[s], ptr[s], c)
                    if ptr[s] < n[s]:
                        ctx.set(ports[s].payload.as_value(), items[s][ptr[s]])
            if o_x:
                n_out += 1
                out_avail = timing.avail("out", n_out, c)
            c += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    return RunResult(
        backend="amaranth", config=config,
        outputs=unpack_rows(outputs, A, R),
        cycles=state["cycles"], counters=state["counters"], error=state["error"],
        instr_cycles=np.array(stamps[0], dtype=np.int64), act_cycles=np.array(stamps[1], dtype=np.int64),
        wgt_cycles=np.array(stamps[2], dtype=np.int64), out_cycles=np.array(out_cycles, dtype=np.int64),
        wall_s=wall)


#: The backend entry point (:mod:`hw.backends`).
run = run_rtl
