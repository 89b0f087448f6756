"""Cycle-accurate simulator of :class:`hw.rtl.top.TernCore`: same results, same cycle of every transfer,
same performance counters as the RTL, for any program and any :class:`hw.timing.Timing`.

It does not step cycles. The core is a chain of in-order stages joined by queues, and every stage's
event times obey recurrences ``t_i = max(t_{i-1} + d_i, E_i)`` with a closed form
(:mod:`hw.sim.recurrence`). :func:`simulate` walks the program instruction by instruction and hands
each one through the same stages as the RTL, each evaluating its recurrences for all of the
instruction's beats, steps and tokens at once:

========================  ====================================  ====================================
simulator                 RTL                                   times
========================  ====================================  ====================================
:class:`Dispatch`         ``hw/rtl/dispatch.py`` Dispatch       ``instr`` transfers, D retire, pushes
:class:`WeightLoader`     ``hw/rtl/loader.py`` WeightLoader     ``wgt`` beats, weight word writes
:class:`ExecuteEngine`    ``hw/rtl/execute.py`` ExecuteEngine   ``act`` beats, issue steps, credits
:class:`OutputFIFO`       ``hw/rtl/buffers.py`` OutputFIFO      ``out`` transfers
:class:`PerfCounters`     ``hw/rtl/counters.py`` PerfCounters   the eight counters
:class:`Datapath`         buffers, decoder, ``pe_array.py``     result values (``hw.sim.results``)
========================  ====================================  ====================================

Every latency and depth comes from the :class:`~hw.config.TernConfig` (``queue_depth``,
``decoder_latency``, ``result_latency``, ``out_depth``); the RTL blocks check at elaboration that
their structure has the same. The equations are in ``docs/SIMULATOR.md``.
"""

from __future__ import annotations

import time

import numpy as np

from hw.config import TernConfig
from hw.result import RunResult, as_streams
from hw.sim.counters import PerfCounters
from hw.sim.dispatch import LOAD_ACT, MATMUL, RETIRE, SYNC, Dispatch
from hw.sim.events import event_counts
from hw.sim.execute import ExecuteEngine
from hw.sim.loader import WeightLoader
from hw.sim.output import OutputFIFO
from hw.sim.recurrence import SimError
from hw.sim.results import Datapath
from hw.timing import Timing

__all__ = ["simulate", "SimError"]


class _NoValues:
    """The datapath of ``simulate(..., values=False)``: counts the tokens of the MATMULs, computes no
    value (no timing depends on one)."""
    pending = ()
    weight_error = False
    nonzero_terms = negated_terms = None

    def __init__(self, config, n_results: int):
        self.outputs = np.zeros((n_results, config.rows), dtype=np.int64)
        self.tokens = 0

    def load_act(self, addr, first_beat, count) -> None:
        pass

    def matmul(self, addr, k_words, tokens, first_word, first_result) -> None:
        self.tokens += tokens


def simulate(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
             act_beats=None, wgt_beats=None, values: bool = True) -> RunResult:
    """Simulate a program on the tern core. Arguments as :func:`hw.backends.amaranth.run_rtl`; returns
    the same :class:`RunResult` (``backend = "sim"``) plus ``events`` (energy event counts).

    The streams must hold exactly the beats that the program's valid instructions consume
    (:class:`SimError` otherwise: the RTL would never finish).

    ``values=False`` times the run without computing what the datapath holds (no timing depends on
    it): the same cycles, transfer cycles, counters and program-determined events, but ``outputs``
    all zero, the data-dependent events ``nonzero_terms`` / ``negated_terms`` None and error bit 1
    (an invalid weight byte) not checked."""
    wall0 = time.perf_counter()
    timing = Timing() if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"simulate: timing must be a hw.timing.Timing, not {timing!r}")
    st = as_streams(config, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
    dispatch = Dispatch(config, timing, st.words, n_act_beats=len(st.act_beats),
                        n_wgt_beats=len(st.wgt_beats))
    counters = PerfCounters(config)
    datapath = (Datapath(config, st.act_beats, st.wgt_beats, dispatch.n_results) if values
                else _NoValues(config, dispatch.n_results))
    output = OutputFIFO(config, timing, dispatch.n_results)
    loader = WeightLoader(config, timing, dispatch.n_words)
    execute = ExecuteEngine(config, timing, dispatch.n_act, dispatch.n_results, output, counters,
                            datapath)
    x_pop, x_finish, ld_pop = execute.x_pop, execute.x_finish, loader.ld_pop

    for i, (kind, a, b, c) in enumerate(zip(dispatch.kind, dispatch.a, dispatch.b, dispatch.c)):
        in_d = dispatch.take(i)                  # the instr transfer, the check pipeline: in D
        if kind == RETIRE:                       # NOP, or a bad instruction (error bit 0)
            dispatch.d_retire = in_d
        elif kind == SYNC:                       # retires once the machine is quiescent
            dispatch.d_retire = dispatch.sync_retire(in_d, x_finish, output.last + 1)
        else:                                    # pushed into the queue(s), retired with the push
            push = dispatch.d_retire = dispatch.push(in_d, kind == MATMUL, x_pop, ld_pop)
            popped = execute.pop(push)
            if kind == LOAD_ACT:
                execute.load_act(popped, a, b)
            else:
                first_word = loader.n_words
                writes = loader.load(push, b, execute.bank_release)
                execute.matmul(popped, a, b, c, writes, first_word)
    if datapath.pending:
        datapath.flush()

    if len(st.words):
        cycles = max(dispatch.d_retire + 1, (x_finish[-1] + 1) if x_finish else 0, output.last + 1)
    else:
        cycles = 0
    n_wgt = len(st.wgt_beats)
    error = int(dispatch.bad.any()) | 2 * int(datapath.weight_error)
    counts = counters.counts(cycles=cycles, act_beats=dispatch.n_act, wgt_beats=n_wgt)
    res = RunResult(backend="sim", config=config, outputs=datapath.outputs, cycles=cycles,
                    counters=counters.values(counts),
                    error=error, instr_cycles=dispatch.instr.t, act_cycles=execute.act.t,
                    wgt_cycles=loader.wgt.t, out_cycles=output.out.t)
    res.events = event_counts(config, res, counts, n_instr=len(st.words), n_words=dispatch.n_words,
                              extra={"tokens": datapath.tokens, "neg_terms": datapath.negated_terms,
                                     "nonzero_terms": datapath.nonzero_terms})
    res.wall_s = time.perf_counter() - wall0
    return res
