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
``first_failure``. Backends are looked up in :data:`BACKENDS` (``"amaranth"``: :func:`hw.rtl.harness.run_rtl`;
``"verilator"``: :func:`hw.rtl.verilator.run_verilator`, which also registers a batch runner in
:data:`BATCH_BACKENDS` that runs the cases of each configuration in one Verilator invocation).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hw.config import TernConfig
from hw.isa import FIELD_MAX, Instr, Op
from hw.program import Program, ProgramBuilder
from hw.timing import StreamTiming, Timing

__all__ = ["run_verify", "random_config", "random_program", "random_timing", "random_case",
           "check_case", "BACKENDS", "Case", "VerifyError"]


class VerifyError(ValueError):
    """Bad arguments to :func:`run_verify` (unknown backend, bad count or seed)."""


def _amaranth_backend(config, program, timing):
    from hw.rtl.harness import run_rtl
    return run_rtl(config, program, timing)


def _verilator_backend(config, program, timing):
    from hw.rtl.verilator import run_verilator
    return run_verilator(config, program, timing)


def _verilator_batch(cases):
    from hw.rtl.verilator import run_verify_batch
    return run_verify_batch(cases)


#: RTL backends by name: ``fn(config, program, timing) -> hw.sim.result.RunResult``.
BACKENDS = {"amaranth": _amaranth_backend, "verilator": _verilator_backend}

#: Backends that run many cases per call (one simulator invocation per configuration):
#: ``fn(list[Case]) -> list[RunResult]`` in the same order; :func:`run_verify` uses them in chunks.
BATCH_BACKENDS = {"verilator": _verilator_batch}
_BATCH_CHUNK = 500


def random_config(rng: random.Random, *, max_rows: int = 16, max_lanes: int = 64) -> TernConfig:
    """A small random configuration: rows 1..16, lanes 4..64 (skewed small, so the Amaranth
    simulation stays quick), both weight formats, small depths so that the queue, bank and FIFO
    limits are reached, and an accumulator that sometimes wraps."""
    lanes = rng.choice([x for x in (4, 5, 7, 8, 12, 13, 16, 24, 32, 64) if x <= max_lanes])
    rows = rng.choice([x for x in (1, 2, 3, 4, 5, 8, 16) if x <= max_rows])
    if rows * lanes > 256:   # keep the RTL small: Amaranth sim time grows with rows * lanes
        rows = max(1, 256 // lanes)
    cfg = TernConfig(rows=rows, lanes=lanes, weight_format=rng.choice(["2bit", "base3"]),
                     bus_bytes=rng.choice([1, 2, 3, 4, 8, 16]), act_depth=rng.choice([16, 32]),
                     wgt_depth=rng.choice([4, 8]), out_depth=rng.randint(2, 6),
                     tree_reg_every=rng.randint(0, 3), acc_width=32)
    return cfg.replace(acc_width=rng.choice([cfg.dot_width, cfg.dot_width + 2, 32]))


def _bad_instr(rng: random.Random, cfg: TernConfig) -> Instr:
    kind = rng.randrange(5)
    if kind == 0:
        return Instr(rng.randint(4, 15), rng.randint(0, FIELD_MAX), rng.randint(0, 7), rng.randint(0, 3))
    if kind == 1:
        return Instr(Op.LOAD_ACT, rng.randrange(cfg.act_depth), 0)
    if kind == 2:
        return Instr(Op.LOAD_ACT, rng.randrange(cfg.act_depth), cfg.act_depth + 1 - rng.randint(0, 0))
    if kind == 3:
        return Instr(Op.MATMUL, 0, cfg.wgt_depth + rng.randint(1, 3), 1)
    return Instr(Op.MATMUL, rng.randrange(cfg.act_depth), rng.randint(1, cfg.wgt_depth),
                 rng.choice([0, cfg.act_depth + 1]))


def random_program(rng: random.Random, cfg: TernConfig, n_instr: int, *, p_bad_byte: float = 0.15) -> Program:
    """A random program of about ``n_instr`` instructions: LOAD_ACT, MATMUL (1..4 tokens, 1..wgt_depth
    words, sometimes a K that is not a multiple of lanes, i.e. zero-padded), NOP, SYNC and bad
    instructions. With probability ``p_bad_byte`` one weight stream byte (payload or padding) is
    made invalid; the weights it carries are zero in the reference (what the decoder must do)."""
    nprng = np.random.default_rng(rng.getrandbits(32))
    loaded = np.zeros(cfg.act_depth, dtype=bool)
    ops = []
    for _ in range(n_instr):
        r = rng.random()
        if r < 0.22 or not loaded.any():
            cnt = rng.randint(1, min(12, cfg.act_depth))
            addr = rng.randrange(cfg.act_depth - cnt + 1)
            ops.append(("load", addr, nprng.integers(-128, 128, (cnt, cfg.lanes))))
            loaded[addr:addr + cnt] = True
        elif r < 0.78:
            for _ in range(20):
                kw = rng.randint(1, cfg.wgt_depth)
                tokens = rng.randint(1, max(1, min(4, cfg.act_depth // kw)))
                addr = rng.randrange(cfg.act_depth - kw * tokens + 1)
                if loaded[addr:addr + kw * tokens].all():
                    tile = nprng.integers(-1, 2, (cfg.rows, kw * cfg.lanes))
                    if rng.random() < 0.3:   # K not a multiple of lanes: zero-padded tail
                        tile[:, kw * cfg.lanes - rng.randint(1, cfg.lanes - 1):] = 0
                    if rng.random() < 0.2:   # sparse weights
                        tile = np.where(nprng.random(tile.shape) < 0.5, 0, tile)
                    ops.append(("mm", addr, tile, tokens))
                    break
        elif r < 0.85:
            ops.append(("nop",))
        elif r < 0.92:
            ops.append(("sync",))
        else:
            ops.append(("bad", _bad_instr(rng, cfg)))
    if rng.random() < 0.7:
        ops.append(("sync",))

    corrupt = None
    mms = [i for i, op in enumerate(ops) if op[0] == "mm"]
    if mms and rng.random() < p_bad_byte:
        R, L, B, bpw, tpb = cfg.rows, cfg.lanes, cfg.bus_bytes, cfg.beats_per_word, cfg.trits_per_byte
        oi = rng.choice(mms)
        kw = ops[oi][2].shape[1] // L
        k = rng.randrange(kw)
        byte = rng.randrange(bpw * B)
        word = sum(ops[i][2].shape[1] // L for i in mms if i < oi) + k
        q = rng.randrange(4)
        codes = range(byte * tpb, byte * tpb + tpb) if tpb == 5 else (byte * 4 + q,)
        tile = ops[oi][2]
        for c in codes:
            if c < R * L:   # payload (the rest of the word's last beat is padding)
                tile[c // L, k * L + c % L] = 0
        corrupt = (word * bpw + byte // B, byte % B, q)

    b = ProgramBuilder(cfg)
    for op in ops:
        if op[0] == "load":
            b.load_act(op[1], op[2])
        elif op[0] == "mm":
            b.matmul(op[1], op[2], op[3])
        elif op[0] == "nop":
            b.nop()
        elif op[0] == "sync":
            b.sync()
        else:
            b.bad(op[1])
    prog = b.build()
    if corrupt is not None:
        beat, lane, q = corrupt
        beats = prog.wgt_beats.copy()
        if cfg.weight_format == "base3":
            beats[beat, lane] = rng.randint(243, 255)
        else:
            beats[beat, lane] |= 3 << (2 * q)
        prog.wgt_beats = beats
        prog.expected_error |= 2
    return prog


def _stream(rng: random.Random) -> StreamTiming:
    kind = rng.random()
    if kind < 0.4:
        return StreamTiming()
    if kind < 0.8:
        return StreamTiming(p_stall=rng.choice([0.1, 0.3, 0.6]))
    return StreamTiming(p_stall=rng.choice([0.0, 0.2]), latency=rng.randint(0, 12),
                        rate=Fraction(rng.randint(1, 4), rng.randint(4, 9)))


def random_timing(rng: random.Random) -> Timing:
    """Ideal (1 in 4), or every stream independently ideal / seeded stalls / a bus limit."""
    if rng.random() < 0.25:
        return Timing(seed=rng.getrandbits(16))
    return Timing(_stream(rng), _stream(rng), _stream(rng), _stream(rng), seed=rng.getrandbits(16))


@dataclass
class Case:
    seed: int
    index: int
    config: TernConfig
    program: Program
    timing: Timing

    def describe(self) -> str:
        return (f"seed={self.seed} index={self.index} config={self.config.to_dict()} "
                f"timing={self.timing.to_json()} program={[str(i) for i in self.program.instrs]}")


def random_case(seed: int, index: int, config: TernConfig | None = None, *,
                max_instr: int = 10) -> Case:
    """Case ``index`` of the stream drawn from ``seed`` (independent of every other case)."""
    rng = random.Random(f"tern-verify-{seed}-{index}")
    cfg = random_config(rng) if config is None else config
    prog = random_program(rng, cfg, rng.randint(1, max_instr))
    return Case(seed, index, cfg, prog, random_timing(rng))


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
    :class:`hw.rtl.harness.HarnessError` it ended with. An RTL run that never finishes is an output
    difference of the case (``"rtl"`` is then None)."""
    from hw.rtl.harness import HarnessError
    from hw.sim.machine import simulate
    if rtl is None:
        try:
            rtl = BACKENDS[backend](case.config, case.program, case.timing)
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
    return {"output": out, "cycle": cyc, "rtl": rtl, "sim": sim}


def run_verify(backend: str, programs: int, seed: int, config: TernConfig | None = None, *,
               start: int = 0, max_instr: int = 10, progress=None) -> dict:
    """Run ``programs`` random differential cases from ``seed`` on ``backend`` vs the simulator vs the
    reference. Returns ``programs``, ``mismatches`` (cases whose outputs or error flags differ
    anywhere), ``cycle_mismatches`` (cases whose cycle count, counters or transfer cycles differ),
    ``first_failure`` (None, or seed/index/config/timing/program and the differences), ``cycles``
    (total simulated cycles), ``wall_s``, ``backend``, ``seed``. Cases ``start .. start+programs-1`` run
    (so ``start=i, programs=1`` replays case ``i`` alone); ``max_instr`` bounds the program length.
    ``progress``, if given, is called as ``progress(done, total)`` after every case."""
    if backend not in BACKENDS:
        raise VerifyError(f"unknown verification backend {backend!r} (available: {', '.join(BACKENDS)})")
    if isinstance(programs, bool) or not isinstance(programs, int) or programs < 0:
        raise VerifyError(f"programs must be a non-negative integer, not {programs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VerifyError(f"seed must be an integer, not {seed!r}")
    if config is not None and not isinstance(config, TernConfig):
        raise VerifyError(f"config must be a hw.config.TernConfig, not {config!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise VerifyError(f"start must be a non-negative integer, not {start!r}")
    if isinstance(max_instr, bool) or not isinstance(max_instr, int) or max_instr < 1:
        raise VerifyError(f"max_instr must be a positive integer, not {max_instr!r}")
    t0 = time.perf_counter()
    mism = cyc_mism = total_cycles = 0
    first = None
    batch = BATCH_BACKENDS.get(backend)
    chunk = 1 if batch is None else (_BATCH_CHUNK if config is not None else 8)
    end = start + programs
    for c0 in range(start, end, chunk):
        cases = [random_case(seed, i, config, max_instr=max_instr) for i in range(c0, min(c0 + chunk, end))]
        rtls = batch(cases) if batch is not None else [None] * len(cases)
        for case, rtl in zip(cases, rtls):
            r = check_case(case, backend, rtl)
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
    return {"backend": backend, "seed": seed, "programs": programs, "mismatches": mism,
            "cycle_mismatches": cyc_mism, "first_failure": first, "cycles": total_cycles,
            "wall_s": round(time.perf_counter() - t0, 3)}
