"""Compiler: a BitLinear ``D = q @ T^T`` of any shape -> tern core programs (``docs/DRIVER.md``).

A projection with ``N`` output features and ``K`` input features is compiled once per configuration
(:func:`compile_linear`) into a :class:`CompiledLinear`:

* ``K`` is zero-padded to whole ``lanes`` words (``k_words = ceil(K / lanes)``) and ``N`` to whole
  ``rows`` tiles (``tiles = ceil(N / rows)``); padding weights are 0, so padded lanes add nothing and
  padded rows are dropped on the host.
* ``K`` is split into **chunks** of at most :func:`max_chunk_words` words, the smallest of

  - ``wgt_depth`` (one MATMUL's words must fit one weight bank),
  - ``act_depth`` (a LOAD_ACT must hold at least one token of the chunk),
  - ``floor(max_exact_k / lanes)``: the accumulator proof below;

  the chunks are balanced (their word counts differ by at most one). Each chunk computes a partial
  ``D`` on the device; the host adds the partial sums in int64.
* Accumulator proof (:func:`prove_no_overflow`): an accumulator sums ``k_words * lanes`` products
  ``q * t`` with ``q`` int8 in ``[-128, 127]`` and ``t`` in ``{-1, 0, +1}``, so
  ``|partial sum| <= 128 * k_words * lanes`` at every step (``-128 * -1 = +128`` is the largest product,
  ``-128 * +1`` the smallest). The chunk is accepted only if ``128 * k_words * lanes <=
  2**(acc_width-1) - 1``; then every intermediate and final value of every accumulator fits the
  signed ``acc_width``-bit register, no wrap can occur, and the device's partial sums are the exact
  integers. :func:`compile_linear` checks every chunk it makes with it, so an unsafe split cannot be
  compiled.
* The weights of each chunk are packed once, tile by tile, word by word, into the configured weight
  stream format (:func:`hw.formats.weight_words_to_stream`).

At run time :meth:`CompiledLinear.program` makes one program for ``q`` (``tokens`` x ``K`` int8):
for every chunk, the tokens go in **groups** of at most ``floor(act_depth / chunk_words)`` (one
LOAD_ACT each), and every group streams all tiles of the chunk (one MATMUL per tile, all tokens of the
group), then a final SYNC. :meth:`CompiledLinear.assemble` turns the result vectors back into ``D``
(tokens x N, int64).

:class:`WeightCache` keeps compiled projections keyed by (configuration, shape, SHA-1 of the ternary
weights), so each projection of a model is compiled once, whatever object holds its weights (the
lazily generated layers of the random presets included).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from hw.config import TernConfig
from hw.formats import weight_words_to_stream
from hw.isa import load_act, matmul, sync

__all__ = ["CompileError", "OverflowProofError", "worst_case_abs_sum", "acc_limit", "prove_no_overflow",
           "max_chunk_words", "split_k", "Chunk", "CompiledLinear", "CallProgram", "compile_linear",
           "weight_fingerprint", "WeightCache"]


class CompileError(ValueError):
    """A projection that cannot be compiled for the configuration (the message says why)."""


class OverflowProofError(CompileError):
    """A K chunk whose worst-case dot product does not fit the accumulator."""


# -- the accumulator proof ----------------------------------------------------------------------------

def worst_case_abs_sum(k: int) -> int:
    """Largest ``|sum_k q_k * t_k|`` over int8 ``q`` (-128..127) and ternary ``t``: ``128 * k``
    (every term ``-128 * -1``, or ``-128 * +1``)."""
    return 128 * int(k)


def acc_limit(config: TernConfig) -> int:
    """Largest magnitude a signed ``acc_width``-bit accumulator holds on both sides:
    ``2**(acc_width-1) - 1``."""
    return (1 << (config.acc_width - 1)) - 1


def prove_no_overflow(config: TernConfig, k_words: int) -> int:
    """Check that a MATMUL over ``k_words`` words (``K_chunk = k_words * lanes`` lanes, padding
    included) can never overflow an accumulator, for any int8 activations and ternary weights.

    Every partial sum of a token's accumulation is a sum of at most ``K_chunk`` terms of magnitude
    <= 128, so ``|partial| <= worst_case_abs_sum(K_chunk) = 128 * K_chunk``; the signed
    ``acc_width``-bit accumulator holds ``[-2**(A-1), 2**(A-1) - 1]``. Returns the bound
    ``128 * K_chunk`` when it is ``<= 2**(A-1) - 1``; raises :class:`OverflowProofError` otherwise."""
    if isinstance(k_words, bool) or not isinstance(k_words, (int, np.integer)) or k_words < 1:
        raise CompileError(f"k_words={k_words!r} must be a positive integer")
    k_chunk = int(k_words) * config.lanes
    bound = worst_case_abs_sum(k_chunk)
    limit = acc_limit(config)
    if bound > limit:
        raise OverflowProofError(
            f"a K chunk of {k_words} words ({k_chunk} lanes) can reach |sum| = 128*{k_chunk} = {bound}, "
            f"which does not fit a signed {config.acc_width}-bit accumulator (max {limit})")
    return bound


def max_chunk_words(config: TernConfig) -> int:
    """Most words one chunk may have: ``min(wgt_depth, act_depth, floor((2**(A-1)-1) / (128 * lanes)))``.

    Raises :class:`CompileError` if not even one word fits the accumulator (impossible for a valid
    :class:`TernConfig`, whose ``acc_width >= dot_width``, but checked rather than assumed)."""
    by_acc = acc_limit(config) // (128 * config.lanes)
    if by_acc < 1:
        raise CompileError(f"acc_width={config.acc_width} cannot hold one {config.lanes}-lane dot product "
                           f"(needs |sum| <= {128 * config.lanes})")
    return min(config.wgt_depth, config.act_depth, by_acc)


def split_k(k_words: int, max_words: int) -> list[tuple[int, int]]:
    """Balanced split of ``k_words`` words into ``ceil(k_words / max_words)`` chunks ``(w0, w1)``
    (word ranges) whose sizes differ by at most one."""
    if k_words < 1 or max_words < 1:
        raise CompileError(f"cannot split {k_words} words into chunks of at most {max_words}")
    n = -(-k_words // max_words)
    base, extra = divmod(k_words, n)
    out, w0 = [], 0
    for i in range(n):
        w1 = w0 + base + (1 if i < extra else 0)
        out.append((w0, w1))
        w0 = w1
    return out


def weight_fingerprint(t: np.ndarray) -> str:
    """SHA-1 of the shape and bytes of an int8 weight matrix (the cache key of its compiled form)."""
    t = np.ascontiguousarray(t)
    h = hashlib.sha1(f"{t.shape}{t.dtype.str}".encode())
    h.update(memoryview(t).cast("B"))
    return h.hexdigest()


# -- compiled projection ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    """Words ``w0 .. w1-1`` of K (features ``w0*lanes .. w1*lanes - 1``, the tail zero-padded)."""
    w0: int
    w1: int

    @property
    def words(self) -> int:
        return self.w1 - self.w0


@dataclass
class CallProgram:
    """One program for one call: instruction words, activation and weight beats, and the layout of
    its result vectors (``segments``: ``(chunk index, first token, tokens)`` per LOAD_ACT group, in
    output order; each segment yields ``tiles * tokens`` vectors, tile by tile, token by token)."""
    words: list
    act_beats: np.ndarray
    wgt_beats: np.ndarray
    segments: list
    n_outputs: int
    tokens: int

    @property
    def matmul_steps(self) -> int:
        """Ideal PE issue cycles of this program."""
        return sum(int(w >> 24 & 0xFFFFF) * int(w >> 44 & 0xFFFFF) for w in self.words if w & 0xF == 2)


@dataclass
class CompiledLinear:
    """A projection ``(N, K)`` compiled for ``config``; see the module docstring."""
    config: TernConfig
    N: int
    K: int
    k_words: int
    tiles: int
    chunks: tuple
    beats: tuple          # per chunk: uint8 (tiles * chunk.words * beats_per_word, bus_bytes)
    bounds: tuple         # per chunk: the proven worst-case |sum| (128 * chunk words * lanes)
    fingerprint: str = ""
    name: str = ""
    nbytes: int = field(init=False)

    def __post_init__(self):
        self.nbytes = int(sum(b.nbytes for b in self.beats))

    def group_tokens(self, chunk: Chunk) -> int:
        """Tokens per LOAD_ACT for ``chunk``: ``floor(act_depth / chunk.words)`` (>= 1)."""
        return self.config.act_depth // chunk.words

    def program(self, q) -> CallProgram:
        """The program that computes the partial ``D`` of every chunk for ``q`` (tokens x K int8)."""
        cfg = self.config
        L = cfg.lanes
        q = np.asarray(q)
        if q.ndim != 2 or q.shape[1] != self.K or q.shape[0] < 1:
            raise CompileError(f"{self.name or 'projection'}: activations must be (tokens >= 1, {self.K}), "
                               f"not {q.shape}")
        if q.dtype != np.int8:
            if not np.issubdtype(q.dtype, np.integer) or q.min() < -128 or q.max() > 127:
                raise CompileError(f"{self.name or 'projection'}: activations must be int8")
            q = q.astype(np.int8)
        T = q.shape[0]
        kp = self.k_words * L
        if kp != self.K:
            qp = np.zeros((T, kp), dtype=np.int8)
            qp[:, :self.K] = q
        else:
            qp = q
        words, acts, wgts, segments = [], [], [], []
        n_out = 0
        for ci, ch in enumerate(self.chunks):
            g = self.group_tokens(ch)
            qc = qp[:, ch.w0 * L:ch.w1 * L]
            for t0 in range(0, T, g):
                tg = min(g, T - t0)
                words.append(load_act(0, tg * ch.words).word)
                acts.append(qc[t0:t0 + tg].reshape(tg * ch.words, L))
                mm = matmul(0, ch.words, tg).word
                words.extend([mm] * self.tiles)
                wgts.append(self.beats[ci])
                segments.append((ci, t0, tg))
                n_out += self.tiles * tg
        words.append(sync().word)
        act = np.concatenate(acts) if len(acts) > 1 else np.ascontiguousarray(acts[0])
        wgt = np.concatenate(wgts) if len(wgts) > 1 else wgts[0]
        return CallProgram(words, act, wgt, segments, n_out, T)

    def assemble(self, prog: CallProgram, outputs) -> np.ndarray:
        """``D`` (tokens x N, int64): the chunks' partial sums added on the host in int64."""
        R = self.config.rows
        out = np.asarray(outputs, dtype=np.int64)
        if out.shape != (prog.n_outputs, R):
            raise CompileError(f"{self.name or 'projection'}: expected {(prog.n_outputs, R)} result "
                               f"vectors, the backend returned {out.shape}")
        D = np.zeros((prog.tokens, self.N), dtype=np.int64)
        off = 0
        for _, t0, tg in prog.segments:
            n = self.tiles * tg
            part = out[off:off + n].reshape(self.tiles, tg, R).transpose(1, 0, 2).reshape(tg, self.tiles * R)
            D[t0:t0 + tg] += part[:, :self.N]
            off += n
        return D


def _as_ternary(T) -> np.ndarray:
    try:
        import torch
        if isinstance(T, torch.Tensor):
            T = T.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    t = np.asarray(T)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise CompileError(f"weights must be a non-empty 2-D (N, K) matrix, not shape {t.shape}")
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise CompileError(f"weights must be an integer (ternary) matrix, not {t.dtype}")
    if t.dtype != np.int8:
        if t.min() < -1 or t.max() > 1:
            raise CompileError("weights must be ternary (-1, 0, +1)")
        t = t.astype(np.int8)
    return np.ascontiguousarray(t)


def compile_linear(config: TernConfig, T, *, name: str = "", max_words: int | None = None,
                   fingerprint: str | None = None) -> CompiledLinear:
    """Compile the ternary weights ``T`` (N, K) for ``config``.

    ``max_words`` caps the words per K chunk (default and upper bound: :func:`max_chunk_words`,
    except that a larger value is checked by :func:`prove_no_overflow` and rejected when unsafe
    rather than silently reduced)."""
    if not isinstance(config, TernConfig):
        raise TypeError(f"compile_linear: config must be a hw.config.TernConfig, not {config!r}")
    t = _as_ternary(T)
    label = name or "projection"
    if t.min() < -1 or t.max() > 1:
        raise CompileError(f"{label}: weights must be ternary (-1, 0, +1), found "
                           f"{int(t.min()) if t.min() < -1 else int(t.max())}")
    N, K = t.shape
    R, L = config.rows, config.lanes
    kw = -(-K // L)
    limit = max_chunk_words(config)
    if max_words is None:
        max_words = limit
    elif isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise CompileError(f"{label}: max_words={max_words!r} must be a positive integer")
    else:
        if max_words > config.wgt_depth:
            raise CompileError(f"{label}: max_words={max_words} exceeds wgt_depth={config.wgt_depth}")
        if max_words > config.act_depth:
            raise CompileError(f"{label}: max_words={max_words} exceeds act_depth={config.act_depth}")
    chunks = tuple(Chunk(a, b) for a, b in split_k(kw, max_words))
    bounds = tuple(prove_no_overflow(config, ch.words) for ch in chunks)   # the proof, per chunk
    tiles = -(-N // R)
    tp = np.zeros((tiles * R, kw * L), dtype=np.int8)
    tp[:N, :K] = t
    beats = []
    for ch in chunks:
        # (tiles, R, words, L) -> (tiles, words, R, L): the stream order of each tile's MATMUL
        w = tp[:, ch.w0 * L:ch.w1 * L].reshape(tiles, R, ch.words, L).transpose(0, 2, 1, 3)
        w = np.ascontiguousarray(w).reshape(tiles * ch.words, R, L)
        b = weight_words_to_stream(w, config)
        b.setflags(write=False)
        beats.append(b)
    return CompiledLinear(config=config, N=N, K=K, k_words=kw, tiles=tiles, chunks=chunks,
                          beats=tuple(beats), bounds=bounds,
                          fingerprint=fingerprint if fingerprint is not None else weight_fingerprint(t),
                          name=name)


class WeightCache:
    """Compiled projections keyed by ``(config, shape, SHA-1 of the weights, max_words)``, least
    recently used first out once ``max_bytes`` of packed streams are held (default 4 GiB)."""

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._items)

    def clear(self):
        self._items.clear()
        self.nbytes = 0

    def get(self, config: TernConfig, T, *, name: str = "", max_words: int | None = None) -> CompiledLinear:
        t = _as_ternary(T)
        fp = weight_fingerprint(t)
        key = (config, t.shape, fp, max_words)
        c = self._items.get(key)
        if c is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return c
        self.misses += 1
        c = compile_linear(config, t, name=name, max_words=max_words, fingerprint=fp)
        self._items[key] = c
        self.nbytes += c.nbytes
        while self.nbytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes
        return c
