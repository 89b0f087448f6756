"""Random cases for differential verification: configurations, programs and stream timings.

Case ``index`` of ``seed`` depends only on ``(seed, index)`` (:func:`random_case`), so every failure
replays alone. The draws are biased towards the corners:

* configurations: rows and lanes from 1, both weight formats, small depths (so that the queue, bank
  and FIFO limits are reached) and, in 60% of the cases, the minimum accumulator width
  (``acc_width = dot_width``); :func:`production_configs` are the real sizes;
* programs: every instruction kind, bad instructions (illegal opcodes, operands out of range, and
  MATMULs whose span ``a + b * c`` alone is out of range), invalid weight bytes, and in
  :data:`P_EXTREME` of them extreme data: activation words all -128 or all 127, same-sign weights
  and K at the accumulator proof's bound (``TernConfig.max_k_exact``) or beyond, so accumulators
  wrap; :func:`fill_program` fills every buffer and cycles both weight banks;
* timings: stalls, backpressure, bus limits, sources that withdraw ``valid`` and sinks that withdraw
  ``ready`` at random, garbage payloads while ``valid`` is low (:class:`hw.timing.Timing`);
* a reset in the middle of an earlier program (:attr:`Case.interrupt`).

:func:`accumulator_wraps` counts the wrapping accumulations of a program by an integer computation of
its own (every partial sum of every token and row against the accumulator's range).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hw.config import TernConfig
from hw.isa import FIELD_MAX, Instr, Op, is_valid
from hw.program import Program, ProgramBuilder
from hw.timing import StreamTiming, Timing

__all__ = ["random_config", "random_program", "random_timing", "random_case", "fill_program",
           "production_configs", "accumulator_wraps", "Case", "P_EXTREME", "P_RESET"]

#: Probability that a random program draws extreme data (see the module docstring).
P_EXTREME = 0.6
#: Probability that a random case starts with a reset in the middle of another program.
P_RESET = 0.15

_LANES = (1, 2, 3, 4, 5, 7, 8, 12, 13, 16, 24, 32, 64)
_ROWS = (1, 2, 3, 4, 5, 8, 16)


def random_config(rng: random.Random, *, max_rows: int = 16, max_lanes: int = 64, rows: int | None = None,
                  lanes: int | None = None, max_pes: int = 256) -> TernConfig:
    """A small random configuration: rows 1..16, lanes 1..64 (skewed small, so the Amaranth
    simulation stays quick), both weight formats, small depths so that the queue, bank and FIFO
    limits are reached, and in 60% of the draws the minimum accumulator width (``dot_width``, where
    extreme data wraps). ``rows``/``lanes`` fix the array size instead of drawing it;
    ``rows * lanes`` is kept to at most ``max_pes``."""
    if lanes is None:
        lanes = rng.choice([x for x in _LANES if x <= max_lanes])
    if rows is None:
        rows = rng.choice([x for x in _ROWS if x <= max_rows])
    if rows * lanes > max_pes:   # keep the RTL small: Amaranth sim time grows with rows * lanes
        rows = max(1, max_pes // lanes)
    cfg = TernConfig(rows=rows, lanes=lanes, weight_format=rng.choice(["2bit", "base3"]),
                     bus_bytes=rng.choice([1, 2, 3, 4, 8, 16]), act_depth=rng.choice([16, 32]),
                     wgt_depth=rng.choice([4, 8]), out_depth=rng.randint(2, 6),
                     tree_reg_every=rng.randint(0, 3), acc_width=32)
    w = cfg.dot_width if rng.random() < 0.6 else rng.choice([cfg.dot_width + 1, cfg.dot_width + 2, 32])
    return cfg.replace(acc_width=w)


def production_configs() -> list[TernConfig]:
    """The real sizes: 16x64 with act depth 1024 and weight depth 64 (both formats, the minimum and a
    32-bit accumulator) and the default configuration of every board (``hw.flows.boards``), each
    once."""
    from hw.flows.boards import BOARDS
    base = TernConfig(rows=16, lanes=64, act_depth=1024, wgt_depth=64, out_depth=32, bus_bytes=16)
    cfgs = [base, base.replace(weight_format="base3", acc_width=base.dot_width)]
    cfgs += [TernConfig(**b.default_config) for b in BOARDS.values()]
    return list(dict.fromkeys(cfgs))     # boards may share a configuration


def _bad_instr(rng: random.Random, cfg: TernConfig) -> Instr:
    AD, WD = cfg.act_depth, cfg.wgt_depth
    kind = rng.randrange(7)          # 5, 6: span-only (the subtlest check)
    if kind == 0:
        return Instr(rng.randint(4, 15), rng.randint(0, FIELD_MAX), rng.randint(0, 7), rng.randint(0, 3))
    if kind == 1:
        return Instr(Op.LOAD_ACT, rng.randrange(AD), 0)
    if kind == 2:
        return Instr(Op.LOAD_ACT, rng.randrange(AD), AD + 1)
    if kind == 3:
        return Instr(Op.MATMUL, 0, WD + rng.randint(1, 3), 1)
    if kind == 4:
        return Instr(Op.MATMUL, rng.randrange(AD), rng.randint(1, WD), rng.choice([0, AD + 1]))
    return span_only_bad(rng, cfg)


def span_only_bad(rng: random.Random, cfg: TernConfig) -> Instr:
    """A MATMUL whose ``k_words`` and ``tokens`` are each in range but whose span
    ``act_addr + k_words * tokens`` is beyond ``act_depth`` (by 1 when it can be: the boundary)."""
    AD, WD = cfg.act_depth, cfg.wgt_depth
    while True:
        a, b = rng.randrange(AD), rng.randint(1, WD)
        c_min = (AD - a) // b + 1            # the fewest tokens whose span passes act_depth
        if c_min <= AD:
            c = c_min if rng.random() < 0.5 else rng.randint(c_min, AD)
            return Instr(Op.MATMUL, a, b, c)


def _extreme_k(rng: random.Random, cfg: TernConfig) -> int:
    """K (input features) of an extreme MATMUL: at the accumulator proof's bound (the largest K
    that provably fits, one more) or the deepest the bank holds."""
    kmax = cfg.wgt_depth * cfg.lanes
    r = rng.random()
    if r < 0.25:
        return max(1, min(kmax, cfg.max_k_exact + rng.randint(0, 1)))
    return rng.randint(max(1, min(kmax, 3 * cfg.lanes)), kmax)


def random_program(rng: random.Random, cfg: TernConfig, n_instr: int, *, p_bad_byte: float = 0.15,
                   extreme: bool | None = None) -> Program:
    """A random program of about ``n_instr`` instructions: LOAD_ACT, MATMUL (1..4 tokens, 1..wgt_depth
    words, sometimes a K that is not a multiple of lanes, i.e. zero-padded), NOP, SYNC and bad
    instructions. With probability ``p_bad_byte`` one weight stream byte (payload or padding) is
    made invalid; the weights it carries are zero in the reference (what the decoder must do).
    ``extreme`` (drawn with probability :data:`P_EXTREME` when None): activation words all -128 or
    all 127, every row's weights of one sign, K at the accumulator bound or the bank's depth."""
    nprng = np.random.default_rng(rng.getrandbits(32))
    if extreme is None:
        extreme = rng.random() < P_EXTREME
    R, L, AD, WD = cfg.rows, cfg.lanes, cfg.act_depth, cfg.wgt_depth
    loaded = np.zeros(AD, dtype=bool)
    ops = []
    for _ in range(n_instr):
        r = rng.random()
        if r < 0.22 or not loaded.any():
            cnt = rng.randint(1, min(12, AD)) if not extreme else rng.randint(min(AD, 3), AD)
            addr = rng.randrange(AD - cnt + 1)
            if extreme:
                data = np.repeat(np.array(rng.choices((-128, 127), k=cnt))[:, None], L, axis=1)
            else:
                data = nprng.integers(-128, 128, (cnt, L))
            ops.append(("load", addr, data))
            loaded[addr:addr + cnt] = True
        elif r < 0.78:
            for _ in range(20):
                k_exact = _extreme_k(rng, cfg) if extreme else None
                kw = rng.randint(1, WD) if not extreme else -(-k_exact // L)
                tokens = rng.randint(1, max(1, min(4, AD // kw)))
                addr = rng.randrange(AD - kw * tokens + 1)
                if loaded[addr:addr + kw * tokens].all():
                    if extreme:      # every row one sign, K exactly k_exact (the rest zero)
                        tile = np.repeat(np.array(rng.choices((-1, 1), k=R))[:, None], kw * L, axis=1)
                        tile[:, k_exact:] = 0
                    else:
                        tile = nprng.integers(-1, 2, (R, kw * L))
                    # K not a multiple of lanes: zero-padded tail (every K is one with a single lane;
                    # the draw is made anyway, so every other configuration draws what it always did)
                    if rng.random() < 0.3 and L > 1 and not extreme:
                        tile[:, kw * L - rng.randint(1, L - 1):] = 0
                    if rng.random() < 0.2 and not extreme:   # sparse weights
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
    return _build(rng, cfg, ops, p_bad_byte)


def fill_program(rng: random.Random, cfg: TernConfig, *, n_matmul: int = 4, p_bad_byte: float = 0.0) -> Program:
    """A program that fills every buffer and cycles both weight banks: a LOAD_ACT of the whole
    activation buffer, ``n_matmul`` MATMULs of ``wgt_depth`` words (a full bank each, so the banks
    alternate) with as many tokens as the buffer holds (more than ``out_depth`` where it can, so
    the output FIFO fills under backpressure), a second LOAD_ACT that overwrites half the buffer
    while MATMULs still read it in program order, and a SYNC; random int8 activations and ternary
    weights, or extreme ones (one program in three)."""
    R, L, AD, WD = cfg.rows, cfg.lanes, cfg.act_depth, cfg.wgt_depth
    nprng = np.random.default_rng(rng.getrandbits(32))
    extreme = rng.random() < 1 / 3
    kw = min(WD, AD)

    def acts(n):
        if extreme:
            return np.repeat(np.array(rng.choices((-128, 127), k=n))[:, None], L, axis=1)
        return nprng.integers(-128, 128, (n, L))

    def tile():
        if extreme:
            return np.repeat(np.array(rng.choices((-1, 1), k=R))[:, None], kw * L, axis=1)
        return nprng.integers(-1, 2, (R, kw * L))

    ops = [("load", 0, acts(AD))]
    tokens = AD // kw
    for m in range(n_matmul):
        if m == n_matmul // 2:
            ops.append(("load", AD // 2, acts(AD - AD // 2)))
        ops.append(("mm", 0, tile(), tokens))
    ops.append(("sync",))
    return _build(rng, cfg, ops, p_bad_byte)


def _build(rng: random.Random, cfg: TernConfig, ops: list, p_bad_byte: float) -> Program:
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


def accumulator_wraps(cfg: TernConfig, prog: Program) -> int:
    """How many (token, row) accumulations of ``prog`` wrap the ``acc_width``-bit accumulator: some
    partial sum (after a weight word) leaves ``[-2**(acc_width-1), 2**(acc_width-1) - 1]``.

    Computed on its own from the program's instructions, activation beats and weight words (an
    activation buffer replayed instruction by instruction; each partial sum the plain int64 sum of
    the int8 x ternary products of the words so far, no wrapping anywhere)."""
    L = cfg.lanes
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    act = np.zeros((cfg.act_depth, L), dtype=np.int64)
    beats = prog.act_beats.astype(np.int64)
    words = prog.wgt_words.astype(np.int64)     # (n, rows, lanes) in {-1, 0, 1}
    nb = nw = wraps = 0
    for ins in prog.instrs:
        if not is_valid(cfg, ins):
            continue
        if ins.op == Op.LOAD_ACT:
            act[ins.a:ins.a + ins.b] = beats[nb:nb + ins.b]
            nb += ins.b
        elif ins.op == Op.MATMUL:
            kw, tokens = ins.b, ins.c
            x = act[ins.a:ins.a + kw * tokens].reshape(tokens, kw, L)
            partial = np.cumsum(np.einsum("tkl,krl->tkr", x, words[nw:nw + kw]), axis=1)
            wraps += int(((partial < lo) | (partial > hi)).any(axis=1).sum())
            nw += kw
    return wraps


def _stream(rng: random.Random, *, source: bool) -> StreamTiming:
    kind = rng.random()
    if kind < 0.3:
        st = StreamTiming()
    elif kind < 0.65:
        st = StreamTiming(p_stall=rng.choice([0.1, 0.3, 0.6]))
    else:
        st = StreamTiming(p_stall=rng.choice([0.0, 0.2]), latency=rng.randint(0, 12),
                          rate=Fraction(rng.randint(1, 4), rng.randint(4, 9)))
    if rng.random() < 0.35:       # withdraws valid (a source) / ready (a sink) in random cycles
        st = st.replace(p_withdraw=rng.choice([0.2, 0.5]))
    if source and rng.random() < 0.5:
        st = st.replace(garbage=True)
    return st


def random_timing(rng: random.Random) -> Timing:
    """Ideal (1 in 5), or every stream independently ideal / seeded stalls / a bus limit, each
    sometimes withdrawing valid or ready and (the sources) driving garbage while valid is low."""
    if rng.random() < 0.2:
        return Timing(seed=rng.getrandbits(16))
    return Timing(*(_stream(rng, source=s != "out") for s in ("instr", "act", "wgt", "out")),
                  seed=rng.getrandbits(16))


@dataclass
class Case:
    """One differential case. ``interrupt``: None, or ``(program, timing, cycles)``: a program that
    runs first and is cut by the reset that starts this case after ``cycles`` cycles (before it
    finished); its outcome is discarded. ``wraps``: :func:`accumulator_wraps` of the program."""
    seed: int
    index: int
    config: TernConfig
    program: Program
    timing: Timing
    interrupt: tuple | None = None
    wraps: int = 0

    def describe(self) -> str:
        cut = ""
        if self.interrupt is not None:
            p, t, c = self.interrupt
            cut = (f" after a reset at cycle {c} of program={[str(i) for i in p.instrs]} "
                   f"timing={t.to_json()}")
        return (f"seed={self.seed} index={self.index} config={self.config.to_dict()} "
                f"timing={self.timing.to_json()} program={[str(i) for i in self.program.instrs]}{cut}")


def _interrupt(rng: random.Random, cfg: TernConfig, max_instr: int) -> tuple | None:
    """A program, its timing and a cycle strictly inside its run (the cut), or None when the drawn
    program is too short to cut."""
    from hw.sim import simulate
    prog = random_program(rng, cfg, rng.randint(1, max_instr))
    tim = random_timing(rng)
    cycles = simulate(cfg, prog, tim).cycles
    return (prog, tim, rng.randint(1, cycles - 1)) if cycles >= 2 else None


def random_case(seed: int, index: int, config: TernConfig | None = None, *,
                max_instr: int = 10, fill: bool = False) -> Case:
    """Case ``index`` of the stream drawn from ``seed`` (independent of every other case).
    ``fill``: the program is a :func:`fill_program` (every buffer full, both banks cycled)."""
    rng = random.Random(f"tern-verify-{seed}-{index}")
    cfg = random_config(rng) if config is None else config
    if fill:
        prog = fill_program(rng, cfg, p_bad_byte=0.1)
    else:
        prog = random_program(rng, cfg, rng.randint(1, max_instr))
    tim = random_timing(rng)
    cut = _interrupt(rng, cfg, max_instr) if rng.random() < P_RESET else None
    return Case(seed, index, cfg, prog, tim, cut, accumulator_wraps(cfg, prog))
