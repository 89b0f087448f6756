"""sw.driver.compiler: K-split with the accumulator proof, packing, programs, weight cache (the tiler
itself: tests/test_tiling.py).

Every D is checked against an independent torch int64 matmul of the unpadded operands."""

import numpy as np
import pytest
import torch

from hw.config import TernConfig
from hw.formats import weight_words_to_stream
from hw.isa import Op, decode
from hw.program import instr_is_valid, linear_program, outputs_to_matrix
from hw.sim import simulate
from sw.driver.compiler import (CompileError, OverflowProofError, WeightCache, compile_linear, prove_no_overflow,
                                worst_case_abs_sum)


def torch_reference(q, t):
    return (torch.from_numpy(np.asarray(q)).to(torch.int64) @ torch.from_numpy(np.asarray(t)).to(torch.int64).T).numpy()


def run_sim(comp, q):
    prog = comp.program(q)
    res = simulate(comp.config, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    assert res.error == 0
    return comp.assemble(prog, res.outputs), prog, res


def rand_problem(rng, T, N, K, extreme=False):
    if extreme:
        q = np.full((T, K), -128, dtype=np.int8)
        w = np.where(rng.random((N, K)) < 0.5, -1, 1).astype(np.int8)
        w[0] = -1   # row 0: sum = +128 * K, the largest possible
        if N > 1:
            w[1] = 1  # row 1: sum = -128 * K
    else:
        q = rng.integers(-128, 128, size=(T, K), dtype=np.int8)
        w = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
    return q, w


# configurations: small buffers and narrow accumulators so that every splitting rule is exercised
CONFIGS = {
    "default": TernConfig(),
    "r4l16-acc13": TernConfig(rows=4, lanes=16, acc_width=13, act_depth=16, wgt_depth=8),   # 1 word per chunk
    "r3l5-base3": TernConfig(rows=3, lanes=5, bus_bytes=3, weight_format="base3", act_depth=32, wgt_depth=4,
                             acc_width=14),
    "r5l8-wgt4": TernConfig(rows=5, lanes=8, bus_bytes=2, act_depth=16, wgt_depth=4),         # K > wgt_depth*lanes
    "r2l7-base3-acc12": TernConfig(rows=2, lanes=7, bus_bytes=1, weight_format="base3", act_depth=16,
                                   wgt_depth=16, acc_width=12, out_depth=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_shapes_exact_on_sim(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    shapes = [(1, 1, 1), (1, 7, 33), (3, 13, 100), (20, 9, 70), (5, 40, 300), (2, 17, cfg.lanes * 9 + 1)]
    for T, N, K in shapes:
        for extreme in (False, True):
            q, w = rand_problem(rng, T, N, K, extreme)
            comp = compile_linear(cfg, w)
            D, prog, _ = run_sim(comp, q)
            assert D.dtype == np.int64
            assert np.array_equal(D, torch_reference(q, w)), (name, T, N, K, extreme)
            # every chunk fits a bank, a LOAD_ACT and the accumulator
            for ch in comp.chunks:
                assert ch.words <= cfg.wgt_depth and ch.words <= cfg.act_depth
                assert 128 * ch.words * cfg.lanes <= 2 ** (cfg.acc_width - 1) - 1
            assert sum(ch.words for ch in comp.chunks) == -(-K // cfg.lanes)
            for word in prog.words:
                assert instr_is_valid(cfg, decode(word))


def test_splitting_rules_are_the_tightest_bounds():
    c = CONFIGS["r4l16-acc13"]
    # acc 13 bits: |sum| <= 4095, one 16-lane word reaches 2048, two reach 4096: one word per chunk
    assert c.max_chunk_words == 1
    comp = compile_linear(c, np.ones((4, 16 * 5), dtype=np.int8))
    assert [ch.words for ch in comp.chunks] == [1] * 5
    c = CONFIGS["r5l8-wgt4"]   # acc 32 bits: the bank (4 words) is the limit
    assert c.max_chunk_words == 4
    comp = compile_linear(c, np.ones((5, 8 * 10), dtype=np.int8))
    assert [ch.words for ch in comp.chunks] == [4, 3, 3]   # balanced
    c = TernConfig(lanes=4, rows=1, act_depth=16, wgt_depth=64)   # act_depth is the limit
    assert c.max_chunk_words == 16
    c = TernConfig(lanes=64, acc_width=20)   # (2**19 - 1) // (128 * 64) = 63 words
    assert c.max_chunk_words == 63 == c.max_k_exact // 64


def test_tokens_are_grouped_by_act_depth():
    cfg = TernConfig(rows=4, lanes=8, act_depth=16, wgt_depth=8)
    rng = np.random.default_rng(5)
    q, w = rand_problem(rng, 23, 10, 8 * 5)   # 5 words: 3 tokens per LOAD_ACT
    comp = compile_linear(cfg, w)
    D, prog, res = run_sim(comp, q)
    assert np.array_equal(D, torch_reference(q, w))
    loads = [decode(x) for x in prog.words if decode(x).op == Op.LOAD_ACT]
    assert [ld.b for ld in loads] == [15] * 7 + [10]   # 7 groups of 3 tokens, then 2
    assert len(prog.segments) == 8
    assert res.counters["busy"] == 23 * 5 * comp.tiles


def test_compiled_beats_are_each_tiles_words_in_stream_format():
    """Chunk c's beats are, tile by tile and word by word, the weight words ``W[tile rows, word
    lanes]`` (zero-padded) in the configured stream format (the format itself is checked against
    explicit loops in tests/test_formats.py)."""
    rng = np.random.default_rng(11)
    for rows, lanes, bus, fmt in [(16, 64, 16, "2bit"), (3, 5, 3, "base3"), (2, 7, 1, "base3"), (5, 3, 4, "2bit"),
                                  (1, 1, 1, "2bit"), (1, 1, 1, "base3"), (7, 9, 5, "base3")]:
        cfg = TernConfig(rows=rows, lanes=lanes, bus_bytes=bus, weight_format=fmt, acc_width=16)
        N, K = rows * 3 + 1, lanes * 4 + 2
        w = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
        comp = compile_linear(cfg, w)
        assert len(comp.chunks) == len(comp.beats) >= 1
        padded = np.zeros((comp.tiles * rows, comp.k_words * lanes), dtype=np.int8)
        padded[:N, :K] = w
        for ch, beats in zip(comp.chunks, comp.beats):
            words = [padded[t * rows:(t + 1) * rows, k * lanes:(k + 1) * lanes]
                     for t in range(comp.tiles) for k in range(ch.w0, ch.w1)]
            assert np.array_equal(beats, weight_words_to_stream(np.stack(words), cfg)), (rows, lanes, fmt)


def test_overflow_proof_accepts_exactly_the_safe_chunks():
    for lanes, acc in [(16, 13), (16, 20), (64, 15), (64, 32), (7, 12), (1, 9)]:
        cfg = TernConfig(lanes=lanes, acc_width=acc, wgt_depth=65536, act_depth=65536)
        safe = (2 ** (acc - 1) - 1) // (128 * lanes)
        assert safe >= 1
        assert prove_no_overflow(cfg, safe) == 128 * safe * lanes == worst_case_abs_sum(safe * lanes)
        with pytest.raises(OverflowProofError, match=f"does not fit a signed {acc}-bit accumulator"):
            prove_no_overflow(cfg, safe + 1)
        # the same bound as TernConfig.max_k_exact, computed independently
        assert safe * lanes <= cfg.max_k_exact < (safe + 1) * lanes


def test_the_proof_guards_a_real_overflow():
    """A split the proof rejects really wraps on the device: the sim's one-MATMUL result over
    ``safe + 1`` words differs from the exact sum for the adversarial input, while the compiled
    (proven) split is exact."""
    cfg = TernConfig(rows=2, lanes=16, acc_width=13, act_depth=16, wgt_depth=8)
    safe = cfg.max_chunk_words
    K = (safe + 1) * cfg.lanes
    q = np.full((1, K), -128, dtype=np.int8)
    w = np.stack([-np.ones(K), np.ones(K)]).astype(np.int8)   # sums +4096 and -4096: 13 bits hold -4096..4095
    exact = torch_reference(q, w)
    assert exact.tolist() == [[4096, -4096]]
    with pytest.raises(OverflowProofError):
        compile_linear(cfg, w, max_words=safe + 1)
    prog = linear_program(cfg, q, w)   # the unsplit program, which the compiler refuses to make
    res = simulate(cfg, prog)
    wrapped = outputs_to_matrix(cfg, res.outputs, 1, 2)
    assert wrapped.tolist() == [[-4096, -4096]]   # +4096 wrapped
    D, _, _ = run_sim(compile_linear(cfg, w), q)
    assert np.array_equal(D, exact)


def test_bad_input():
    cfg = TernConfig(rows=2, lanes=4)
    with pytest.raises(CompileError, match="ternary"):
        compile_linear(cfg, np.array([[2, 0], [0, 1]]))
    with pytest.raises(CompileError, match="integer"):
        compile_linear(cfg, np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(CompileError, match="2-D"):
        compile_linear(cfg, np.zeros((0, 3), dtype=np.int8))
    with pytest.raises(TypeError, match="TernConfig"):
        compile_linear("cfg", np.zeros((2, 2), dtype=np.int8))
    with pytest.raises(CompileError, match="wgt_depth"):
        compile_linear(cfg, np.zeros((2, 2), dtype=np.int8), max_words=cfg.wgt_depth + 1)
    comp = compile_linear(cfg, np.zeros((3, 5), dtype=np.int8))
    with pytest.raises(CompileError, match=r"\(tokens >= 1, 5\)"):
        comp.program(np.zeros((2, 4), dtype=np.int8))
    with pytest.raises(CompileError, match="int8"):
        comp.program(np.full((2, 5), 300))
    prog = comp.program(np.zeros((2, 5), dtype=np.int8))
    with pytest.raises(CompileError, match="result vectors"):
        comp.assemble(prog, np.zeros((1, cfg.rows)))


def test_weight_cache_compiles_each_projection_once():
    cfg = TernConfig(rows=4, lanes=8)
    rng = np.random.default_rng(2)
    a = rng.integers(-1, 2, size=(9, 20), dtype=np.int8)
    b = a.copy()
    b[3, 4] = (b[3, 4] + 2) % 3 - 1
    cache = WeightCache()
    ca = cache.get(cfg, torch.from_numpy(a))
    assert cache.get(cfg, a.copy()) is ca          # same content, another object: a hit
    assert cache.get(cfg, b) is not ca              # one weight differs: compiled again
    assert cache.get(cfg.replace(rows=2), a) is not ca   # another configuration
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 3)
    small = WeightCache(max_bytes=ca.nbytes)        # room for one: least recently used goes first
    small.get(cfg, a)
    small.get(cfg, b)
    assert len(small) == 1 and small.nbytes <= ca.nbytes
