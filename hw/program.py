"""Host-side program builder and integer reference for the tern core (``docs/ISA.md``).

A :class:`ProgramBuilder` appends instructions together with the stream data they consume (activation
beats, weight words) and keeps an independent numpy model of the machine state (activation buffer,
error flags) from which it computes the expected result vectors with int64 arithmetic, wrapped to
``acc_width`` bits as the hardware accumulators wrap. :func:`linear_program` builds the whole program
for ``D = q @ T.T`` (q: (T, K) int8 activations, T: (N, K) ternary weights), zero-padding K to a
multiple of ``lanes`` and N to a multiple of ``rows``; :func:`reference_matmul` is the plain reference.

The weight beats are produced by :func:`hw.formats.weight_words_to_stream`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.config import TernConfig
from hw.formats import weight_words_to_stream
from hw.isa import FIELD_MAX, Instr, Op, is_valid
from hw.tiling import Segment, Tiling, TilingError, assemble, tile_words

__all__ = ["Program", "ProgramBuilder", "ProgramError", "instr_is_valid", "linear_program",
           "outputs_to_matrix", "reference_matmul", "wrap_signed", "decode_program", "prefill_program"]


class ProgramError(ValueError):
    """A program that cannot be built for the configuration (the message names the operand)."""


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 values to ``bits`` bits (as an accumulator of that width)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    m = np.int64(1) << np.int64(bits)
    h = np.int64(1) << np.int64(bits - 1)
    return ((x + h) % m) - h


def reference_matmul(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``D[t, n] = sum_k q[t, k] * w[n, k]`` in int64."""
    q = np.asarray(q, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    return q @ w.T


#: Whether the machine executes an instruction (True) or skips it and sets error bit 0 (False):
#: the rules of :func:`hw.isa.check`.
instr_is_valid = is_valid


@dataclass
class Program:
    """A program and its data. ``act_beats``: (n, lanes) int8; ``wgt_words``: (n, rows, lanes) ternary
    in {-1, 0, 1}; ``wgt_beats``: (m, bus_bytes) uint8; ``expected``: (n_out, rows) int64 result
    vectors in output order; ``expected_error``: the error flags after the program (bit 1, invalid
    weight bytes, is only predicted for beats built here)."""
    config: TernConfig
    instrs: list[Instr] = field(default_factory=list)
    act_beats: np.ndarray = None
    wgt_words: np.ndarray = None
    wgt_beats: np.ndarray = None
    expected: np.ndarray = None
    expected_error: int = 0
    shape: tuple | None = None  # (T, N, K) for programs made by linear_program

    @property
    def words(self) -> list[int]:
        """The 64-bit instruction words."""
        return [i.word for i in self.instrs]

    @property
    def n_matmul_steps(self) -> int:
        """PE issue steps (``sum k_words * tokens`` over executed MATMULs): the ideal busy cycles."""
        return sum(i.b * i.c for i in self.instrs
                   if i.op == Op.MATMUL and instr_is_valid(self.config, i))


class ProgramBuilder:
    """Append instructions and their data; tracks the activation buffer to predict the results."""

    def __init__(self, config: TernConfig):
        if not isinstance(config, TernConfig):
            raise TypeError(f"ProgramBuilder: config must be a hw.config.TernConfig, not {config!r}")
        self.config = config
        self.instrs: list[Instr] = []
        self._act_beats: list[np.ndarray] = []
        self._words: list[np.ndarray] = []
        self._expected: list[np.ndarray] = []
        self._act = np.zeros((config.act_depth, config.lanes), dtype=np.int64)
        self._act_known = np.zeros(config.act_depth, dtype=bool)
        self._error = 0

    # -- instructions ------------------------------------------------------------------------------

    def nop(self):
        self.instrs.append(Instr(Op.NOP))
        return self

    def sync(self):
        self.instrs.append(Instr(Op.SYNC))
        return self

    def load_act(self, addr: int, words) -> "ProgramBuilder":
        """LOAD_ACT ``addr``, ``len(words)``: ``words`` is (count, lanes) int8."""
        cfg = self.config
        words = np.asarray(words)
        if words.ndim != 2 or words.shape[1] != cfg.lanes:
            raise ProgramError(f"load_act: activation words must have shape (count, {cfg.lanes}), "
                               f"not {words.shape}")
        if words.size and (words.min() < -128 or words.max() > 127):
            raise ProgramError("load_act: activation values must be int8 (-128..127)")
        instr = Instr(Op.LOAD_ACT, addr, len(words))
        if not instr_is_valid(cfg, instr):
            raise ProgramError(f"load_act: {instr} is out of range for act_depth={cfg.act_depth}")
        self.instrs.append(instr)
        self._act_beats.extend(words.astype(np.int8))
        self._act[addr:addr + len(words)] = words
        self._act_known[addr:addr + len(words)] = True
        return self

    def matmul(self, act_addr: int, w_tile, tokens: int) -> "ProgramBuilder":
        """MATMUL ``act_addr``, ``k_words``, ``tokens`` with the ternary weight tile ``w_tile`` of shape
        (rows, k_words * lanes); appends ``tokens`` expected result vectors."""
        cfg = self.config
        w_tile = np.asarray(w_tile)
        if w_tile.ndim != 2 or w_tile.shape[0] != cfg.rows or w_tile.shape[1] % cfg.lanes or \
                w_tile.shape[1] == 0:
            raise ProgramError(f"matmul: weight tile must have shape ({cfg.rows}, k_words*{cfg.lanes}), "
                               f"not {w_tile.shape}")
        if not np.isin(w_tile, (-1, 0, 1)).all():
            raise ProgramError("matmul: weights must be ternary (-1, 0, +1)")
        kw = w_tile.shape[1] // cfg.lanes
        instr = Instr(Op.MATMUL, act_addr, kw, tokens)
        if not instr_is_valid(cfg, instr):
            raise ProgramError(f"matmul: {instr} is out of range (act_depth={cfg.act_depth}, "
                               f"wgt_depth={cfg.wgt_depth})")
        span = slice(act_addr, act_addr + kw * tokens)
        if not self._act_known[span].all():
            raise ProgramError(f"matmul: {instr} reads activation words never loaded")
        self.instrs.append(instr)
        self._words.extend(tile_words(w_tile, cfg.rows, cfg.lanes).astype(np.int8))   # (kw, rows, lanes)
        acts = self._act[span].reshape(tokens, kw * cfg.lanes)          # (tokens, K)
        self._expected.extend(wrap_signed(reference_matmul(acts, w_tile), cfg.acc_width))
        return self

    def bad(self, instr: Instr) -> "ProgramBuilder":
        """An instruction the machine must skip (checked against :func:`instr_is_valid`)."""
        if instr_is_valid(self.config, instr):
            raise ProgramError(f"bad: {instr} is a valid instruction")
        self.instrs.append(instr)
        self._error |= 1
        return self

    # -- result ------------------------------------------------------------------------------------

    def build(self) -> Program:
        cfg = self.config
        words = (np.stack(self._words) if self._words
                 else np.zeros((0, cfg.rows, cfg.lanes), dtype=np.int8))
        beats = weight_words_to_stream(cfg, words)
        beats = np.asarray(beats, dtype=np.uint8).reshape(-1, cfg.bus_bytes)
        return Program(
            config=cfg,
            instrs=list(self.instrs),
            act_beats=(np.stack(self._act_beats) if self._act_beats
                       else np.zeros((0, cfg.lanes), dtype=np.int8)),
            wgt_words=words,
            wgt_beats=beats,
            expected=(np.stack(self._expected) if self._expected
                      else np.zeros((0, cfg.rows), dtype=np.int64)),
            expected_error=self._error,
        )


def linear_program(config: TernConfig, q, w, *, act_addr: int = 0, sync: bool = True) -> Program:
    """The program for ``D = q @ w.T``: one LOAD_ACT of all tokens, then one MATMUL per ``rows``-row
    tile of ``w`` (all tokens each), optionally a final SYNC. ``q``: (T, K) int8; ``w``: (N, K) ternary.

    The layout is :class:`hw.tiling.Tiling`'s with one K chunk and one token group: activation word
    ``t * k_words + k`` holds ``q[t, k*lanes:(k+1)*lanes]`` (K zero-padded to ``k_words * lanes``); the
    outputs arrive tile by tile, token by token: use :func:`outputs_to_matrix` to reassemble ``D``
    (T, N)."""
    cfg = config
    q = np.asarray(q)
    w = np.asarray(w)
    if q.ndim != 2 or w.ndim != 2 or q.shape[1] != w.shape[1]:
        raise ProgramError(f"linear_program: need q (T, K) and w (N, K), got {q.shape} and {w.shape}")
    T, K = q.shape
    N = w.shape[0]
    if T < 1 or N < 1 or K < 1:
        raise ProgramError(f"linear_program: empty problem T={T}, N={N}, K={K}")
    try:
        tiling = Tiling.plan(cfg, N, K)
    except TilingError as e:
        raise ProgramError(f"linear_program: {e}") from None
    kw = tiling.k_words
    if act_addr + T * kw > cfg.act_depth:
        raise ProgramError(f"linear_program: T*k_words={T * kw} activation words do not fit "
                           f"act_depth={cfg.act_depth} at address {act_addr}")
    if T * kw > FIELD_MAX:
        raise ProgramError("linear_program: problem too large for one LOAD_ACT")
    (chunk,) = tiling.chunks
    wp = tiling.pad_weights(w, np.int64)
    b = ProgramBuilder(cfg)
    b.load_act(act_addr, tiling.activation_words(tiling.pad_activations(q, np.int64), chunk))
    for i in range(tiling.tiles):
        b.matmul(act_addr, tiling.weight_tile(wp, i, chunk), T)
    if sync:
        b.sync()
    prog = b.build()
    prog.shape = (T, N, K)
    return prog


def outputs_to_matrix(config: TernConfig, outputs, T: int, N: int) -> np.ndarray:
    """Reassemble the result vectors of :func:`linear_program` (one segment of ``T`` tokens) into
    ``D`` (T, N) int64."""
    out = np.asarray(outputs, dtype=np.int64)
    n_tiles = config.n_tiles(N)
    if out.shape != (n_tiles * T, config.rows):
        raise ProgramError(f"outputs_to_matrix: expected {(n_tiles * T, config.rows)} outputs, "
                           f"got {out.shape}")
    return assemble(config, N, T, [Segment(0, 0, T)], out)


def decode_program(config: TernConfig, n_mm: int, kw: int, seed: int = 0) -> Program:
    """A decode-like random program: one LOAD_ACT of ``kw`` words (one token), then ``n_mm`` MATMULs
    (``k_words = kw``, one token) on it, each with its own random ternary tile."""
    return prefill_program(config, n_mm, kw, 1, seed)


def prefill_program(config: TernConfig, n_mm: int, kw: int, tokens: int, seed: int = 0) -> Program:
    """A prefill-like random program: one LOAD_ACT of ``tokens * kw`` words, then ``n_mm`` MATMULs
    (``k_words = kw``, ``tokens`` tokens) on it, each with its own random ternary tile."""
    rng = np.random.default_rng(seed)
    b = ProgramBuilder(config).load_act(0, rng.integers(-128, 128, (tokens * kw, config.lanes)))
    for _ in range(n_mm):
        b.matmul(0, rng.integers(-1, 2, (config.rows, kw * config.lanes)), tokens)
    return b.build()
