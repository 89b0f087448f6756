"""Random differential verification: RTL vs the cycle-accurate simulator vs the integer reference.

:func:`run_verify` draws ``programs`` random cases from ``seed`` (a small random configuration unless
one is given, a random program with every instruction kind, bad instructions and invalid weight bytes,
and a random :class:`hw.timing.Timing` with stalls, backpressure and bus limits), runs each on the RTL
backend and on :func:`hw.sim.simulate`, and compares

* every result vector with the numpy int64 reference of :class:`hw.program.ProgramBuilder` (and the
  error flags it predicts) — ``mismatches``;
* the RTL's and the simulator's result vectors and error flags — ``mismatches``;
* their cycle counts, performance counters and the cycle of every stream transfer —
  ``cycle_mismatches``.

Case ``i`` depends only on ``(seed, i)``, so any failure replays from the seed and index printed in
``first_failure``. The backends come from the one registry, :data:`hw.backends.BACKENDS`
(:func:`hw.backends.verify_backends`: ``amaranth``, ``verilator``, and the board, ``serial``); a
backend with a batch mode (Verilator, the board) runs the cases of each configuration in one
simulator start or session. The cases come from :mod:`hw.verify.generate`.

A board (``serial``: a bitstream or ``tern board-sim``) runs one configuration, which must be given,
and its link sets the pace: the case's stream timing is not replayed and the cycle of each transfer
is not observable, so its ``cycle_mismatches`` are the counters that do not depend on stream timing
(:data:`TIMING_FREE_COUNTERS`), and a case's reset in the middle of an earlier program becomes a
reset after that whole program (the board's reset request is taken between frames).
"""

from __future__ import annotations

import time

import numpy as np

from hw.backends import get_backend, verify_backends
from hw.backends.common import HarnessError
from hw.config import TernConfig
from hw.formats import BYTE_VALID
from hw.isa import is_valid
from hw.sim import simulate
from hw.timing import STREAMS
from hw.verify.generate import Case, random_case

__all__ = ["run_verify", "check_case", "VerifyError", "Coverage", "TIMING_FREE_COUNTERS"]

#: The counters a board's run must share with hw.sim's: the program's work, whatever the streams' pace.
TIMING_FREE_COUNTERS = ("busy", "act_beats", "wgt_beats")


class VerifyError(ValueError):
    """Bad arguments to :func:`run_verify` (unknown backend, bad count or seed)."""


#: Cases per batch when every case has the same configuration (one simulator start per batch).
_BATCH_CHUNK = 500
#: The same for the Amaranth backend (one elaboration and one simulation per batch).
_AMARANTH_CHUNK = 25


def _amaranth_batch(cases) -> list:
    """Cases of one configuration in one Amaranth simulation (``hw.backends.amaranth.run_rtl_cases``):
    per case its :class:`RunResult` or the :class:`HarnessError` of a case that did not finish."""
    from hw.backends.amaranth import run_rtl_cases
    from hw.backends.common import RunCase
    return run_rtl_cases(cases[0].config, [RunCase(c.program, c.timing, interrupt=c.interrupt) for c in cases])


def _reference_diffs(case: Case, res) -> list[str]:
    prog = case.program
    diffs = []
    exp = np.asarray(prog.expected, dtype=np.int64)
    if exp.shape != res.outputs.shape or not np.array_equal(exp, res.outputs):
        diffs.append(f"{res.backend} outputs differ from the integer reference")
    if res.error != prog.expected_error:
        diffs.append(f"{res.backend} error flags {res.error} != reference {prog.expected_error}")
    return diffs


def check_case(case: Case, backend: str = "amaranth", rtl=None) -> dict:
    """Run one case on ``backend`` and the simulator; returns ``{"output": [...], "cycle": [...]}``
    (lists of difference descriptions, empty when everything matches). ``rtl``: the backend's
    :class:`RunResult` of this case if it already ran (batch backends), or the
    :class:`hw.backends.common.HarnessError` it ended with. An RTL run that never finishes is an output
    difference of the case (``"rtl"`` is then None)."""
    if rtl is None:
        try:
            kw = {} if case.interrupt is None else {"interrupt": case.interrupt}
            rtl = get_backend(backend).run(case.config, case.program, case.timing, **kw)
        except HarnessError as e:   # the RTL never finished: a failure of this case, not of the run
            rtl = e
    sim = simulate(case.config, case.program, case.timing)
    if isinstance(rtl, HarnessError):
        return {"output": [f"{backend} did not finish (the simulator did, in {sim.cycles} cycles): "
                           f"{str(rtl).splitlines()[0]}"], "cycle": [], "rtl": None, "sim": sim}
    out = _reference_diffs(case, rtl) + _reference_diffs(case, sim)
    cyc = []
    for d in sim.compare(rtl):
        (out if d.startswith(("outputs", "error")) else cyc).append(d)
    if get_backend(backend).board:   # the link's pace: only the timing-free counters are the program's
        cyc = [d for d in cyc if d.startswith(tuple(f"counter {k}:" for k in TIMING_FREE_COUNTERS))]
    return {"output": out, "cycle": cyc, "rtl": rtl, "sim": sim}


def run_verify(backend: str, programs: int, seed: int, config: TernConfig | None = None, *,
               start: int = 0, max_instr: int = 10, fill: bool = False, stop_at_first: bool = False,
               progress=None) -> dict:
    """Run ``programs`` random differential cases from ``seed`` on ``backend`` vs the simulator vs the
    reference. Returns ``programs``, ``mismatches`` (cases whose outputs or error flags differ
    anywhere), ``cycle_mismatches`` (cases whose cycle count, counters or transfer cycles differ),
    ``first_failure`` (None, or seed/index/config/timing/program and the differences), ``cycles``
    (total simulated cycles), ``wall_s``, ``backend``, ``seed`` and the coverage counters of
    :class:`Coverage` (``wraps``, ``resets``, ``bad_instructions``, ``invalid_bytes``, ``configs``, ...). Cases ``start .. start+programs-1`` run
    (so ``start=i, programs=1`` replays case ``i`` alone); ``max_instr`` bounds the program length;
    ``fill``: every program is a :func:`hw.verify.generate.fill_program` (every buffer full, both
    weight banks cycled); ``stop_at_first``: stop after the first case that differs (``programs`` then
    counts the cases that ran).
    ``progress``, if given, is called as ``progress(done, total)`` after every case."""
    if backend not in verify_backends():
        raise VerifyError(f"unknown verification backend {backend!r} (available: {', '.join(verify_backends())})")
    if isinstance(programs, bool) or not isinstance(programs, int) or programs < 0:
        raise VerifyError(f"programs must be a non-negative integer, not {programs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VerifyError(f"seed must be an integer, not {seed!r}")
    if config is not None and not isinstance(config, TernConfig):
        raise VerifyError(f"config must be a hw.config.TernConfig, not {config!r}")
    if config is None and get_backend(backend).board:
        raise VerifyError(f"backend {backend!r} runs the configuration its board was built for: give it")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise VerifyError(f"start must be a non-negative integer, not {start!r}")
    if isinstance(max_instr, bool) or not isinstance(max_instr, int) or max_instr < 1:
        raise VerifyError(f"max_instr must be a positive integer, not {max_instr!r}")
    t0 = time.perf_counter()
    mism = cyc_mism = total_cycles = 0
    cov = Coverage()
    first = None
    b = get_backend(backend)
    # one simulation for many cases: the backend's batches, or Amaranth's on a fixed configuration
    amaranth_batch = backend == "amaranth" and b._run is None and config is not None
    chunk = (_BATCH_CHUNK if config is not None else 8) if b.batched else \
        (_AMARANTH_CHUNK if amaranth_batch else 1)
    end = start + programs
    for c0 in range(start, end, chunk):
        cases = [random_case(seed, i, config, max_instr=max_instr, fill=fill)
                 for i in range(c0, min(c0 + chunk, end))]
        rtls = b.run_batch(cases) if b.batched else \
            (_amaranth_batch(cases) if amaranth_batch else [None] * len(cases))
        for case, rtl in zip(cases, rtls):
            r = check_case(case, backend, rtl)
            cov.add(case)
            total_cycles += r["rtl"].cycles if r["rtl"] is not None else 0
            mism += bool(r["output"])
            cyc_mism += bool(r["cycle"])
            if (r["output"] or r["cycle"]) and first is None:
                first = {"seed": seed, "index": case.index, "config": case.config.to_dict(),
                         "timing": case.timing.to_dict(),
                         "program": [str(x) for x in case.program.instrs],
                         "differences": r["output"] + r["cycle"]}
            if progress is not None:
                progress(case.index - start + 1, programs)
            if stop_at_first and first is not None:
                programs = case.index - start + 1
                break
        if stop_at_first and first is not None:
            break
    return {"backend": backend, "seed": seed, "programs": programs, "mismatches": mism,
            "cycle_mismatches": cyc_mism, "first_failure": first, "cycles": total_cycles,
            "wall_s": round(time.perf_counter() - t0, 3), **cov.as_dict()}


class Coverage:
    """What a run of cases reached (:meth:`as_dict`): ``wraps`` (cases in which an accumulator
    wraps, :func:`hw.verify.generate.accumulator_wraps`), ``wraps_min_width`` (of those, at the
    minimum accumulator width ``dot_width``), ``resets`` (cases started by a reset in the middle of
    another program), ``bad_instructions`` (instructions the machine must skip), ``invalid_bytes``
    (weight stream bytes that are no valid code), ``withdrawals`` (cases whose timing withdraws
    valid or ready), ``configs`` (distinct configurations)."""

    def __init__(self):
        self.n = dict.fromkeys(("wraps", "wraps_min_width", "resets", "bad_instructions", "invalid_bytes",
                                "withdrawals"), 0)
        self.configs = set()

    def add(self, case: Case) -> None:
        cfg, prog, n = case.config, case.program, self.n
        n["wraps"] += case.wraps > 0
        n["wraps_min_width"] += case.wraps > 0 and cfg.acc_width == cfg.dot_width
        n["resets"] += case.interrupt is not None
        n["bad_instructions"] += sum(not is_valid(cfg, i) for i in prog.instrs)
        n["invalid_bytes"] += int((~BYTE_VALID[cfg.weight_format][prog.wgt_beats]).sum())
        n["withdrawals"] += any(case.timing.withdraws(s) for s in STREAMS)
        self.configs.add(cfg.to_json())

    def as_dict(self) -> dict:
        return {**self.n, "configs": len(self.configs)}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended (builds, simulator harnesses)."""
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


#: The fields of a :func:`run_verify` report a :func:`scale_line` keeps.
_SCALE_KEYS = ("programs", "mismatches", "cycle_mismatches", "cycles", "wraps", "wraps_min_width", "resets",
               "bad_instructions", "invalid_bytes", "withdrawals")


def scale_line(suite: str, k: int, config: TernConfig, runs: dict, cpu0: float, wall0: float) -> str:
    """One JSON line (prefixed ``SCALE``) for a configuration of a scale suite: the counts of each
    :func:`run_verify` report of ``runs`` (name -> report), and the CPU and wall seconds since
    ``cpu0`` (:func:`cpu_seconds`) and ``wall0`` (``time.perf_counter()``)."""
    import json
    line = {"suite": suite, "k": k, "config": config.to_dict(), "cpu_s": round(cpu_seconds() - cpu0, 1),
            "wall_s": round(time.perf_counter() - wall0, 1)}
    line.update({name: {key: r[key] for key in _SCALE_KEYS} for name, r in runs.items()})
    return "SCALE " + json.dumps(line)
