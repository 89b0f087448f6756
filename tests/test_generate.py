"""hw.verify.generate: random cases replay from (seed, index) alone, stay inside the ranges they
document, and reach the corners they claim (counted over a fixed set of cases)."""

import random

import numpy as np

from hw.formats import BYTE_VALID
from hw.isa import Op, decode, is_valid
from hw.verify.generate import random_case, random_config, random_program


def test_a_case_depends_only_on_seed_and_index():
    a, b = random_case(11, 7), random_case(11, 7)
    assert a.describe() == b.describe()
    assert np.array_equal(a.program.wgt_beats, b.program.wgt_beats)
    assert np.array_equal(a.program.act_beats, b.program.act_beats)
    assert random_case(11, 8).describe() != a.describe()
    assert random_case(12, 7).describe() != a.describe()


def test_random_configs_stay_in_their_documented_ranges():
    rng = random.Random(3)
    seen_formats, seen_min_width, seen_small = set(), 0, set()
    for _ in range(300):
        c = random_config(rng)
        assert 1 <= c.rows <= 16 and 1 <= c.lanes <= 64 and c.rows * c.lanes <= 256
        assert c.act_depth in (16, 32) and c.wgt_depth in (4, 8) and 2 <= c.out_depth <= 6
        assert c.acc_width in (c.dot_width, c.dot_width + 1, c.dot_width + 2, 32)
        seen_formats.add(c.weight_format)
        seen_min_width += c.acc_width == c.dot_width
        seen_small |= {("lanes", c.lanes)} if c.lanes <= 3 else set()
        seen_small |= {("rows", 1)} if c.rows == 1 else set()
    assert seen_formats == {"2bit", "base3"} and seen_min_width > 100
    assert seen_small == {("lanes", 1), ("lanes", 2), ("lanes", 3), ("rows", 1)}
    fixed = random_config(random.Random(0), rows=16, lanes=64, max_pes=1024)
    assert (fixed.rows, fixed.lanes) == (16, 64)


def test_programs_reach_every_instruction_kind_and_invalid_bytes():
    """Over 300 cases: every opcode kind, bad instructions of both operand kinds and illegal
    opcodes, multi-token MATMULs, zero-padded K, and invalid weight bytes in both formats."""
    kinds = dict.fromkeys(("nop", "load", "matmul", "sync", "bad_operand", "illegal_op",
                           "multi_token", "bad_byte_2bit", "bad_byte_base3"), 0)
    for i in range(300):
        case = random_case(5, i)
        cfg, prog = case.config, case.program
        for ins in prog.instrs:
            if not is_valid(cfg, ins):
                kinds["illegal_op" if not isinstance(ins.op, Op) else "bad_operand"] += 1
                continue
            kinds[{Op.NOP: "nop", Op.LOAD_ACT: "load", Op.MATMUL: "matmul", Op.SYNC: "sync"}[ins.op]] += 1
            kinds["multi_token"] += ins.op == Op.MATMUL and ins.c > 1
        if len(prog.wgt_beats) and not BYTE_VALID[cfg.weight_format][prog.wgt_beats].all():
            kinds[f"bad_byte_{cfg.weight_format}"] += 1
            assert prog.expected_error & 2
        # the words on the stream decode back to the program's instructions
        assert [decode(w) for w in prog.words] == prog.instrs
    assert all(n > 0 for n in kinds.values()), kinds


def test_expected_results_are_one_vector_per_matmul_token():
    rng = random.Random(9)
    cfg = random_config(rng)
    prog = random_program(rng, cfg, 30)
    tokens = sum(i.c for i in prog.instrs if i.op == Op.MATMUL and is_valid(cfg, i))
    assert prog.expected.shape == (tokens, cfg.rows)


def test_every_array_size_draws_cases():
    """Configurations with 1..3 lanes (which the random configurations never draw) and a production
    size still give valid cases: a single lane has no zero-padded K to draw."""
    from hw.config import TernConfig
    for cfg in (TernConfig(rows=2, lanes=1, act_depth=16, wgt_depth=4),
                TernConfig(rows=3, lanes=2, act_depth=16, wgt_depth=4),
                TernConfig(rows=1, lanes=3, act_depth=32, wgt_depth=8),
                TernConfig(rows=16, lanes=64, act_depth=1024, wgt_depth=64)):
        for i in range(60):
            case = random_case(1, i, cfg)
            assert case.config == cfg
            assert case.program.expected.shape[1] == cfg.rows


def _acc_case(lanes, act, sign, k):
    """One MATMUL of one token: ``k`` features of activation ``act`` and weight ``sign``."""
    from hw.config import TernConfig
    from hw.program import ProgramBuilder
    cfg = TernConfig(rows=2, lanes=lanes, act_depth=16, wgt_depth=8, acc_width=32)
    cfg = cfg.replace(acc_width=cfg.dot_width)
    kw = -(-k // lanes)
    tile = np.zeros((2, kw * lanes), dtype=np.int64)
    tile[0, :k] = sign        # row 1 stays zero: never wraps
    b = ProgramBuilder(cfg).load_act(0, np.full((kw, lanes), act))
    return cfg, b.matmul(0, tile, 1).build()


def test_accumulator_wraps_by_hand():
    """lanes 8: dot_width = 12 bits, range -2048..2047, max_k_exact = 15. K = 16 of -128 x +1 is
    -2048 (fits), of -128 x -1 is +2048 (wraps); 3 words of 127 x +1 pass 2047 after the third."""
    from hw.verify.generate import accumulator_wraps
    cfg, p = _acc_case(8, -128, 1, 16)
    assert cfg.acc_width == 12 and cfg.max_k_exact == 15 and accumulator_wraps(cfg, p) == 0
    assert accumulator_wraps(*_acc_case(8, -128, -1, 16)) == 1
    assert accumulator_wraps(*_acc_case(8, 127, 1, 16)) == 0
    assert accumulator_wraps(*_acc_case(8, 127, 1, 24)) == 1
    assert accumulator_wraps(*_acc_case(1, 127, -1, 3)) == 1     # lanes 1: 9 bits, -381 < -256


def test_a_fifth_of_the_cases_wrap_at_the_minimum_accumulator_width():
    """The issue's bar: at least 20% of the default random cases wrap an accumulator whose width is
    the minimum (``dot_width``), counted by the generator's own integer computation; and the extreme
    programs reach K at the proof's bound (``max_k_exact`` and one more)."""
    n, wraps_min, at_bound = 300, 0, 0
    for i in range(n):
        c = random_case(21, i)
        wraps_min += c.wraps > 0 and c.config.acc_width == c.config.dot_width
        L = c.config.lanes
        for ins, tile_k in _matmul_ks(c):
            at_bound += tile_k in (c.config.max_k_exact, c.config.max_k_exact + 1)
    assert wraps_min >= 0.2 * n, wraps_min
    assert at_bound >= 10, at_bound


def _matmul_ks(case):
    """(instr, K) of every valid MATMUL: K = the index past the last non-zero weight column."""
    cfg, prog = case.config, case.program
    w = 0
    for ins in prog.instrs:
        if ins.op == Op.MATMUL and is_valid(cfg, ins):
            words = prog.wgt_words[w:w + ins.b]                        # (kw, rows, lanes)
            cols = np.flatnonzero(np.abs(words).sum(axis=1).reshape(-1))
            yield ins, (int(cols[-1]) + 1 if len(cols) else 0)
            w += ins.b


def test_extreme_data_and_span_only_bad_matmuls():
    """Over 300 cases: LOAD_ACTs of all -128 / all 127 words, MATMULs whose every row has one sign,
    and bad MATMULs whose k_words and tokens are each in range but whose span is not (some by one
    token: the boundary)."""
    extreme_acts = same_sign = span_only = span_boundary = 0
    for i in range(300):
        c = random_case(4, i)
        cfg, prog = c.config, c.program
        AD, WD = cfg.act_depth, cfg.wgt_depth
        a = prog.act_beats.astype(int)
        extreme_acts += bool(len(a)) and bool(np.isin(a, (-128, 127)).all()) and bool((a == a[:, :1]).all())
        w, first = prog.wgt_words.astype(int), 0
        for ins in prog.instrs:
            if ins.op == Op.MATMUL and is_valid(cfg, ins):
                t = w[first:first + ins.b]                      # (kw, rows, lanes)
                same_sign += bool((t != 0).any()) and bool(((t >= 0).all(axis=(0, 2))
                                                             | (t <= 0).all(axis=(0, 2))).all())
                first += ins.b
        for ins in prog.instrs:
            if ins.op == Op.MATMUL and 1 <= ins.b <= WD and 1 <= ins.c <= AD and ins.a < AD \
                    and ins.a + ins.b * ins.c > AD:
                assert not is_valid(cfg, ins)
                span_only += 1
                span_boundary += ins.a + ins.b * (ins.c - 1) <= AD
    assert extreme_acts >= 60 and same_sign >= 60, (extreme_acts, same_sign)
    assert span_only >= 15 and span_boundary >= 5, (span_only, span_boundary)


def test_resets_cut_inside_the_interrupted_program():
    """Some cases start with a reset in the middle of another program, at a cycle strictly inside
    that program's run (the simulator's cycle count of it)."""
    from hw.sim import simulate
    cuts = 0
    for i in range(120):
        c = random_case(8, i)
        if c.interrupt is not None:
            prog, tim, cut = c.interrupt
            assert 1 <= cut < simulate(c.config, prog, tim).cycles
            cuts += 1
    assert cuts >= 8, cuts


def test_timings_withdraw_and_drive_garbage():
    n = {"withdraw_source": 0, "withdraw_sink": 0, "garbage": 0}
    for i in range(200):
        t = random_case(6, i).timing
        n["withdraw_source"] += any(t.withdraws(s) for s in ("instr", "act", "wgt"))
        n["withdraw_sink"] += t.withdraws("out")
        n["garbage"] += any(t.stream(s).garbage for s in ("instr", "act", "wgt"))
        assert not t.stream("out").garbage     # the core drives out's payload
    assert all(v >= 30 for v in n.values()), n


def test_fill_programs_fill_every_buffer_and_cycle_the_banks():
    """On every production configuration: the whole activation buffer loaded, at least four MATMULs
    of a full bank (wgt_depth words: banks 0, 1, 0, 1), each with more tokens than the output FIFO
    holds where the buffer allows it."""
    from hw.verify.generate import fill_program, production_configs
    cfgs = production_configs()
    assert {(c.rows, c.lanes, c.act_depth, c.wgt_depth) for c in cfgs} >= {(16, 64, 1024, 64)}
    for cfg in cfgs:
        prog = fill_program(random.Random(cfg.to_json()), cfg)
        loads = [i for i in prog.instrs if i.op == Op.LOAD_ACT]
        mms = [i for i in prog.instrs if i.op == Op.MATMUL]
        assert loads[0].a == 0 and loads[0].b == cfg.act_depth
        assert len(mms) >= 4 and all(m.b == cfg.wgt_depth for m in mms)
        assert all(m.c == cfg.act_depth // cfg.wgt_depth for m in mms)
        assert all(is_valid(cfg, i) for i in prog.instrs)
        if cfg.act_depth // cfg.wgt_depth > cfg.out_depth:
            assert all(m.c > cfg.out_depth for m in mms)
