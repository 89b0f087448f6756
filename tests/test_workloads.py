"""hw.workloads: random layer programs have linear_program's layout (per token group), valid weight
bytes, and run the model shapes of sw.model.presets (``hw`` takes shapes as arguments; only the test
brings the two together)."""

import numpy as np
import pytest

from hw.config import TernConfig
from hw.formats import BYTE_VALID, stream_to_weight_words
from hw.isa import Op, decode
from hw.program import linear_program
from hw.workloads import bitlinear_streams, layer_streams, random_weight_beats, tokens_per_group
from sw.model.presets import layer_shapes


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_one_group_is_linear_program(fmt):
    """A projection whose tokens fit one LOAD_ACT: the streams are linear_program's for the same
    activations and weights (read back from the streams)."""
    cfg = TernConfig(rows=3, lanes=5, bus_bytes=3, act_depth=32, wgt_depth=8, weight_format=fmt)
    T, N, K = 4, 7, 5 * 6 + 2                            # 7 words: 4 tokens per LOAD_ACT
    st, n_out = bitlinear_streams(cfg, T, N, K, np.random.default_rng(3))
    kw, tiles = cfg.k_words(K), cfg.n_tiles(N)
    q = st.act_beats.reshape(T, kw * cfg.lanes)
    assert not q[:, K:].any()                             # K zero-padded
    wds = stream_to_weight_words(st.wgt_beats, cfg)       # (tiles * kw, R, L)
    w = wds.reshape(tiles, kw, cfg.rows, cfg.lanes).transpose(0, 2, 1, 3).reshape(tiles * cfg.rows, -1)
    prog = linear_program(cfg, q[:, :K], w[:N, :K])
    assert list(st.words) == prog.words and n_out == len(prog.expected)
    assert np.array_equal(st.act_beats, prog.act_beats)
    # the weights are random in the padding too; the payload words are the program's
    assert len(wds) == len(prog.wgt_words) == tiles * kw
    real = np.zeros_like(w)
    real[:N, :K] = 1
    mask = real.reshape(tiles, cfg.rows, kw, cfg.lanes).transpose(0, 2, 1, 3).reshape(wds.shape) == 1
    assert np.array_equal(wds[mask], prog.wgt_words[mask])


def test_tokens_go_in_groups_that_reload_and_restream():
    cfg = TernConfig(rows=4, lanes=8, act_depth=16, wgt_depth=8)
    K = 8 * 5                                             # 5 words: 3 tokens per group
    assert tokens_per_group(cfg, K) == 3 == cfg.tokens_per_group(5)
    st, n_out = layer_streams(cfg, 8, [("x", 9, K)], np.random.default_rng(0))
    ops = [decode(x) for x in st.words]
    loads = [i.b for i in ops if i.op == Op.LOAD_ACT]
    assert loads == [15, 15, 10]
    mm = [(i.b, i.c) for i in ops if i.op == Op.MATMUL]
    assert mm == [(5, 3)] * 3 + [(5, 3)] * 3 + [(5, 2)] * 3
    assert ops[-1].op == Op.SYNC and n_out == 3 * 8
    bpw = cfg.beats_per_word
    assert len(st.wgt_beats) == 3 * 3 * 5 * bpw           # every group streams all tiles again
    one = st.wgt_beats[:3 * 5 * bpw]
    assert np.array_equal(st.wgt_beats, np.concatenate([one] * 3))
    with pytest.raises(ValueError, match="wgt_depth=8"):
        tokens_per_group(cfg, 8 * 9)
    with pytest.raises(ValueError, match="act_depth=16"):
        tokens_per_group(TernConfig(lanes=1, act_depth=16, wgt_depth=32), 17)


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_random_weight_beats_are_valid_and_uniform(fmt):
    cfg = TernConfig(rows=4, lanes=16, bus_bytes=8, weight_format=fmt)
    beats = random_weight_beats(cfg, 50, np.random.default_rng(1))
    assert beats.dtype == np.uint8 and beats.shape == (50 * cfg.beats_per_word, cfg.bus_bytes)
    assert BYTE_VALID[fmt][beats].all()
    w = stream_to_weight_words(beats, cfg)
    counts = np.bincount(w.reshape(-1) + 1, minlength=3) / w.size
    assert np.allclose(counts, 1 / 3, atol=0.02)
    assert np.array_equal(beats, random_weight_beats(cfg, 50, np.random.default_rng(1)))


def test_model_shapes_come_from_the_presets():
    cfg = TernConfig()
    shapes = layer_shapes("2b4t")
    assert [s[0] for s in shapes] == ["q", "k", "v", "o", "gate", "up", "down"]
    st, n_out = layer_streams(cfg, 1, shapes, np.random.default_rng(0), final_sync=False)
    assert n_out == sum(cfg.n_tiles(N) for _, N, _ in shapes)
    assert sum(1 for x in st.words if decode(x).op == Op.LOAD_ACT) == len(shapes)
    assert len(st.act_beats) == sum(cfg.k_words(K) for *_, K in shapes)
