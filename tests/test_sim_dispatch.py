"""hw.sim.dispatch: bad instructions are skipped with error bit 0 (the operand checks of hw.isa),
the queue-room and SYNC rules, and the program must match its streams."""

import numpy as np
import pytest

from hw.config import TernConfig
from hw.isa import Instr, Op, encode, load_act, matmul, nop, sync
from hw.program import ProgramBuilder
from hw.sim import SimError, simulate
from hw.sim.dispatch import LOAD_ACT, MATMUL, RETIRE, SYNC, Dispatch
from hw.timing import StreamTiming, Timing


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


def test_decode_check_and_queue_rules():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    assert cfg.queue_depth == 4
    bpw = cfg.beats_per_word
    prog = [load_act(0, 3), matmul(0, 1, 2), nop(), sync(), Instr(9), matmul(0, 5, 1)]
    words = [encode(x) for x in prog]
    d = Dispatch(cfg, Timing(instr=StreamTiming(gaps=[0, 4])), words, n_act_beats=3,
                 n_wgt_beats=bpw)
    assert d.kind == [LOAD_ACT, MATMUL, RETIRE, SYNC, RETIRE, RETIRE]
    assert d.bad.tolist() == [False] * 4 + [True] * 2
    assert (d.n_act, d.n_words, d.n_results) == (3, 1, 2)
    # check_stages = 2: in V0 from t + 1, V1 from t + 2, D from t + 3
    assert d.take(0) == 3 and d.instr.t[0] == 0
    d.d_retire = d.push(3, False, [], [])             # pushed in its first cycle in D
    assert d.d_retire == 3
    assert d.take(1) == 8 and d.instr.t[1] == 5        # the stream's gap: 1 + 4 cycles later
    d.d_retire = 20                                    # D holds instruction 1 until cycle 20
    assert d.take(2) == 21 and d.instr.t[2] == 6       # waits in V1 (from 8), D from 21
    d.d_retire = 21                                    # a NOP: retires in its first cycle in D
    assert d.take(3) == 22 and d.instr.t[3] == 7       # waits in V0 (from 8) and V1 (from 21)
    # V0 is occupied until instruction 3 moves on to V1 (cycle 21): instruction 4 is taken in 20
    d.d_retire = 40
    assert d.take(4) == 41 and d.instr.t[4] == 20
    # a full queue (4 entries) has room from the cycle after its oldest entry is popped
    assert d.push(6, False, [10, 11, 12, 13], []) == 11
    assert d.push(6, True, [1, 2, 3, 4], [20, 21, 22, 23]) == 21
    assert d.push(6, True, [1, 2, 3], [20, 21, 22]) == 6
    # SYNC: after the last execute instruction finished and every result left `out`
    assert Dispatch.sync_retire(5, [9], 3) == 10
    assert Dispatch.sync_retire(5, [], 30) == 30
    assert Dispatch.sync_retire(5, [], 0) == 5
    with pytest.raises(SimError, match="act stream holds 2"):
        Dispatch(cfg, Timing(), words, n_act_beats=2, n_wgt_beats=bpw)
    with pytest.raises(SimError, match="weight stream holds 0"):
        Dispatch(cfg, Timing(), words, n_act_beats=3, n_wgt_beats=0)
