"""The values the core computes (RTL: the activation buffer, the weight decoder's byte table, the
weight buffer and the PE array with its accumulators): the result vector of every MATMUL token,
independent of timing.

Per MATMUL, one matrix product of the activation words and the decoded weight words (float32 BLAS
where that is exact, ``128 * K < 2**24``, float64 where ``< 2**53``), wrapped to ``acc_width`` bits as
the accumulators wrap. The weight beats are decoded with the one table of their format,
:data:`hw.formats.BYTE_WEIGHTS` (invalid codes read 0, as in the decoder), straight into the float
type of the product; consecutive MATMULs over the same activation words share one product.

Decoded weights are kept (:data:`DECODED`, least recently used first out beyond its byte budget) for
the next run that streams the same weight words, as generation does on the same compiled weights: a
group's weight bytes are looked up by a sample of them and used only when they equal the stored ones
byte for byte, so a hit costs one comparison instead of the table lookup and reordering.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from hw.formats import BYTE_VALID, BYTE_WEIGHTS
from hw.program import wrap_signed

__all__ = ["Datapath", "DecodedWeights", "DECODED"]

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


class DecodedWeights:
    """The decoded weight matrices of earlier runs: key ``(format, geometry, dtype, sample of the raw
    bytes)`` -> ``(raw bytes, w, byte counts, nonzero, negated, size)``; an entry is used only when its raw
    bytes equal the group's (``np.array_equal``). At most ``max_bytes`` of matrices are kept
    (``$TERN_SIM_DECODED_MB``, default 1024 MiB; 0 turns the cache off), least recently used first out."""

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("TERN_SIM_DECODED_MB", "1024")) * (1 << 20))
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self):
        return len(self._items)

    def clear(self):
        self._items.clear()
        self.nbytes = 0

    @staticmethod
    def key(geometry: tuple, raw: np.ndarray) -> tuple:
        flat = raw.reshape(-1)
        step = max(1, flat.size // 4096)
        return (*geometry, raw.shape, flat[::step][:4096].tobytes(), flat[-64:].tobytes())

    def get(self, key: tuple, raw: np.ndarray):
        item = self._items.get(key)
        if item is not None and np.array_equal(item[0], raw):
            self._items.move_to_end(key)
            self.hits += 1
            return item[1:5]
        self.misses += 1
        return None

    def put(self, key: tuple, raw: np.ndarray, w: np.ndarray, counts, nz: int, neg: int):
        size = w.nbytes + 2 * raw.nbytes + sum(len(k) for k in key[-2:])
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.nbytes -= old[-1]
        w.flags.writeable = False
        self._items[key] = (raw.copy(), w, counts, nz, neg, size)
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old[-1]


#: The decoded weights kept by :func:`hw.sim.simulate` (one per process).
DECODED = DecodedWeights()


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


def _decode(cfg, raw: np.ndarray, table: np.ndarray, G: int, kw: int, K: int, row_bytes):
    """The ``(G * rows, K)`` weight matrix of a group's weight words ``raw`` (one row per word), the
    byte counts of the words (padding included) and the nonzero and negated weights."""
    R, L = cfg.rows, cfg.lanes
    nz_per_byte, neg_per_byte = _BYTE_TERMS[cfg.weight_format]
    counts = np.bincount(raw.reshape(-1), minlength=256)
    if row_bytes is not None:
        payload = R * row_bytes        # bytes of a word that carry weights (the rest: padding)
        b = raw[:, :payload].reshape(G, kw, R, row_bytes).transpose(0, 2, 1, 3)
        w = np.take(table, b, axis=0).reshape(G * R, K)
        weight_counts = counts
        if payload < raw.shape[1]:
            weight_counts = counts - np.bincount(raw[:, payload:].reshape(-1), minlength=256)
        nz, neg = int(weight_counts @ nz_per_byte), int(weight_counts @ neg_per_byte)
    else:
        w = np.take(table, raw, axis=0).reshape(G * kw, -1)[:, :R * L]
        w = w.reshape(G, kw, R, L).transpose(0, 2, 1, 3).reshape(G * R, K)
        nz, neg = int(np.count_nonzero(w)), int(np.count_nonzero(w < 0))
    return w, counts, nz, neg


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
        key = DECODED.key((cfg.weight_format, R, L, bpw, B, kw, G, np.dtype(dt).str), raw)
        hit = DECODED.get(key, raw)
        if hit is not None:
            w, counts, nz, neg = hit
        else:
            w, counts, nz, neg = _decode(cfg, raw, table, G, kw, K, row_bytes)
            DECODED.put(key, raw, w, counts, nz, neg)
        dp.byte_counts += counts
        d = (x @ w.T).astype(np.int64)
        d = wrap_signed(d, cfg.acc_width).reshape(T, G, R)
        for gi, (_, _, _, _, nn) in enumerate(group):
            outputs[nn:nn + T] = d[:, gi]
        dp.tokens += T * G
        dp.nonzero_terms += T * nz
        dp.negated_terms += T * neg
        i = j
