"""Random cases for differential verification: configurations, programs and stream timings.

Case ``index`` of ``seed`` depends only on ``(seed, index)`` (:func:`random_case`), so every failure
replays alone. The programs hold every instruction kind, bad instructions and invalid weight bytes;
the timings hold stalls, backpressure and bus limits (:class:`hw.timing.Timing`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hw.config import TernConfig
from hw.isa import FIELD_MAX, Instr, Op
from hw.program import Program, ProgramBuilder
from hw.timing import StreamTiming, Timing

__all__ = ["random_config", "random_program", "random_timing", "random_case", "Case"]


def random_config(rng: random.Random, *, max_rows: int = 16, max_lanes: int = 64, rows: int | None = None,
                  lanes: int | None = None, max_pes: int = 256) -> TernConfig:
    """A small random configuration: rows 1..16, lanes 4..64 (skewed small, so the Amaranth
    simulation stays quick), both weight formats, small depths so that the queue, bank and FIFO
    limits are reached, and an accumulator that sometimes wraps. ``rows``/``lanes`` fix the array
    size instead of drawing it; ``rows * lanes`` is kept to at most ``max_pes``."""
    if lanes is None:
        lanes = rng.choice([x for x in (4, 5, 7, 8, 12, 13, 16, 24, 32, 64) if x <= max_lanes])
    if rows is None:
        rows = rng.choice([x for x in (1, 2, 3, 4, 5, 8, 16) if x <= max_rows])
    if rows * lanes > max_pes:   # keep the RTL small: Amaranth sim time grows with rows * lanes
        rows = max(1, max_pes // lanes)
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
                    # K not a multiple of lanes: zero-padded tail (every K is one with a single lane;
                    # the draw is made anyway, so every other configuration draws what it always did)
                    if rng.random() < 0.3 and cfg.lanes > 1:
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
