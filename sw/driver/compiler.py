"""Compiler: a BitLinear ``D = q @ T^T`` of any shape -> tern core programs (``docs/DRIVER.md``).

A projection with ``N`` output features and ``K`` input features is compiled once per configuration
(:func:`compile_linear`) into a :class:`CompiledLinear`. The layout is the one tiler's,
:class:`hw.tiling.Tiling`:

* ``K`` is zero-padded to whole ``lanes`` words (``k_words = config.k_words(K)``) and ``N`` to whole
  ``rows`` tiles (``tiles = config.n_tiles(N)``); padding weights are 0, so padded lanes add nothing
  and padded rows are dropped on the host.
* ``K`` is split into **chunks** of at most ``config.max_chunk_words`` words, the smallest of

  - ``wgt_depth`` (one MATMUL's words must fit one weight bank),
  - ``act_depth`` (a LOAD_ACT must hold at least one token of the chunk),
  - ``floor(config.max_k_exact / lanes)``: the accumulator proof below;

  the chunks are balanced (their word counts differ by at most one, :func:`hw.tiling.split_k`). Each
  chunk computes a partial ``D`` on the device; the host adds the partial sums in int64.
* Accumulator proof (:func:`prove_no_overflow`): an accumulator sums ``k_words * lanes`` products
  ``q * t`` with ``q`` int8 in ``[-128, 127]`` and ``t`` in ``{-1, 0, +1}``, so
  ``|partial sum| <= 128 * k_words * lanes`` at every step (``-128 * -1 = +128`` is the largest product,
  ``-128 * +1`` the smallest). The chunk is accepted only if ``128 * k_words * lanes <=
  config.acc_limit = 2**(acc_width-1) - 1``; then every intermediate and final value of every
  accumulator fits the signed ``acc_width``-bit register, no wrap can occur, and the device's partial
  sums are the exact integers. :func:`compile_linear` checks every chunk it makes with it, so an
  unsafe split cannot be compiled.
* The weights of each chunk are packed once, tile by tile, word by word, into the configured weight
  stream format (:func:`hw.formats.weight_words_to_stream`).

At run time :meth:`CompiledLinear.program` makes one program for ``q`` (``tokens`` x ``K`` int8):
for every chunk, the tokens go in **groups** of at most ``config.tokens_per_group(chunk_words)`` (one
LOAD_ACT each), and every group streams all tiles of the chunk (one MATMUL per tile, all tokens of the
group), then a final SYNC. :meth:`CompiledLinear.assemble` turns the result vectors back into ``D``
(tokens x N, int64).

:class:`WeightCache` keeps compiled projections keyed by (configuration, shape, SHA-1 of the ternary
weights), so each projection of a model is compiled once, whatever object holds its weights (the
lazily generated layers of the random presets included).
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from hw.config import TernConfig
from hw.formats import weight_words_to_stream
from hw.isa import Op, decode_words, sync
from hw.tiling import Chunk, Tiling

__all__ = ["CompileError", "OverflowProofError", "worst_case_abs_sum", "prove_no_overflow",
           "CompiledLinear", "CallProgram", "compile_linear", "weight_fingerprint", "WeightCache"]


class CompileError(ValueError):
    """A projection that cannot be compiled for the configuration (the message says why)."""


class OverflowProofError(CompileError):
    """A K chunk whose worst-case dot product does not fit the accumulator."""


# -- the accumulator proof ----------------------------------------------------------------------------

def worst_case_abs_sum(k: int) -> int:
    """Largest ``|sum_k q_k * t_k|`` over int8 ``q`` (-128..127) and ternary ``t``: ``128 * k``
    (every term ``-128 * -1``, or ``-128 * +1``)."""
    return 128 * int(k)


def prove_no_overflow(config: TernConfig, k_words: int) -> int:
    """Check that a MATMUL over ``k_words`` words (``K_chunk = k_words * lanes`` lanes, padding
    included) can never overflow an accumulator, for any int8 activations and ternary weights.

    Every partial sum of a token's accumulation is a sum of at most ``K_chunk`` terms of magnitude
    <= 128, so ``|partial| <= worst_case_abs_sum(K_chunk) = 128 * K_chunk``; the signed
    ``acc_width``-bit accumulator holds ``[-2**(A-1), 2**(A-1) - 1]``. Returns the bound
    ``128 * K_chunk`` when it is ``<= config.acc_limit = 2**(A-1) - 1``; raises
    :class:`OverflowProofError` otherwise."""
    if isinstance(k_words, bool) or not isinstance(k_words, (int, np.integer)) or k_words < 1:
        raise CompileError(f"k_words={k_words!r} must be a positive integer")
    k_chunk = int(k_words) * config.lanes
    bound = worst_case_abs_sum(k_chunk)
    limit = config.acc_limit
    if bound > limit:
        raise OverflowProofError(
            f"a K chunk of {k_words} words ({k_chunk} lanes) can reach |sum| = 128*{k_chunk} = {bound}, "
            f"which does not fit a signed {config.acc_width}-bit accumulator (max {limit})")
    return bound


def weight_fingerprint(t: np.ndarray) -> str:
    """SHA-1 of the shape and bytes of an int8 weight matrix (the cache key of its compiled form)."""
    t = np.ascontiguousarray(t)
    h = hashlib.sha1(f"{t.shape}{t.dtype.str}".encode())
    h.update(memoryview(t).cast("B"))
    return h.hexdigest()


# -- compiled projection ----------------------------------------------------------------------------------

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
        f = decode_words(self.words)
        return int((f["b"] * f["c"])[f["op"] == Op.MATMUL.value].sum())


@dataclass
class CompiledLinear:
    """A projection ``(N, K)`` compiled for ``config``; see the module docstring. ``tiling`` is its
    :class:`hw.tiling.Tiling` (``k_words``, ``tiles`` and ``chunks`` are the tiling's)."""
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
    tiling: Tiling = field(init=False, repr=False)

    def __post_init__(self):
        self.nbytes = int(sum(b.nbytes for b in self.beats))
        self.tiling = Tiling(self.config, self.N, self.K, tuple(self.chunks))

    def group_tokens(self, chunk: Chunk) -> int:
        """Tokens per LOAD_ACT for ``chunk``: ``config.tokens_per_group(chunk.words)`` (>= 1)."""
        return self.tiling.group_tokens(chunk)

    def program(self, q) -> CallProgram:
        """The program that computes the partial ``D`` of every chunk for ``q`` (tokens x K int8)."""
        q = np.asarray(q)
        if q.ndim != 2 or q.shape[1] != self.K or q.shape[0] < 1:
            raise CompileError(f"{self.name or 'projection'}: activations must be (tokens >= 1, {self.K}), "
                               f"not {q.shape}")
        if q.dtype != np.int8:
            if not np.issubdtype(q.dtype, np.integer) or q.min() < -128 or q.max() > 127:
                raise CompileError(f"{self.name or 'projection'}: activations must be int8")
            q = q.astype(np.int8)
        T = q.shape[0]
        tiling = self.tiling
        qp = tiling.pad_activations(q)
        segments = tiling.segments(T)
        words, acts, wgts = [], [], []
        for seg in segments:
            words.extend(tiling.segment_words(seg))
            acts.append(tiling.activation_words(qp[seg.t0:seg.t0 + seg.tokens], self.chunks[seg.chunk]))
            wgts.append(self.beats[seg.chunk])
        words.append(sync().word)
        act = np.concatenate(acts) if len(acts) > 1 else np.ascontiguousarray(acts[0])
        wgt = np.concatenate(wgts) if len(wgts) > 1 else wgts[0]
        return CallProgram(words, act, wgt, list(segments), tiling.n_outputs(segments), T)

    def assemble(self, prog: CallProgram, outputs) -> np.ndarray:
        """``D`` (tokens x N, int64): the chunks' partial sums added on the host in int64."""
        R = self.config.rows
        out = np.asarray(outputs, dtype=np.int64)
        if out.shape != (prog.n_outputs, R):
            raise CompileError(f"{self.name or 'projection'}: expected {(prog.n_outputs, R)} result "
                               f"vectors, the backend returned {out.shape}")
        return self.tiling.assemble(out, prog.tokens, prog.segments)


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

    ``max_words`` caps the words per K chunk (default and upper bound: ``config.max_chunk_words``,
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
    if max_words is None:
        max_words = config.max_chunk_words
    elif isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise CompileError(f"{label}: max_words={max_words!r} must be a positive integer")
    else:
        if max_words > config.wgt_depth:
            raise CompileError(f"{label}: max_words={max_words} exceeds wgt_depth={config.wgt_depth}")
        if max_words > config.act_depth:
            raise CompileError(f"{label}: max_words={max_words} exceeds act_depth={config.act_depth}")
    tiling = Tiling.plan(config, N, K, max_words)
    bounds = tuple(prove_no_overflow(config, ch.words) for ch in tiling.chunks)   # the proof, per chunk
    wp = tiling.pad_weights(t)
    beats = []
    for ch in tiling.chunks:
        b = weight_words_to_stream(tiling.weight_words(wp, ch), config)
        b.setflags(write=False)
        beats.append(b)
    return CompiledLinear(config=config, N=N, K=K, k_words=tiling.k_words, tiles=tiling.tiles,
                          chunks=tiling.chunks, beats=tuple(beats), bounds=bounds,
                          fingerprint=fingerprint if fingerprint is not None else weight_fingerprint(t),
                          name=name)


class WeightCache:
    """Compiled projections keyed by ``(config, shape, SHA-1 of the weights, max_words)``, least
    recently used first out once ``max_bytes`` of packed streams are held (default 4 GiB).

    The SHA-1 of a torch tensor's weights is remembered with the tensor (while it lives) and its
    version counter, so calling the same weights again (generation) skips hashing them; a tensor
    changed in place by torch (``copy_``, ``fill_``, ...) bumps its version and is hashed again. A
    NumPy array is hashed on every call."""

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._fingerprints: dict = {}   # id(tensor) -> (weakref, version, fingerprint)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._items)

    def clear(self):
        self._items.clear()
        self._fingerprints.clear()
        self.nbytes = 0

    def _fingerprint(self, T, t: np.ndarray) -> str:
        version = getattr(T, "_version", None)
        if version is None:
            return weight_fingerprint(t)
        known = self._fingerprints.get(id(T))
        if known is not None and known[0]() is T and known[1] == version:
            return known[2]
        fp = weight_fingerprint(t)
        key = id(T)
        self._fingerprints[key] = (weakref.ref(T, lambda _, k=key, d=self._fingerprints: d.pop(k, None)),
                                   version, fp)
        return fp

    def get(self, config: TernConfig, T, *, name: str = "", max_words: int | None = None) -> CompiledLinear:
        t = _as_ternary(T)
        fp = self._fingerprint(T, t)
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
