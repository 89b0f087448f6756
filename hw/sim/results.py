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

__all__ = ["Datapath"]

_WEIGHTS_AS: dict = {}


def _weights_as(fmt: str, dtype) -> np.ndarray:
    """``BYTE_WEIGHTS[fmt]`` converted to ``dtype`` once (the matrix product's operand type)."""
    key = (fmt, np.dtype(dtype).str)
    table = _WEIGHTS_AS.get(key)
    if table is None:
        table = _WEIGHTS_AS[key] = BYTE_WEIGHTS[fmt].astype(dtype)
    return table


#: Per format: the nonzero and the negative weights each byte value carries.
_BYTE_TERMS = {fmt: (np.count_nonzero(w, axis=1).astype(np.int64),
                     np.count_nonzero(w < 0, axis=1).astype(np.int64))
               for fmt, w in BYTE_WEIGHTS.items()}


class Datapath:
    """Activation buffer contents, the MATMULs whose results are still to compute, and the results.

    ``outputs`` (n_results, rows) int64; ``tokens``, ``nonzero_terms``, ``negated_terms``: the
    data-dependent event counts (:mod:`hw.sim.events`); ``byte_counts``: how often each byte value
    occurs in the weight words decoded so far (padding included)."""

    def __init__(self, config, act_beats: np.ndarray, wgt_beats: np.ndarray, n_results: int):
        self.config = config
        self.act_beats, self.wgt_beats = act_beats, wgt_beats
        self.act_buffer = np.zeros((config.act_depth, config.lanes), dtype=np.int8)
        self.outputs = np.zeros((n_results, config.rows), dtype=np.int64)
        self.pending: list = []
        self.tokens = self.nonzero_terms = self.negated_terms = 0
        self.byte_counts = np.zeros(256, dtype=np.int64)

    @property
    def weight_error(self) -> bool:
        """Error bit 1: a byte of the weight words decoded so far is not
        :data:`hw.formats.BYTE_VALID` (the decoder's sticky error flag)."""
        return bool(self.byte_counts[~BYTE_VALID[self.config.weight_format]].any())

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
    consecutive MATMULs over the same activation words share one matrix product.

    The weights are laid out as a ``(G * rows, K)`` matrix (one row per output feature of the group,
    K ordered as the activation words) and multiplied as ``x @ w.T``. When every byte's codes lie in
    one row (``lanes`` a multiple of the codes per byte) the bytes are put in that order before they
    are decoded, so the table lookup writes the matrix directly; otherwise the decoded words are
    reordered. The event counts of the fast case come from the bytes (``byte_counts``)."""
    cfg = dp.config
    R, L, bpw, B, tpb = cfg.rows, cfg.lanes, cfg.beats_per_word, cfg.bus_bytes, cfg.trits_per_byte
    row_bytes = L // tpb if L % tpb == 0 else None
    nz_per_byte, neg_per_byte = _BYTE_TERMS[cfg.weight_format]
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
        table = _weights_as(cfg.weight_format, dt)
        x = actbuf[addr:addr + kw * T].reshape(T, K).astype(dt)
        # the group's words are consecutive in the weight stream
        raw = wgt_beats[g0 * bpw:(g0 + kw * G) * bpw].reshape(G * kw, bpw * B)
        counts = np.bincount(raw.reshape(-1), minlength=256)
        dp.byte_counts += counts
        if row_bytes is not None:
            payload = R * row_bytes        # bytes of a word that carry weights (the rest: padding)
            b = raw[:, :payload].reshape(G, kw, R, row_bytes).transpose(0, 2, 1, 3)
            w = np.take(table, b, axis=0).reshape(G * R, K)
            if payload < bpw * B:
                counts = counts - np.bincount(raw[:, payload:].reshape(-1), minlength=256)
            nz, neg = int(counts @ nz_per_byte), int(counts @ neg_per_byte)
        else:
            w = np.take(table, raw, axis=0).reshape(G * kw, -1)[:, :R * L]
            w = w.reshape(G, kw, R, L).transpose(0, 2, 1, 3).reshape(G * R, K)
            nz, neg = int(np.count_nonzero(w)), int(np.count_nonzero(w < 0))
        d = (x @ w.T).astype(np.int64)
        d = wrap_signed(d, cfg.acc_width).reshape(T, G, R)
        for gi, (_, _, _, _, nn) in enumerate(group):
            outputs[nn:nn + T] = d[:, gi]
        dp.tokens += T * G
        dp.nonzero_terms += T * nz
        dp.negated_terms += T * neg
        i = j
