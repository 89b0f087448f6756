"""Programs of real layer shapes for the simulator (benchmarks, estimator), built without the
ProgramBuilder's int64 reference so that 2B4T-sized layers are generated in well under a second.

The instruction sequence follows :func:`hw.program.linear_program`: activation word ``t*k_words + k``
holds ``q[t, k*L:(k+1)*L]`` (K zero-padded), one MATMUL per ``rows``-row tile of W over all tokens of
a LOAD_ACT. Because one LOAD_ACT may hold at most ``act_depth`` words, the tokens are split into
groups of ``floor(act_depth / k_words)`` tokens; each group reloads the activations and streams all
tiles again.
"""

from __future__ import annotations

import numpy as np

from hw.config import TernConfig
from hw.isa import load_act, matmul, sync
from hw.result import Streams

__all__ = ["BITNET_2B4T_LAYER", "bitlinear_streams", "layer_streams", "random_weight_beats",
           "tokens_per_group"]

#: The seven BitLinear projections of a microsoft/bitnet-b1.58-2B-4T decoder layer, (name, N, K):
#: hidden 2560, intermediate 6912, 20 query heads and 5 key/value heads of 128.
BITNET_2B4T_LAYER = (("q", 2560, 2560), ("k", 640, 2560), ("v", 640, 2560), ("o", 2560, 2560),
                     ("gate", 6912, 2560), ("up", 6912, 2560), ("down", 2560, 6912))


def tokens_per_group(config: TernConfig, K: int) -> int:
    """Tokens one LOAD_ACT can hold for a K-wide input: ``floor(act_depth / ceil(K / lanes))``."""
    kw = -(-K // config.lanes)
    if kw > config.wgt_depth:
        raise ValueError(f"K={K} needs {kw} weight words per MATMUL > wgt_depth={config.wgt_depth}")
    g = config.act_depth // kw
    if g < 1:
        raise ValueError(f"K={K} ({kw} words) does not fit act_depth={config.act_depth}")
    return g


def random_weight_beats(config: TernConfig, n_words: int, rng: np.random.Generator) -> np.ndarray:
    """``n_words`` words of uniformly random ternary weights as weight stream beats (valid bytes
    only; padding included), generated directly in the stream format."""
    B, bpw = config.bus_bytes, config.beats_per_word
    n = n_words * bpw * B
    if config.weight_format == "2bit":
        codes = rng.integers(0, 3, size=(n, 4), dtype=np.uint8)
        data = codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)
    else:
        data = rng.integers(0, 243, size=n, dtype=np.uint8)
    return data.reshape(n_words * bpw, B)


def bitlinear_streams(config: TernConfig, T: int, N: int, K: int, rng: np.random.Generator, *,
                      final_sync: bool = True) -> tuple[Streams, int]:
    """Streams of ``D = q @ W.T`` for random int8 ``q`` (T, K) and random ternary ``W`` (N, K).
    Returns the streams and the number of result vectors."""
    return layer_streams(config, T, [("x", N, K)], rng, final_sync=final_sync)


def layer_streams(config: TernConfig, T: int, shapes, rng: np.random.Generator, *,
                  final_sync: bool = True) -> tuple[Streams, int]:
    """One program running every projection in ``shapes`` ((name, N, K), ...) for ``T`` tokens, with
    random activations and weights. Returns the streams and the number of result vectors."""
    L, R = config.lanes, config.rows
    words, acts, wgts = [], [], []
    n_out = 0
    for _, N, K in shapes:
        kw = -(-K // L)
        tiles = -(-N // R)
        group = tokens_per_group(config, K)
        w_beats = random_weight_beats(config, tiles * kw, rng)
        for t0 in range(0, T, group):
            tg = min(group, T - t0)
            q = np.zeros((tg, kw * L), dtype=np.int8)
            q[:, :K] = rng.integers(-128, 128, size=(tg, K), dtype=np.int8)
            words.append(load_act(0, tg * kw).word)
            acts.append(q.reshape(tg * kw, L))
            for _ in range(tiles):
                words.append(matmul(0, kw, tg).word)
            wgts.append(w_beats)
            n_out += tiles * tg
    if final_sync:
        words.append(sync().word)
    return Streams(words, np.concatenate(acts), np.concatenate(wgts)), n_out
