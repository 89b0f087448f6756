"""How a projection ``D = q @ W.T`` maps onto the tern core: the one tiler (``docs/DRIVER.md``).

``q`` is (T, K) int8 activations, ``W`` (N, K) ternary weights. For a configuration (rows ``R``, lanes
``L``) a :class:`Tiling` fixes:

* **padding**: K is zero-padded to ``k_words = config.k_words(K)`` words of ``L`` features, N to
  ``tiles = config.n_tiles(N)`` tiles of ``R`` rows (padding weights and activations are 0, padded
  rows are dropped when ``D`` is reassembled);
* **K chunks**: word ranges ``[w0, w1)`` of K, one MATMUL each: all of K (one chunk, which must fit a
  weight bank) or, with ``max_words``, :func:`split_k`'s balanced split (the compiler passes
  ``config.max_chunk_words``);
* **token groups**: per chunk, the tokens go in groups of at most ``config.tokens_per_group(words)``
  (one LOAD_ACT each);
* **activation words**: word ``t * words + k`` of a group's LOAD_ACT holds
  ``q[t0 + t, (w0 + k) * L : (w0 + k + 1) * L]``;
* **weight words**: per chunk, tile by tile, word by word; word ``(i, k)`` is
  ``W[i*R:(i+1)*R, (w0 + k) * L : (w0 + k + 1) * L]`` (the stream order of tile ``i``'s MATMUL);
* **program**: per chunk, per group (a :class:`Segment`): ``LOAD_ACT act_addr, tokens * words``, then
  one ``MATMUL act_addr, words, tokens`` per tile;
* **outputs**: segment by segment, tile by tile, token by token; :func:`assemble` adds the chunks'
  partial sums into ``D`` (T, N) in int64.

:func:`hw.program.linear_program` (one chunk, one group), :mod:`hw.workloads` (one chunk) and the
driver's compiler (``sw.driver.compiler``: chunks and groups) are built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hw.config import TernConfig
from hw.isa import load_act, matmul

__all__ = ["TilingError", "Chunk", "Segment", "Tiling", "split_k", "tile_words", "assemble"]


class TilingError(ValueError):
    """A projection that cannot be tiled for the configuration (the message says why)."""


@dataclass(frozen=True)
class Chunk:
    """Words ``w0 .. w1-1`` of K (features ``w0*lanes .. w1*lanes - 1``, the tail zero-padded)."""
    w0: int
    w1: int

    @property
    def words(self) -> int:
        return self.w1 - self.w0


class Segment(NamedTuple):
    """One LOAD_ACT group of one chunk: tokens ``t0 .. t0 + tokens - 1`` of chunk ``chunk`` (index)."""
    chunk: int
    t0: int
    tokens: int


def split_k(k_words: int, max_words: int) -> list[tuple[int, int]]:
    """Balanced split of ``k_words`` words into ``ceil(k_words / max_words)`` chunks ``(w0, w1)``
    (word ranges) whose sizes differ by at most one."""
    if k_words < 1 or max_words < 1:
        raise TilingError(f"cannot split {k_words} words into chunks of at most {max_words}")
    n = -(-k_words // max_words)
    base, extra = divmod(k_words, n)
    out, w0 = [], 0
    for i in range(n):
        w1 = w0 + base + (1 if i < extra else 0)
        out.append((w0, w1))
        w0 = w1
    return out


def tile_words(w: np.ndarray, rows: int, lanes: int) -> np.ndarray:
    """Weight rows ``w`` (tiles * rows, words * lanes) -> the weight words (tiles * words, rows,
    lanes) their MATMULs stream, tile by tile, word by word: word ``(i, k)`` is
    ``w[i*rows:(i+1)*rows, k*lanes:(k+1)*lanes]``."""
    tiles, n = w.shape[0] // rows, w.shape[1] // lanes
    words = w.reshape(tiles, rows, n, lanes).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(words).reshape(tiles * n, rows, lanes)


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TilingError(f"{name}={value!r} must be a positive integer")
    return int(value)


@dataclass(frozen=True)
class Tiling:
    """The tiling of an ``(N, K)`` projection on ``config``; see the module docstring. Build it with
    :meth:`plan`."""
    config: TernConfig
    N: int
    K: int
    chunks: tuple

    @classmethod
    def plan(cls, config: TernConfig, N: int, K: int, max_words: int | None = None) -> "Tiling":
        """Tile an ``(N, K)`` projection. ``max_words=None``: one chunk of all of K (it must fit a
        weight bank); otherwise :func:`split_k` into chunks of at most ``max_words`` words."""
        if not isinstance(config, TernConfig):
            raise TypeError(f"Tiling: config must be a hw.config.TernConfig, not {config!r}")
        N, K = _positive("N", N), _positive("K", K)
        kw = config.k_words(K)
        if max_words is None:
            if kw > config.wgt_depth:
                raise TilingError(f"K={K} needs {kw} weight words per MATMUL > "
                                  f"wgt_depth={config.wgt_depth}")
            spans = [(0, kw)]
        else:
            spans = split_k(kw, _positive("max_words", max_words))
        return cls(config, N, K, tuple(Chunk(a, b) for a, b in spans))

    # -- geometry --------------------------------------------------------------------------------

    @property
    def k_words(self) -> int:
        """Words that cover K (K zero-padded to ``lanes``)."""
        return self.config.k_words(self.K)

    @property
    def tiles(self) -> int:
        """``rows``-row tiles that cover N (N zero-padded to ``rows``)."""
        return self.config.n_tiles(self.N)

    def group_tokens(self, chunk: Chunk) -> int:
        """Tokens per LOAD_ACT of ``chunk``: ``config.tokens_per_group(chunk.words)`` (at least 1)."""
        g = self.config.tokens_per_group(chunk.words)
        if g < 1:
            raise TilingError(f"K={self.K} ({chunk.words} words) does not fit "
                              f"act_depth={self.config.act_depth}")
        return g

    def segments(self, T: int) -> tuple:
        """The :class:`Segment` s of a ``T``-token call, in program (and output) order."""
        T = _positive("T", T)
        out = []
        for ci, ch in enumerate(self.chunks):
            g = self.group_tokens(ch)
            out.extend(Segment(ci, t0, min(g, T - t0)) for t0 in range(0, T, g))
        return tuple(out)

    # -- data ------------------------------------------------------------------------------------

    def pad_activations(self, q, dtype=None) -> np.ndarray:
        """``q`` (T, K) zero-padded to (T, ``k_words * lanes``), of ``dtype`` (default ``q``'s)."""
        q = np.asarray(q)
        kp = self.k_words * self.config.lanes
        if kp == self.K and (dtype is None or q.dtype == dtype):
            return q
        qp = np.zeros((q.shape[0], kp), dtype=q.dtype if dtype is None else dtype)
        qp[:, :self.K] = q
        return qp

    def activation_words(self, qp: np.ndarray, chunk: Chunk) -> np.ndarray:
        """The LOAD_ACT words (tokens * chunk.words, lanes) of the padded activation rows ``qp`` of
        one group: word ``t * words + k`` is ``qp[t, (w0 + k) * lanes : (w0 + k + 1) * lanes]``."""
        L = self.config.lanes
        return qp[:, chunk.w0 * L:chunk.w1 * L].reshape(qp.shape[0] * chunk.words, L)

    def pad_weights(self, w, dtype=np.int8) -> np.ndarray:
        """``w`` (N, K) zero-padded to (``tiles * rows``, ``k_words * lanes``)."""
        wp = np.zeros((self.tiles * self.config.rows, self.k_words * self.config.lanes), dtype=dtype)
        wp[:self.N, :self.K] = w
        return wp

    def weight_tile(self, wp: np.ndarray, tile: int, chunk: Chunk) -> np.ndarray:
        """Tile ``tile`` of ``chunk`` of the padded weights: (rows, chunk.words * lanes)."""
        R, L = self.config.rows, self.config.lanes
        return wp[tile * R:(tile + 1) * R, chunk.w0 * L:chunk.w1 * L]

    def weight_words(self, wp: np.ndarray, chunk: Chunk) -> np.ndarray:
        """The weight words (tiles * chunk.words, rows, lanes) of ``chunk`` in stream order: tile by
        tile, word by word (:func:`tile_words`)."""
        L = self.config.lanes
        return tile_words(wp[:, chunk.w0 * L:chunk.w1 * L], self.config.rows, L)

    # -- program ---------------------------------------------------------------------------------

    def segment_words(self, seg: Segment, act_addr: int = 0) -> list:
        """The instruction words of one segment: its LOAD_ACT, then one MATMUL per tile."""
        words = self.chunks[seg.chunk].words
        return [load_act(act_addr, seg.tokens * words).word] + \
            [matmul(act_addr, words, seg.tokens).word] * self.tiles

    def n_outputs(self, segments) -> int:
        """Result vectors of ``segments``: ``tiles`` per token of each."""
        return self.tiles * sum(s.tokens for s in segments)

    def assemble(self, outputs, T: int, segments) -> np.ndarray:
        """``D`` (T, N) int64 from the result vectors of ``segments``; see :func:`assemble`."""
        return assemble(self.config, self.N, T, segments, outputs)


def assemble(config: TernConfig, N: int, T: int, segments, outputs) -> np.ndarray:
    """``D`` (T, N) int64 from result vectors in output order (segment by segment, tile by tile,
    token by token): each segment's ``(tiles * tokens, rows)`` vectors are its tokens' partial sums
    of N (padded rows dropped), added into their rows of ``D`` in int64. ``outputs`` must be exactly
    the segments' ``(tiles * tokens, rows)`` vectors."""
    R, tiles = config.rows, config.n_tiles(N)
    out = np.asarray(outputs, dtype=np.int64)
    expected = (tiles * sum(s[2] for s in segments), R)
    if out.shape != expected:
        raise TilingError(f"assemble: expected {expected} result vectors, got {out.shape}")
    D = np.zeros((T, N), dtype=np.int64)
    off = 0
    for _, t0, tg in segments:
        n = tiles * tg
        part = out[off:off + n].reshape(tiles, tg, R).transpose(1, 0, 2).reshape(tg, tiles * R)
        D[t0:t0 + tg] += part[:, :N]
        off += n
    return D
