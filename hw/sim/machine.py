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

Nothing of the timing depends on a value, so :func:`simulate` keeps the timing of every program it has
run (:data:`TIMINGS`, keyed by configuration, timing, instruction words and stream lengths): a run of
a known program (generation calls the same projections again with new activations; the layers of a
model share their projections' programs) takes its cycles, counters and transfer cycles from there
and computes only its values (:meth:`hw.sim.results.Datapath.replay`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from hw.config import TernConfig
from hw.isa import FIELDS, Op
from hw.program import Program
from hw.result import RunResult, Streams, as_streams
from hw.sim.counters import PerfCounters
from hw.sim.dispatch import LOAD_ACT, MATMUL, RETIRE, SYNC, Dispatch
from hw.sim.events import event_counts
from hw.sim.execute import ExecuteEngine
from hw.sim.loader import WeightLoader
from hw.sim.output import OutputFIFO
from hw.sim.recurrence import SimError
from hw.sim.results import ByteBudgetLRU, Datapath, plan
from hw.timing import Timing

__all__ = ["simulate", "SimError", "Timed", "TimingCache", "TIMINGS"]


@dataclass(frozen=True)
class Timed:
    """Everything of a run that the program, the configuration and the timing decide (not the
    activation and weight values): ``cycles``, the unwrapped counter events ``counts``, ``bad`` (error
    bit 0), the results and weight words the program moves, the cycle of every transfer (read-only
    arrays), the datapath's steps (:func:`hw.sim.results.plan` of its log) and the MATMUL tokens."""
    cycles: int
    counts: dict
    bad: bool
    n_results: int
    n_words: int
    instr: np.ndarray
    act: np.ndarray
    wgt: np.ndarray
    out: np.ndarray
    steps: list | None
    tokens: int

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.instr, self.act, self.wgt, self.out)) + 64 * len(self.steps or ())


class TimingCache(ByteBudgetLRU):
    """The :class:`Timed` part of earlier runs, keyed by ``(configuration, timing, instruction words,
    activation beats, weight beats)``: a run of the same program under the same timing (generation
    calls every projection's program again with new activations, and the layers of a model share
    their projections' programs) takes its cycles, counters and transfer cycles from here and only
    computes its values. At most ``max_bytes`` (``$TERN_SIM_TIMING_MB``, default 256 MiB; 0 turns it
    off), least recently used first out."""

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("TERN_SIM_TIMING_MB", "256")) * (1 << 20))
        super().__init__(max_bytes)

    @staticmethod
    def key(config: TernConfig, timing: Timing, st: Streams) -> tuple:
        words = st.words
        words = (np.asarray(words, dtype=np.uint64).tobytes() if isinstance(words, np.ndarray)
                 else tuple(words))
        return (config, _timing_json(timing), words, len(st.act_beats), len(st.wgt_beats))

    def get(self, key: tuple) -> Timed | None:
        item = self._lookup(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        return item[0]

    def put(self, key: tuple, known: Timed) -> None:
        for a in (known.instr, known.act, known.wgt, known.out):
            a.flags.writeable = False
        self._store(key, (known, known.nbytes), known.nbytes)


#: The run timings kept by :func:`simulate` (one per process).
TIMINGS = TimingCache()

#: ``Timing.to_json()`` of the timings seen lately, by ``id`` (each entry holds its timing, so the id
#: is not reused while it is there): a :class:`Timing` and its streams are immutable.
_TIMING_JSON: dict = {}


def _timing_json(timing: Timing) -> str:
    item = _TIMING_JSON.get(id(timing))
    if item is None or item[0] is not timing:
        if len(_TIMING_JSON) >= 64:
            _TIMING_JSON.clear()
        item = _TIMING_JSON[id(timing)] = (timing, timing.to_json())
    return item[1]


_FIELD_LSB = {name: lsb for name, lsb, _ in FIELDS}


def _program_words(instrs) -> list:
    """``Program.words`` (:func:`hw.isa.encode` of every instruction), the fields shifted here: Python
    integers in 0 .. 2**64-1 (an :class:`Instr` checks its fields' ranges)."""
    so, sa, sb, sc = (_FIELD_LSB[n] for n in ("op", "a", "b", "c"))
    return [((i.op._value_ if isinstance(i.op, Op) else i.op) << so) | (i.a << sa) | (i.b << sb) | (i.c << sc)
            for i in instrs]


_IDEAL = Timing()


def _streams(config: TernConfig, program, words, act_beats, wgt_beats) -> Streams:
    """:func:`hw.result.as_streams`, except that beats already held as int8 / uint8 arrays of the
    right width (the driver's) are used as they are, not checked value by value and copied (their
    type holds only valid values)."""
    if not isinstance(config, TernConfig):
        return as_streams(config, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
    if program is not None:
        act_beats = program.act_beats if act_beats is None else act_beats
        wgt_beats = program.wgt_beats if wgt_beats is None else wgt_beats
    typed = {}
    for name, a, dtype, width in (("act_beats", act_beats, np.int8, config.lanes),
                                  ("wgt_beats", wgt_beats, np.uint8, config.bus_bytes)):
        if isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == 2 and a.shape[1] == width:
            typed[name] = a
    if program is not None and words is None:
        if type(program) is Program:
            typed["words"] = words = _program_words(program.instrs)
        else:
            words = program.words
    if "words" in typed:
        pass
    elif isinstance(words, list) and words and set(map(type, words)) == {int}:
        # Python integers (not bools) in 0 .. 2**64-1: what as_streams checks word by word
        w = np.asarray(words)
        if w.dtype.kind == "u" or (w.dtype.kind == "i" and w.min() >= 0):
            typed["words"] = words
    st = as_streams(config, program, words=[] if "words" in typed else words,
                    act_beats=typed["act_beats"][:0] if "act_beats" in typed else act_beats,
                    wgt_beats=typed["wgt_beats"][:0] if "wgt_beats" in typed else wgt_beats)
    for name, a in typed.items():
        setattr(st, name, a)
    return st


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

    def finish(self) -> None:
        pass


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
    timing = _IDEAL if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"simulate: timing must be a hw.timing.Timing, not {timing!r}")
    st = _streams(config, program, words, act_beats, wgt_beats)
    key = TIMINGS.key(config, timing, st)
    known = TIMINGS.get(key)
    if known is not None:                        # the same program and timing ran before
        if values:
            datapath = Datapath(config, st.act_beats, st.wgt_beats, known.n_results)
            datapath.replay(known.steps)
        else:
            datapath = _NoValues(config, known.n_results)
            datapath.tokens = known.tokens
        return _result(config, st, known, datapath, wall0)

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
    datapath.finish()

    if len(st.words):
        cycles = max(dispatch.d_retire + 1, (x_finish[-1] + 1) if x_finish else 0, output.last + 1)
    else:
        cycles = 0
    counts = counters.counts(cycles=cycles, act_beats=dispatch.n_act, wgt_beats=len(st.wgt_beats))
    known = Timed(cycles=cycles, counts=counts, bad=bool(dispatch.bad.any()),
                  n_results=dispatch.n_results, n_words=dispatch.n_words,
                  instr=dispatch.instr.t, act=execute.act.t, wgt=loader.wgt.t, out=output.out.t,
                  steps=plan(datapath.log) if hasattr(datapath, "log") else None, tokens=datapath.tokens)
    if known.steps is not None:
        TIMINGS.put(key, known)
    return _result(config, st, known, datapath, wall0)


def _result(config: TernConfig, st: Streams, known: "Timed", datapath, wall0: float) -> RunResult:
    """The :class:`RunResult` of a run timed as ``known`` whose values ``datapath`` holds."""
    error = int(known.bad) | 2 * int(datapath.weight_error)
    counts = known.counts
    res = RunResult(backend="sim", config=config, outputs=datapath.outputs, cycles=known.cycles,
                    counters=PerfCounters(config).values(counts),
                    error=error, instr_cycles=known.instr, act_cycles=known.act,
                    wgt_cycles=known.wgt, out_cycles=known.out)
    res.events = event_counts(config, res, counts, n_instr=len(st.words), n_words=known.n_words,
                              extra={"tokens": datapath.tokens, "neg_terms": datapath.negated_terms,
                                     "nonzero_terms": datapath.nonzero_terms})
    res.wall_s = time.perf_counter() - wall0
    return res
