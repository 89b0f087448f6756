"""hw.tiling: padding, K chunks, token groups, word orders and the reassembly of D, checked against
explicit index loops written from the documented layout."""

import numpy as np
import pytest

from hw.config import TernConfig
from hw.isa import Op, decode
from hw.tiling import Chunk, Segment, Tiling, TilingError, assemble, split_k, tile_words


def test_split_k_is_balanced():
    assert split_k(10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert split_k(3, 8) == [(0, 3)]
    for kw in range(1, 40):
        for mw in range(1, 12):
            spans = split_k(kw, mw)
            assert len(spans) == -(-kw // mw)
            assert spans[0][0] == 0 and spans[-1][1] == kw
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            sizes = [b - a for a, b in spans]
            assert max(sizes) <= mw and max(sizes) - min(sizes) <= 1
    with pytest.raises(TilingError):
        split_k(0, 4)


def test_geometry_asks_the_config():
    cfg = TernConfig(rows=3, lanes=5, act_depth=32, wgt_depth=8)
    t = Tiling.plan(cfg, 7, 33)
    assert (t.k_words, t.tiles) == (7, 3) == (cfg.k_words(33), cfg.n_tiles(7))
    assert t.chunks == (Chunk(0, 7),)
    assert t.group_tokens(t.chunks[0]) == 32 // 7 == cfg.tokens_per_group(7)
    split = Tiling.plan(cfg, 7, 33, max_words=3)
    assert [(c.w0, c.w1) for c in split.chunks] == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(TilingError, match="wgt_depth=8"):
        Tiling.plan(cfg, 7, 5 * 9)                      # 9 words: no bank holds them unsplit
    with pytest.raises(TilingError, match="act_depth=16"):
        Tiling.plan(TernConfig(lanes=1, act_depth=16, wgt_depth=32), 1, 17).segments(1)
    with pytest.raises(TilingError, match="positive"):
        Tiling.plan(cfg, 0, 5)
    with pytest.raises(TypeError, match="TernConfig"):
        Tiling.plan({"rows": 3}, 1, 1)


def test_segments_cover_every_token_of_every_chunk_in_groups():
    cfg = TernConfig(rows=4, lanes=8, act_depth=16, wgt_depth=8)
    t = Tiling.plan(cfg, 10, 8 * 5, max_words=5)         # 5 words: 3 tokens per LOAD_ACT
    segs = t.segments(23)
    assert segs == tuple(Segment(0, t0, 3) for t0 in range(0, 21, 3)) + (Segment(0, 21, 2),)
    t2 = Tiling.plan(cfg, 10, 8 * 5, max_words=2)        # chunks of 2, 2, 1 words: 8, 8, 16 tokens
    segs = t2.segments(10)
    assert [(s.chunk, s.t0, s.tokens) for s in segs] == [(0, 0, 8), (0, 8, 2), (1, 0, 8), (1, 8, 2),
                                                          (2, 0, 10)]
    assert t2.n_outputs(segs) == t2.tiles * 3 * 10


def test_words_and_program_follow_the_documented_layout():
    rng = np.random.default_rng(3)
    cfg = TernConfig(rows=3, lanes=4, act_depth=16, wgt_depth=8)
    R, L = cfg.rows, cfg.lanes
    T, N, K = 5, 8, 4 * 5 + 1
    q = rng.integers(-128, 128, (T, K), dtype=np.int8)
    w = rng.integers(-1, 2, (N, K), dtype=np.int8)
    t = Tiling.plan(cfg, N, K, max_words=4)
    qp, wp = t.pad_activations(q), t.pad_weights(w)
    assert qp.dtype == np.int8 and qp.shape == (T, t.k_words * L) and not qp[:, K:].any()
    assert wp.shape == (t.tiles * R, t.k_words * L) and not wp[N:].any() and not wp[:, K:].any()
    for ci, ch in enumerate(t.chunks):
        acts = t.activation_words(qp[1:4], ch)           # tokens 1..3 of a group
        for tok in range(3):
            for k in range(ch.words):
                assert np.array_equal(acts[tok * ch.words + k],
                                      qp[1 + tok, (ch.w0 + k) * L:(ch.w0 + k + 1) * L])
        words = t.weight_words(wp, ch)
        for i in range(t.tiles):
            assert np.array_equal(t.weight_tile(wp, i, ch), wp[i * R:(i + 1) * R, ch.w0 * L:ch.w1 * L])
            for k in range(ch.words):
                assert np.array_equal(words[i * ch.words + k],
                                      wp[i * R:(i + 1) * R, (ch.w0 + k) * L:(ch.w0 + k + 1) * L])
    seg = t.segments(T)[0]
    instrs = [decode(x) for x in t.segment_words(seg, act_addr=2)]
    ch = t.chunks[seg.chunk]
    assert [(i.op, i.a, i.b) for i in instrs[:1]] == [(Op.LOAD_ACT, 2, seg.tokens * ch.words)]
    assert [(i.op, i.a, i.b, i.c) for i in instrs[1:]] == [(Op.MATMUL, 2, ch.words, seg.tokens)] * t.tiles


def test_assemble_adds_chunk_partial_sums_into_d():
    """Reassembly against an explicit loop: output vector ``(segment, tile i, token j)`` row ``r``
    is the partial sum of token ``t0 + j``, feature ``i * rows + r``."""
    rng = np.random.default_rng(8)
    cfg = TernConfig(rows=3, lanes=4, act_depth=16, wgt_depth=8)
    t = Tiling.plan(cfg, 7, 4 * 6, max_words=2)
    T = 9
    segs = t.segments(T)
    out = rng.integers(-1000, 1000, (t.n_outputs(segs), cfg.rows))
    ref = np.zeros((T, t.tiles * cfg.rows), dtype=np.int64)
    n = 0
    for s in segs:
        for i in range(t.tiles):
            for j in range(s.tokens):
                ref[s.t0 + j, i * cfg.rows:(i + 1) * cfg.rows] += out[n]
                n += 1
    D = t.assemble(out, T, segs)
    assert D.dtype == np.int64 and np.array_equal(D, ref[:, :7])
    assert np.array_equal(assemble(cfg, 7, T, segs, out), D)
    with pytest.raises(TilingError, match="result vectors"):
        assemble(cfg, 7, T, segs, out[:-1])


def test_tile_words_against_loops():
    w = np.arange(2 * 3 * 4 * 5).reshape(2 * 3, 4 * 5)    # 2 tiles of 3 rows, 4 words of 5 lanes
    words = tile_words(w, 3, 5)
    assert words.shape == (2 * 4, 3, 5)
    for i in range(2):
        for k in range(4):
            for r in range(3):
                for lane in range(5):
                    assert words[i * 4 + k, r, lane] == w[i * 3 + r, k * 5 + lane]
