"""TernCore end to end in Amaranth simulation (hw.backends.amaranth) against the numpy int64 reference
(hw.program) and the cycle-accurate simulator (hw.sim).

Random configurations and programs (hw.verify.generate) under random stream stalls; bad
instructions; invalid weight bytes; reset in the middle of a program; exact cycle counts of
stall-free programs from the closed forms of docs/ARCHITECTURE.md. Every stream is driven by the one
drive policy (hw.backends.drive) from a hw.timing.Timing, and every run is also replayed on hw.sim,
which must give the identical result (outputs, cycles, counters, error flags, every transfer cycle).
"""

import random

import numpy as np
import pytest

from hw.backends.amaranth import RunCase, run_rtl, run_rtl_cases
from hw.config import TernConfig
from hw.isa import Instr, Op
from hw.program import ProgramBuilder, decode_program, linear_program, outputs_to_matrix, prefill_program, \
    reference_matmul
from hw.timing import Timing
from hw.verify.generate import random_config, random_program

from helpers import assert_same_as_sim, reset_cut_case

PARTS = ("busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle")


def _small_config(rng):
    return random_config(rng, max_rows=8, max_lanes=16)


def check(cfg, prog, res, seed):
    got = res.outputs
    assert got.shape == prog.expected.shape, f"seed={seed} {cfg}: {got.shape} outputs, expected " \
                                             f"{prog.expected.shape}"
    assert np.array_equal(got, prog.expected), f"seed={seed} {cfg}: outputs differ"
    assert res.error == prog.expected_error, f"seed={seed}: error={res.error}"
    c = res.counters
    assert c["busy"] == prog.n_matmul_steps, f"seed={seed}"
    assert c["act_beats"] == len(prog.act_beats), f"seed={seed}"
    assert c["wgt_beats"] == len(prog.wgt_beats), f"seed={seed}"
    assert sum(c[p] for p in PARTS) == c["cycles"] == res.cycles, f"seed={seed}: {c}"


def run_checked(cfg, prog, timing, seed, **kw):
    """Run ``prog`` on the RTL with ``timing``, :func:`check` it, and check that hw.sim gives the
    identical result for the same program and timing."""
    res = run_rtl(cfg, prog, timing, **kw)
    check(cfg, prog, res, seed)
    assert_same_as_sim(cfg, prog, timing, res, f"seed={seed} {cfg}")
    return res


def _random_stalls(rng, seed, p_instr, p_act, p_wgt, p_out):
    return Timing.random(seed, p_instr=rng.choice(p_instr), p_act=rng.choice(p_act),
                         p_wgt=rng.choice(p_wgt), p_out=rng.choice(p_out))


@pytest.mark.parametrize("seed", range(10))
def test_random_programs_random_stalls(seed):
    rng = random.Random(seed)
    cfg = _small_config(rng)
    prog = random_program(rng, cfg, rng.randint(6, 14))
    timing = _random_stalls(rng, seed, [0, 0.3], [0, 0.4], [0, 0.2, 0.6], [0, 0.5, 0.85])
    run_checked(cfg, prog, timing, seed)


@pytest.mark.parametrize("seed", [100, 101])
def test_large_config_random_program(seed):
    """rows/lanes up to 16 x 64."""
    rng = random.Random(seed)
    cfg = random_config(rng, rows=16, lanes=64, max_pes=16 * 64)
    prog = random_program(rng, cfg, 6)
    run_checked(cfg, prog, Timing.random(seed, p_wgt=0.3, p_out=0.5), seed)


@pytest.mark.parametrize("seed,fmt", [(200, "2bit"), (201, "base3")])
def test_linear_layer_k_not_multiple_of_lanes(seed, fmt):
    """D = q @ w.T with K = 37 (lanes 8: zero-padded to 40), N = 11 (rows 4: 3 tiles), T = 3 tokens."""
    rng = np.random.default_rng(seed)
    cfg = TernConfig(rows=4, lanes=8, acc_width=20, weight_format=fmt, bus_bytes=3, act_depth=32,
                     wgt_depth=8, out_depth=3)
    q = rng.integers(-128, 128, (3, 37))
    w = rng.integers(-1, 2, (11, 37))
    prog = linear_program(cfg, q, w)
    res = run_checked(cfg, prog, Timing.random(seed, p_act=0.3, p_wgt=0.3, p_out=0.3), seed)
    d = outputs_to_matrix(cfg, res.outputs, 3, 11)
    assert np.array_equal(d, reference_matmul(q, w)), f"seed={seed}"


def _corrupt_program(cfg, seed):
    """A program whose weight stream has one invalid byte (base3: >= 243; 2bit: one code 3), and the
    expected results with the affected codes read as 0."""
    rng = np.random.default_rng(seed)
    kw, tokens = 3, 2
    q = rng.integers(-128, 128, (tokens * kw, cfg.lanes))
    tile = rng.integers(-1, 2, (cfg.rows, kw * cfg.lanes))
    word, byte = 1, 2                           # word 1 of the MATMUL, byte 2 of that word
    tpb = cfg.trits_per_byte
    zeroed = tile.copy()
    if cfg.weight_format == "base3":
        idx = range(byte * tpb, (byte + 1) * tpb)  # all 5 trits of the byte read as 0
    else:
        idx = [byte * tpb + 1]                     # the code in bits 2..3 of the byte
    for i in idx:
        r, l = divmod(i, cfg.lanes)
        zeroed[r, word * cfg.lanes + l] = 0
    good = ProgramBuilder(cfg).load_act(0, q).matmul(0, zeroed, tokens).sync().build()
    beats = good.wgt_beats.copy()
    flat = word * cfg.beats_per_word * cfg.bus_bytes + byte
    b, lane = divmod(flat, cfg.bus_bytes)
    if cfg.weight_format == "base3":
        assert beats[b, lane] == 121  # five zero trits
        beats[b, lane] = 250
    else:
        beats[b, lane] = (beats[b, lane] & ~np.uint8(0b1100)) | np.uint8(0b1100)
    good.wgt_beats = beats
    good.expected_error = 2
    return good


@pytest.mark.parametrize("fmt", ["base3", "2bit"])
def test_invalid_weight_byte(fmt):
    cfg = TernConfig(rows=2, lanes=8, acc_width=20, weight_format=fmt, bus_bytes=2, act_depth=16,
                     wgt_depth=4, out_depth=2)
    prog = _corrupt_program(cfg, 7)
    run_checked(cfg, prog, Timing.random(7, p_wgt=0.2), 7)


def test_bad_instructions_skipped():
    """Bad instructions between good ones: no data consumed, no bank used, error bit 0 set."""
    cfg = TernConfig(rows=3, lanes=4, acc_width=16, bus_bytes=2, act_depth=16, wgt_depth=4,
                     out_depth=2)
    rng = np.random.default_rng(3)
    b = ProgramBuilder(cfg)
    b.bad(Instr(Op.LOAD_ACT, 15, 2)).load_act(0, rng.integers(-128, 128, (16, 4)))
    b.bad(Instr(Op.MATMUL, 0, 5, 1)).matmul(0, rng.integers(-1, 2, (3, 8)), 2)
    b.bad(Instr(Op.MATMUL, 14, 1, 3)).bad(Instr(7, 1, 1, 1))
    b.matmul(4, rng.integers(-1, 2, (3, 12)), 4).bad(Instr(Op.MATMUL, 0, 0, 0))
    b.matmul(1, rng.integers(-1, 2, (3, 4)), 1).sync()
    prog = b.build()
    run_checked(cfg, prog, Timing.random(3, p_out=0.5), 3)


@pytest.mark.parametrize("seed,reset_after", [(300, 25), (301, 60)])
def test_reset_mid_program(seed, reset_after):
    """Reset while a program is loading/computing; a fresh program then runs correctly with fresh
    counters, cleared error flags and bank alternation restarted."""
    rng = random.Random(seed)
    cfg = TernConfig(rows=4, lanes=8, acc_width=24, bus_bytes=4, act_depth=32, wgt_depth=4,
                     out_depth=3, weight_format="base3")
    first = random_program(rng, cfg, 12)
    first.instrs.append(Instr(9))  # would set the error flag if reached
    second = random_program(rng, cfg, 8)
    timing = Timing.random(seed, p_wgt=0.3, p_out=0.4)
    run_checked(cfg, second, timing, seed, interrupt=(first, timing, reset_after))


def test_reset_mid_program_batch_cuts_everywhere():
    """The cuts of the Verilator test (tests/cocotb: during LOAD_ACT, while weights stream, in
    compute, while results wait on `out`), in one Amaranth simulation (run_rtl_cases): after each,
    the next program gives exactly the result of a run from power-up, and hw.sim's."""
    seed = 31
    cfg, a, ta, b, tb, cuts = reset_cut_case(seed)
    results = run_rtl_cases(cfg, [RunCase(b, tb, interrupt=(a, ta, c)) for c in cuts] + [RunCase(b, tb)])
    ref = results[-1]
    check(cfg, b, ref, seed)
    assert_same_as_sim(cfg, b, tb, ref, "from power-up")
    for c, res in zip(cuts, results[:-1]):
        assert not isinstance(res, Exception), f"cut at {c}: {res}"
        assert res.compare(ref) == [], f"reset after {c} cycles of another program"


# ------------------------------------------------------------------ closed-form cycle counts


def decode_cycles(cfg, n_mm, kw):
    """docs/ARCHITECTURE.md, "Closed forms": last issue = max(D + 1 + n*kw*bpw + Ld, D - 1 + kw + n*kw),
    the last result leaves ``out`` R cycles later (D = dispatch_latency, R = result_latency)."""
    ld, d, r = cfg.decoder_latency, cfg.dispatch_latency, cfg.result_latency
    bpw = cfg.beats_per_word
    last_issue = max(d + 1 + n_mm * kw * bpw + ld, d - 1 + kw + n_mm * kw)
    return last_issue + r + 1


def prefill_cycles(cfg, n_mm, kw, tokens):
    """docs/ARCHITECTURE.md, "Closed forms": T*kw*(n+1) + D + R."""
    return tokens * kw * (n_mm + 1) + cfg.dispatch_latency + cfg.result_latency


_DECODE_CASES = [
    TernConfig(rows=4, lanes=16, acc_width=24, bus_bytes=4, act_depth=64, wgt_depth=8, out_depth=8),
    TernConfig(rows=2, lanes=8, acc_width=20, bus_bytes=4, act_depth=64, wgt_depth=8, out_depth=8,
               weight_format="base3", tree_reg_every=0),
    TernConfig(rows=3, lanes=5, acc_width=20, bus_bytes=8, act_depth=64, wgt_depth=8, out_depth=8,
               tree_reg_every=1),
]


# the closed form's conditions: k_words * beats_per_word >= 2 and floor(R/k_words) < out_depth
_DECODE_RUNS = [(ci, n_mm, kw) for ci, cfg in enumerate(_DECODE_CASES)
                for n_mm, kw in [(6, 8), (9, 3), (5, 1), (4, 2)] if kw * cfg.beats_per_word >= 2]


@pytest.mark.parametrize("ci,n_mm,kw", _DECODE_RUNS)
def test_decode_cycles_closed_form(ci, n_mm, kw):
    cfg = _DECODE_CASES[ci]
    assert cfg.result_latency // kw < cfg.out_depth, "case outside the closed form's conditions"
    prog = decode_program(cfg, n_mm, kw)
    res = run_checked(cfg, prog, Timing.ideal(), 0)
    # the closed form counts up to the cycle after the last result left `out`
    assert res.last_out_cycle + 1 == decode_cycles(cfg, n_mm, kw), (cfg, res.last_out_cycle)
    # the weight stream accepted a beat on every cycle from cycle D + 1 to its last beat
    first = cfg.dispatch_latency + 1
    assert res.wgt_cycles.tolist() == list(range(first, first + len(prog.wgt_beats)))


_PREFILL_CASES = [
    (TernConfig(rows=4, lanes=16, acc_width=24, bus_bytes=4, act_depth=256, wgt_depth=8,
                out_depth=8), 4, 8, 12),
    (TernConfig(rows=2, lanes=8, acc_width=20, bus_bytes=2, act_depth=128, wgt_depth=4,
                out_depth=8, weight_format="base3"), 5, 2, 16),
    (TernConfig(rows=8, lanes=4, acc_width=20, bus_bytes=1, act_depth=256, wgt_depth=4,
                out_depth=8, tree_reg_every=1), 3, 3, 20),
]


@pytest.mark.parametrize("ci", range(len(_PREFILL_CASES)))
def test_prefill_cycles_closed_form(ci):
    cfg, n_mm, kw, tokens = _PREFILL_CASES[ci]
    prog = prefill_program(cfg, n_mm, kw, tokens)
    res = run_checked(cfg, prog, Timing.ideal(), 0)
    assert res.last_out_cycle + 1 == prefill_cycles(cfg, n_mm, kw, tokens), (cfg, res.last_out_cycle)
    c = res.counters
    assert c["stall_weight"] == 0 and c["stall_out"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1060))
def test_random_programs_sweep(seed):
    """Longer sweep (``-m slow``): random configurations up to 16 x 64 and longer programs."""
    rng = random.Random(seed)
    cfg = _small_config(rng) if seed % 4 != 0 else random_config(rng, max_pes=16 * 64)
    prog = random_program(rng, cfg, rng.randint(8, 24))
    timing = _random_stalls(rng, seed, [0, 0.3, 0.7], [0, 0.4, 0.8], [0, 0.2, 0.6, 0.9], [0, 0.5, 0.9])
    run_checked(cfg, prog, timing, seed)
