"""Programs of real layer shapes for the simulator (benchmarks, estimator), built without the
ProgramBuilder's int64 reference so that 2B4T-sized layers are generated in well under a second.

Each projection is tiled by :class:`hw.tiling.Tiling` with one K chunk (as
:func:`hw.program.linear_program`): activation word ``t*k_words + k`` holds ``q[t, k*L:(k+1)*L]``
(K zero-padded), one MATMUL per ``rows``-row tile of W over all tokens of a LOAD_ACT. Because one
LOAD_ACT holds at most ``act_depth`` words, the tokens go in groups of
``config.tokens_per_group(k_words)``; each group reloads the activations and streams all tiles again.

The shapes are arguments: the model shapes live with the model configurations
(``sw.model.presets.layer_shapes``).
"""

from __future__ import annotations

import numpy as np

from hw.config import TernConfig
from hw.formats import CODECS
from hw.isa import sync
from hw.result import Streams
from hw.tiling import Tiling

__all__ = ["bitlinear_streams", "layer_streams", "random_weight_beats",
           "tokens_per_group"]

def tokens_per_group(config: TernConfig, K: int) -> int:
    """Tokens one LOAD_ACT can hold for a K-wide input (one K chunk): ``floor(act_depth / k_words)``.
    Raises :class:`ValueError` when K does not fit a weight bank or one token does not fit a LOAD_ACT."""
    tiling = Tiling.plan(config, 1, K)
    return tiling.group_tokens(tiling.chunks[0])


def random_weight_beats(config: TernConfig, n_words: int, rng: np.random.Generator) -> np.ndarray:
    """``n_words`` words of uniformly random ternary weights as weight stream beats (valid bytes
    only; padding included), generated directly in the stream format."""
    B, bpw = config.bus_bytes, config.beats_per_word
    n = n_words * bpw * B
    codec = CODECS[config.weight_format]
    if config.weight_format == "base3":   # the valid bytes 0..242 are the trit combinations: draw one
        data = rng.integers(0, 243, size=n, dtype=np.uint8)
    else:                                 # draw the codes (0..2) and pack them
        data = codec.pack_digits(rng.integers(0, 3, size=(n, codec.codes_per_byte), dtype=np.uint8))
    return data.reshape(n_words * bpw, B)


def bitlinear_streams(config: TernConfig, T: int, N: int, K: int, rng: np.random.Generator, *,
                      final_sync: bool = True) -> tuple[Streams, int]:
    """Streams of ``D = q @ W.T`` for random int8 ``q`` (T, K) and random ternary ``W`` (N, K).
    Returns the streams and the number of result vectors."""
    return layer_streams(config, T, [("x", N, K)], rng, final_sync=final_sync)


def layer_streams(config: TernConfig, T: int, shapes, rng: np.random.Generator | None, *,
                  final_sync: bool = True) -> tuple[Streams, int]:
    """One program running every projection in ``shapes`` ((name, N, K), ...) for ``T`` tokens, with
    random activations and weights. Returns the streams and the number of result vectors.

    ``rng=None``: the same program with all-zero activation and weight beats (for a run that needs
    only the streams' lengths, ``hw.sim.simulate(..., values=False)``), drawing no random number."""
    words, acts, wgts = [], [], []
    n_out = 0
    L, B = config.lanes, config.bus_bytes
    for _, N, K in shapes:
        tiling = Tiling.plan(config, N, K)
        (chunk,) = tiling.chunks
        segments = tiling.segments(T)
        n_words = tiling.tiles * tiling.k_words
        w_beats = (random_weight_beats(config, n_words, rng) if rng is not None else
                   np.zeros((n_words * config.beats_per_word, B), dtype=np.uint8))
        for seg in segments:
            if rng is not None:
                q = tiling.pad_activations(rng.integers(-128, 128, size=(seg.tokens, K), dtype=np.int8))
                acts.append(tiling.activation_words(q, chunk))
            else:
                acts.append(np.zeros((seg.tokens * chunk.words, L), dtype=np.int8))
            words.extend(tiling.segment_words(seg))
            wgts.append(w_beats)
        n_out += tiling.n_outputs(segments)
    if final_sync:
        words.append(sync().word)
    return Streams(words, np.concatenate(acts), np.concatenate(wgts)), n_out
