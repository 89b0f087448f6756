"""Dispatch: the operand checks (the validity table of docs/ISA.md, in hardware) and SYNC, run on the
controller with the harness of test_controller.py."""

import pytest

from hw.config import TernConfig
from hw.isa import FIELD_MAX, Instr, Op
from hw.program import instr_is_valid
from helpers import run_controller


def test_sync_waits_for_results():
    """A SYNC waits in D until the last earlier result has left: the instructions behind it fill the
    check pipeline, and the next one is accepted exactly in the SYNC's retire cycle, one cycle after
    that result left (instructions always valid, consumer stalling randomly)."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=4)
    s = cfg.check_stages
    prog = ([Instr(Op.LOAD_ACT, 0, 4), Instr(Op.MATMUL, 0, 2, 2), Instr(Op.SYNC)]
            + [Instr(Op.NOP)] * s + [Instr(Op.MATMUL, 0, 4, 1), Instr(Op.SYNC)]
            + [Instr(Op.NOP)] * s + [Instr(Op.NOP)])
    res = run_controller(cfg, prog, seed=7, p_pop=0.6)
    assert len(res["pops"]) == 3
    first, second = 3 + s, 5 + 2 * s          # the instructions s + 1 places behind each SYNC
    assert res["accept"][first] == res["pops"][1] + 1
    assert res["accept"][second] == res["pops"][2] + 1
    assert res["accept"][:first] == list(range(first))     # the check pipeline took them at once


# Hand-chosen boundary operands for act_depth=16, wgt_depth=4 (validity worked out by hand).
_VALIDITY = [
    (Instr(Op.LOAD_ACT, 0, 16), True), (Instr(Op.LOAD_ACT, 1, 16), False),
    (Instr(Op.LOAD_ACT, 15, 1), True), (Instr(Op.LOAD_ACT, 16, 1), False),
    (Instr(Op.LOAD_ACT, 3, 0), False), (Instr(Op.LOAD_ACT, FIELD_MAX, FIELD_MAX), False),
    (Instr(Op.LOAD_ACT, 0, 17), False),
    (Instr(Op.MATMUL, 0, 4, 4), True), (Instr(Op.MATMUL, 1, 4, 4), False),
    (Instr(Op.MATMUL, 0, 5, 1), False), (Instr(Op.MATMUL, 0, 0, 1), False),
    (Instr(Op.MATMUL, 0, 1, 0), False), (Instr(Op.MATMUL, 0, 1, 16), True),
    (Instr(Op.MATMUL, 0, 1, 17), False), (Instr(Op.MATMUL, 12, 2, 2), True),
    (Instr(Op.MATMUL, 13, 2, 2), False), (Instr(Op.MATMUL, 10, 3, 2), True),
    (Instr(Op.MATMUL, 0, 3, 6), False), (Instr(Op.MATMUL, 15, 1, 1), True),
    (Instr(Op.MATMUL, 0, 4, 1 + (1 << 17)), False), (Instr(Op.MATMUL, 0, 4 + (1 << 17), 1), False),
    (Instr(Op.MATMUL, FIELD_MAX, FIELD_MAX, FIELD_MAX), False),
    (Instr(Op.NOP, 5, 6, 7), True), (Instr(Op.SYNC, 1, 1, 1), True),
] + [(Instr(op, 0, 1, 1), False) for op in range(4, 16)]


def test_reference_validity_table():
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4)
    for instr, ok in _VALIDITY:
        assert instr_is_valid(cfg, instr) == ok, str(instr)


@pytest.mark.parametrize("case", range(0, len(_VALIDITY), 4))
def test_operand_checks_in_hardware(case):
    """Each boundary instruction (a few per simulation, each followed by a SYNC): valid ones run and
    consume exactly their data, invalid ones set error bit 0 and consume nothing."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=4)
    for instr, ok in _VALIDITY[case:case + 4]:
        prog = [instr, Instr(Op.SYNC)]
        if ok and instr.op == Op.MATMUL:
            prog = [Instr(Op.LOAD_ACT, 0, 16)] + prog
        res = run_controller(cfg, prog, seed=case, max_cycles=400)
        assert res["error"] == (0 if ok else 1), str(instr)
