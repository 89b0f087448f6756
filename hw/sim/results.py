"""The values the core computes (RTL: the activation buffer, the weight decoder's byte table, the
weight buffer and the PE array with its accumulators): the result vector of every MATMUL token,
independent of timing.

Per MATMUL, one matrix product of the activation words and the decoded weight words (float32 BLAS
where that is exact, ``128 * K < 2**24``, float64 where ``< 2**53``), wrapped to ``acc_width`` bits as
the accumulators wrap. The weight beats are decoded with the one table of their format,
:data:`hw.formats.BYTE_WEIGHTS` (invalid codes read 0, as in the decoder), straight into the float
type of the product; consecutive MATMULs over the same activation words share one product.
"""

from __future__ import annotations

import numpy as np

from hw.formats import BYTE_VALID, BYTE_WEIGHTS
from hw.program import wrap_signed

__all__ = ["Datapath", "stream_has_invalid_byte"]

_WEIGHTS_AS: dict = {}


def _weights_as(fmt: str, dtype) -> np.ndarray:
    """``BYTE_WEIGHTS[fmt]`` converted to ``dtype`` once (the matrix product's operand type)."""
    key = (fmt, np.dtype(dtype).str)
    table = _WEIGHTS_AS.get(key)
    if table is None:
        table = _WEIGHTS_AS[key] = BYTE_WEIGHTS[fmt].astype(dtype)
    return table


_VALID_PAIRS: dict = {}


def stream_has_invalid_byte(fmt: str, beats: np.ndarray) -> bool:
    """Whether any byte of the weight stream is invalid (not :data:`hw.formats.BYTE_VALID`): the
    decoder's sticky error flag, error bit 1. Looks bytes up two at a time (a 65536-entry table of
    byte pairs made from ``BYTE_VALID``), which halves the lookups."""
    b = np.ascontiguousarray(beats, dtype=np.uint8).reshape(-1)
    valid = BYTE_VALID[fmt]
    if len(b) % 2:
        if not valid[b[-1]]:
            return True
        b = b[:-1]
    pairs = _VALID_PAIRS.get(fmt)
    if pairs is None:
        pairs = _VALID_PAIRS[fmt] = (valid[None, :] & valid[:, None]).reshape(-1)
    return not pairs[b.view(np.uint16)].all()


class Datapath:
    """Activation buffer contents, the MATMULs whose results are still to compute, and the results.

    ``outputs`` (n_results, rows) int64; ``tokens``, ``nonzero_terms``, ``negated_terms``: the
    data-dependent event counts (:mod:`hw.sim.events`)."""

    def __init__(self, config, act_beats: np.ndarray, wgt_beats: np.ndarray, n_results: int):
        self.config = config
        self.act_beats, self.wgt_beats = act_beats, wgt_beats
        self.act_buffer = np.zeros((config.act_depth, config.lanes), dtype=np.int8)
        self.outputs = np.zeros((n_results, config.rows), dtype=np.int64)
        self.pending: list = []
        self.tokens = self.nonzero_terms = self.negated_terms = 0

    def load_act(self, addr: int, first_beat: int, count: int) -> None:
        """LOAD_ACT: activation beats ``first_beat ..`` into words ``addr ..`` (the MATMULs before
        it read the old contents, so their results are computed first)."""
        if self.pending:
            self.flush()
        self.act_buffer[addr:addr + count] = self.act_beats[first_beat:first_beat + count]

    def matmul(self, addr: int, k_words: int, tokens: int, first_word: int, first_result: int) -> None:
        """MATMUL: remembered until the activation buffer changes or the run ends."""
        self.pending.append((addr, k_words, tokens, first_word, first_result))

    def flush(self) -> None:
        """Compute the results of the pending MATMULs."""
        _compute_results(self, self.pending)
        self.pending.clear()


def _compute_results(dp: Datapath, jobs: list) -> None:
    """Result vectors of the MATMULs in ``jobs`` (addr, k_words, tokens, first word, first result);
    consecutive MATMULs over the same activation words share one matrix product."""
    cfg = dp.config
    R, L, bpw, B = cfg.rows, cfg.lanes, cfg.beats_per_word, cfg.bus_bytes
    actbuf, wgt_beats, outputs = dp.act_buffer, dp.wgt_beats, dp.outputs
    i = 0
    while i < len(jobs):
        addr, kw, T, g0, n0 = jobs[i]
        j = i + 1
        while j < len(jobs) and jobs[j][:3] == (addr, kw, T):
            j += 1
        group = jobs[i:j]
        G = len(group)
        K = kw * L
        # |partial sums| <= 128 * K: exact in float32 below 2**24, in float64 below 2**53
        dt = np.float32 if 128 * K < (1 << 24) else np.float64
        x = actbuf[addr:addr + kw * T].reshape(T, K).astype(dt)
        # the group's words are consecutive in the weight stream
        raw = wgt_beats[g0 * bpw:(g0 + kw * G) * bpw].reshape(G * kw, bpw * B)
        w = _weights_as(cfg.weight_format, dt)[raw].reshape(G * kw, -1)[:, :R * L]
        w = w.reshape(G, kw, R, L)
        wt = w.transpose(1, 3, 0, 2).reshape(K, G * R)                    # (K, G*R)
        d = (x @ wt).astype(np.int64)
        d = wrap_signed(d, cfg.acc_width).reshape(T, G, R)
        for gi, (_, _, _, _, nn) in enumerate(group):
            outputs[nn:nn + T] = d[:, gi]
        nz = int(np.count_nonzero(w))
        neg = int(np.count_nonzero(w < 0))
        dp.tokens += T * G
        dp.nonzero_terms += T * nz
        dp.negated_terms += T * neg
        i = j
