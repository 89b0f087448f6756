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
    seen_formats, seen_wrapping = set(), 0
    for _ in range(300):
        c = random_config(rng)
        assert 1 <= c.rows <= 16 and 4 <= c.lanes <= 64 and c.rows * c.lanes <= 256
        assert c.act_depth in (16, 32) and c.wgt_depth in (4, 8) and 2 <= c.out_depth <= 6
        assert c.acc_width in (c.dot_width, c.dot_width + 2, 32)
        seen_formats.add(c.weight_format)
        seen_wrapping += c.acc_width == c.dot_width
    assert seen_formats == {"2bit", "base3"} and seen_wrapping > 0
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
