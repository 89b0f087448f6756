"""hw.program: the ProgramBuilder's integer reference, its checks, linear_program's layout and the
reassembly of its outputs, against explicit loops."""

import numpy as np
import pytest

from hw.config import TernConfig
from hw.formats import stream_to_weight_words
from hw.isa import Instr, Op, decode
from hw.program import (ProgramBuilder, ProgramError, decode_program, linear_program, outputs_to_matrix,
                        prefill_program, reference_matmul, wrap_signed)

CFG = TernConfig(rows=3, lanes=4, bus_bytes=2, act_depth=32, wgt_depth=8, acc_width=16)


def test_wrap_signed_is_twos_complement():
    x = np.array([0, 127, 128, -128, -129, 255, 256, 1000])
    assert wrap_signed(x, 8).tolist() == [0, 127, -128, -128, 127, -1, 0, -24]
    assert np.array_equal(wrap_signed(x, 64), x)


def test_builder_expected_results_against_loops():
    rng = np.random.default_rng(1)
    acts = rng.integers(-128, 128, (6, CFG.lanes))
    tile = rng.integers(-1, 2, (CFG.rows, 2 * CFG.lanes))
    b = ProgramBuilder(CFG).load_act(1, acts).matmul(1, tile, 3).sync()
    prog = b.build()
    assert [decode(w) for w in prog.words] == [Instr(Op.LOAD_ACT, 1, 6), Instr(Op.MATMUL, 1, 2, 3),
                                               Instr(Op.SYNC)]
    assert np.array_equal(prog.act_beats, acts.astype(np.int8))
    for t in range(3):                                  # token t: words 1 + 2t, 2 + 2t
        x = np.concatenate([acts[2 * t], acts[2 * t + 1]])
        for r in range(CFG.rows):
            assert prog.expected[t, r] == sum(int(x[k]) * int(tile[r, k]) for k in range(2 * CFG.lanes))
    assert np.array_equal(stream_to_weight_words(prog.wgt_beats, CFG), prog.wgt_words)
    assert np.array_equal(prog.wgt_words, tile.reshape(CFG.rows, 2, CFG.lanes).transpose(1, 0, 2))
    assert prog.expected_error == 0 and prog.n_matmul_steps == 2 * 3


def test_builder_wraps_like_the_accumulator():
    cfg = TernConfig(rows=1, lanes=16, acc_width=13)     # two words reach |sum| 4096 > 4095
    b = ProgramBuilder(cfg).load_act(0, np.full((2, 16), -128)).matmul(0, -np.ones((1, 32)), 1)
    assert b.build().expected.tolist() == [[-4096]]      # +4096 wrapped


def test_builder_rejects_what_the_machine_cannot_run():
    b = ProgramBuilder(CFG)
    with pytest.raises(ProgramError, match="shape"):
        b.load_act(0, np.zeros((2, CFG.lanes + 1)))
    with pytest.raises(ProgramError, match="int8"):
        b.load_act(0, np.full((1, CFG.lanes), 128))
    with pytest.raises(ProgramError, match="out of range"):
        b.load_act(CFG.act_depth - 1, np.zeros((2, CFG.lanes)))
    with pytest.raises(ProgramError, match="never loaded"):
        b.matmul(0, np.zeros((CFG.rows, CFG.lanes)), 1)
    b.load_act(0, np.zeros((4, CFG.lanes)))
    with pytest.raises(ProgramError, match="ternary"):
        b.matmul(0, np.full((CFG.rows, CFG.lanes), 2), 1)
    with pytest.raises(ProgramError, match="weight tile"):
        b.matmul(0, np.zeros((CFG.rows, CFG.lanes + 1)), 1)
    with pytest.raises(ProgramError, match="valid instruction"):
        b.bad(Instr(Op.NOP))
    b.bad(Instr(Op.MATMUL, 0, CFG.wgt_depth + 1, 1))
    assert b.build().expected_error == 1
    with pytest.raises(TypeError, match="TernConfig"):
        ProgramBuilder({"rows": 3})


@pytest.mark.parametrize("act_addr", [0, 5])
def test_linear_program_layout(act_addr):
    """One LOAD_ACT of all tokens (word ``t*k_words + k`` = ``q[t, k*L:(k+1)*L]``, K zero-padded),
    one MATMUL per tile over all tokens, SYNC; outputs tile by tile, token by token."""
    rng = np.random.default_rng(act_addr)
    T, N, K = 3, 7, 4 * 2 + 1                            # k_words 3, tiles 3
    q = rng.integers(-128, 128, (T, K))
    w = rng.integers(-1, 2, (N, K))
    prog = linear_program(CFG, q, w, act_addr=act_addr)
    assert prog.shape == (T, N, K)
    assert [decode(x) for x in prog.words] == ([Instr(Op.LOAD_ACT, act_addr, T * 3)]
                                               + [Instr(Op.MATMUL, act_addr, 3, T)] * 3 + [Instr(Op.SYNC)])
    for t in range(T):
        for k in range(3):
            for lane in range(CFG.lanes):
                f = k * CFG.lanes + lane
                assert prog.act_beats[t * 3 + k, lane] == (q[t, f] if f < K else 0)
    for i in range(3):                                   # tile i: words 3i .. 3i+2
        for k in range(3):
            for r in range(CFG.rows):
                for lane in range(CFG.lanes):
                    n, f = i * CFG.rows + r, k * CFG.lanes + lane
                    assert prog.wgt_words[3 * i + k, r, lane] == (w[n, f] if n < N and f < K else 0)
    for i in range(3):
        for t in range(T):
            for r in range(CFG.rows):
                n = i * CFG.rows + r
                if n < N:
                    assert prog.expected[i * T + t, r] == reference_matmul(q, w)[t, n]
    assert np.array_equal(outputs_to_matrix(CFG, prog.expected, T, N), reference_matmul(q, w))


def test_linear_program_limits():
    q, w = np.zeros((2, 4)), np.zeros((3, 4))
    with pytest.raises(ProgramError, match=r"need q \(T, K\) and w \(N, K\)"):
        linear_program(CFG, q, np.zeros((3, 5)))
    with pytest.raises(ProgramError, match="empty problem"):
        linear_program(CFG, np.zeros((0, 4)), w)
    with pytest.raises(ProgramError, match="wgt_depth=8"):
        linear_program(CFG, np.zeros((1, 4 * 9)), np.zeros((1, 4 * 9)))
    with pytest.raises(ProgramError, match="act_depth=32 at address 31"):
        linear_program(CFG, q, w, act_addr=31)
    with pytest.raises(ProgramError, match="expected"):
        outputs_to_matrix(CFG, np.zeros((2, CFG.rows)), 2, 4)
    assert [decode(x).op for x in linear_program(CFG, q, w, sync=False).words] == [Op.LOAD_ACT, Op.MATMUL]


def test_decode_and_prefill_programs():
    p = prefill_program(CFG, 3, 2, 4, seed=1)
    assert [decode(x) for x in p.words] == [Instr(Op.LOAD_ACT, 0, 8)] + [Instr(Op.MATMUL, 0, 2, 4)] * 3
    assert p.expected.shape == (12, CFG.rows)
    d = decode_program(CFG, 2, 3, seed=1)
    assert [decode(x) for x in d.words] == [Instr(Op.LOAD_ACT, 0, 3)] + [Instr(Op.MATMUL, 0, 3, 1)] * 2
    assert d.words == prefill_program(CFG, 2, 3, 1, seed=1).words
