"""hw.sim.dispatch: bad instructions are skipped with error bit 0 (the operand checks of hw.isa),
and the program must match its streams."""

import numpy as np

from hw.config import TernConfig
from hw.isa import Instr, Op
from hw.program import ProgramBuilder
from hw.sim import simulate


def test_bad_instructions_skipped():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(1)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (4, 4)))
    b.bad(Instr(Op.MATMUL, 0, 5, 1))          # k_words > wgt_depth
    b.bad(Instr(9, 1, 2, 3))                   # illegal opcode
    b.bad(Instr(Op.LOAD_ACT, 10, 7))           # past the end of the buffer
    b.matmul(0, rng.integers(-1, 2, (2, 8)), 2)
    b.bad(Instr(Op.MATMUL, 0, 1, 0))           # zero tokens
    b.sync()
    prog = b.build()
    r = simulate(cfg, prog)
    assert np.array_equal(r.outputs, prog.expected) and r.error == 1
    assert r.counters["busy"] == 4 and r.counters["wgt_beats"] == 2 * cfg.beats_per_word
