"""The values the core computes (RTL: the activation buffer, the weight decoder's byte table, the
weight buffer and the PE array with its accumulators): the result vector of every MATMUL token,
independent of timing.

Per MATMUL, one matrix product of the activation words and the decoded weight words, wrapped to
``acc_width`` bits as the accumulators wrap. The weight beats are decoded with the one table of their
format, :data:`hw.formats.BYTE_WEIGHTS` (invalid codes read 0, as in the decoder), into an int8 matrix:
when every byte's codes lie in one row the table is read as one machine word per byte (four int8
weights in a uint32 for ``2bit``) or per pair of bytes, a single gather that reads the bytes in matrix
order and writes the matrix; ``2bit`` words without padding have their nonzero and negative weights
counted from the bytes by popcounts. The product is exact by construction, computed one of two ways
(:data:`PRODUCT`): torch's int8 x int8 -> int32 ``torch._int_mm`` (every sum below ``128 * K <
2**31``) on CPUs with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX), where it is the
fastest; otherwise float32 BLAS where ``128 * K < 2**24`` (every partial sum an integer below
``2**24``), float64 beyond, on int8 weights converted a block of rows at a time into a buffer that
stays in the cache (:data:`PRODUCT_BLOCK_BYTES`), each block multiplied as it is converted: the
product reads one byte per weight from memory, a quarter of what a float32 matrix costs, and no
whole float copy is made.
Consecutive MATMULs over the same activation words share one
product, and so do the groups of a run over the same decoded weights (kept in :data:`DECODED`): their
activation rows are stacked into one product at the end of the run (:meth:`Datapath.finish`), as the
token groups of a prefill call stream the same weights again.

Decoded weights are kept (:data:`DECODED`, least recently used first out beyond its byte budget) for
the next run that streams the same weight words, as generation does on the same compiled weights: a
group's weight bytes are looked up by a sample of them and used only when they equal the stored ones
byte for byte, so a hit costs one comparison instead of the table lookup and reordering.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict

import numpy as np

from hw.formats import BYTE_VALID, BYTE_WEIGHTS, CODECS, INVALID_CODE
from hw.program import wrap_signed

__all__ = ["Datapath", "DecodedWeights", "DECODED", "ByteBudgetLRU", "invalid_bytes", "int8_dot_cpu", "plan",
           "product_kind"]

#: How :func:`_product` multiplies: ``"int8"`` (``torch._int_mm``), ``"float"`` (float BLAS on
#: blocks of converted rows) or None: ``"int8"`` where the CPU has int8 dot-product instructions
#: (:func:`int8_dot_cpu`), else ``"float"``. Both are exact, so the choice changes only the speed: on
#: a 2-core AVX2 machine the seven products of a 2B4T decode layer took 17 ms as float, 50-70 ms as
#: int8; on a 2-core AVX-512 VNNI machine, 13.5 ms as float and 4.0 ms as int8.
PRODUCT: str | None = None
#: Bytes of the float buffer into which :func:`_product` converts the weights a block of rows at a
#: time (it stays in the core's L2 cache; on a 2-core AVX2 machine, the seven products of a 2B4T
#: decode layer took 17 ms with 1 MiB blocks, 23 ms with 128 KiB ones and 70 ms converting each
#: matrix whole).
PRODUCT_BLOCK_BYTES = 1 << 20
#: Bytes of decoded weight matrices a run holds for :meth:`Datapath.finish` before it computes their
#: products at once.
DEFER_MAX_BYTES = 512 << 20

_WORD_TABLES: dict = {}
_PAIR_TABLES: dict = {}


def _byte_table(fmt: str):
    """``BYTE_WEIGHTS[fmt]`` as one unsigned integer per byte value (its ``codes_per_byte`` int8
    weights, in memory order) when that is a machine word (1, 2, 4 or 8 codes per byte), else None."""
    if fmt not in _WORD_TABLES:
        w = np.ascontiguousarray(BYTE_WEIGHTS[fmt])
        n = w.shape[1]
        _WORD_TABLES[fmt] = w.view(f"<u{n}").reshape(256) if n in (1, 2, 4, 8) else None
    return _WORD_TABLES[fmt]


def _pair_table(fmt: str):
    """``BYTE_WEIGHTS[fmt]`` as one unsigned integer per pair of consecutive bytes (read as one
    little-endian 16-bit value: the first byte's ``codes_per_byte`` int8 weights, then the second's)
    when that is a machine word (1, 2 or 4 codes per byte), else None: half the gathers of
    :func:`_byte_table`."""
    if fmt not in _PAIR_TABLES:
        words = _byte_table(fmt)
        if words is None or words.dtype.itemsize > 4:
            _PAIR_TABLES[fmt] = None
        else:
            n = words.dtype.itemsize
            wide = words.astype(np.uint64)
            v = np.arange(1 << 16)
            pair = wide[v & 0xFF] | (wide[v >> 8] << np.uint64(8 * n))
            _PAIR_TABLES[fmt] = pair.astype(f"<u{2 * n}")
    return _PAIR_TABLES[fmt]


def _field_words(raw: np.ndarray) -> tuple:
    """``raw``'s bytes as words for 2-bit field arithmetic: ``(v, m)``, ``v`` eight bytes per uint64
    where the layout allows (else the bytes themselves) and ``m`` the low bit of every 2-bit field
    (0x55 in each byte) in ``v``'s type."""
    flat = raw.reshape(-1)
    if flat.size % 8 == 0 and flat.flags.c_contiguous:
        return flat.view(np.uint64), np.uint64(0x5555555555555555)
    return flat, np.uint8(0x55)


def _invalid_test(fmt: str):
    """A test ``raw -> bool``: does any byte of ``raw`` fail :data:`hw.formats.BYTE_VALID` (the
    decoder's error flag)? Derived from the format's table: a prefix of valid byte values (``base3``:
    0..242) is a maximum; radix-4 digits (``2bit``) are 2-bit fields and the invalid code 3 is a field
    of ones, found eight bytes at a time; any other table is read byte by byte."""
    valid = BYTE_VALID[fmt]
    n = int(valid.sum())
    codec = CODECS[fmt]
    if valid[:n].all():
        return lambda raw: int(raw.max()) >= n
    if codec.radix == 4 and INVALID_CODE == 3:
        def fields_of_ones(raw):
            v, m = _field_words(raw)
            return bool(np.any(v & (v >> v.dtype.type(1)) & m))
        return fields_of_ones
    return lambda raw: not bool(valid[raw].all())


_INVALID = {fmt: _invalid_test(fmt) for fmt in BYTE_VALID}


def invalid_bytes(fmt: str, raw: np.ndarray) -> bool:
    """Whether a byte of the weight stream bytes ``raw`` is not ``BYTE_VALID[fmt]``."""
    return _INVALID[fmt](raw)


class ByteBudgetLRU:
    """Items of a known size in bytes, least recently used first out once more than ``max_bytes``
    are held (an item larger than the whole budget is not kept). ``hits`` / ``misses`` count the
    lookups."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self):
        return len(self._items)

    def clear(self):
        self._items.clear()
        self.nbytes = 0

    def _lookup(self, key):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def _store(self, key, item: tuple, size: int) -> None:
        """Keep ``item`` (its last element is ``size``)."""
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.nbytes -= old[-1]
        self._items[key] = item
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old[-1]


def _default_budget() -> int:
    """A quarter of the physical memory, at most 4 GiB (1 GiB where the memory size is unknown)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
    return int(min(4 << 30, memory // 4))


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal`` of two uint8 arrays, eight bytes at a time where they allow it."""
    if a.shape != b.shape:
        return False
    if a.size % 8 == 0 and a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(np.array_equal(a.reshape(-1).view(np.uint64), b.reshape(-1).view(np.uint64)))
    return bool(np.array_equal(a, b))


class DecodedWeights(ByteBudgetLRU):
    """The decoded weight matrices of earlier runs: key ``(format, geometry, sample of the raw
    bytes)`` -> ``(raw bytes, w, invalid, nonzero, negated, size)``; an entry is used only when its raw
    bytes equal the group's (compared in full). At most ``max_bytes`` of matrices are kept
    (``$TERN_SIM_DECODED_MB``; default a quarter of the machine's memory, at most 4096 MiB: the
    decoded weights of a whole 30-layer 2B4T model take about 3.1 GiB; 0 turns the cache off), least
    recently used first out."""

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            env = os.environ.get("TERN_SIM_DECODED_MB")
            max_bytes = int(float(env) * (1 << 20)) if env is not None else _default_budget()
        super().__init__(max_bytes)

    @staticmethod
    def key(geometry: tuple, raw: np.ndarray) -> tuple:
        flat = raw.reshape(-1)
        step = max(1, flat.size // 4096)
        return (*geometry, raw.shape, flat[::step][:4096].tobytes(), flat[-64:].tobytes())

    def get(self, key: tuple, raw: np.ndarray):
        """``(w, invalid, nonzero, negated)`` of the stored entry whose bytes equal ``raw``, or None."""
        item = self._items.get(key)
        if item is not None and _same_bytes(item[0], raw):
            self._lookup(key)
            self.hits += 1
            return item[1:5]
        self.misses += 1
        return None

    def put(self, key: tuple, raw: np.ndarray, w: np.ndarray, invalid, nz: int, neg: int) -> bool:
        """Keep the decoded matrix ``w`` of ``raw``; whether it is kept (not larger than the whole
        budget)."""
        size = w.nbytes + 2 * raw.nbytes + sum(len(k) for k in key[-2:])
        if size > self.max_bytes:
            return False
        w.flags.writeable = False
        self._store(key, (np.ascontiguousarray(raw).copy(), w, invalid, nz, neg, size), size)
        return True


#: The decoded weights kept by :func:`hw.sim.simulate` (one per process).
DECODED = DecodedWeights()


class Datapath:
    """Activation buffer contents, the MATMULs whose results are still to compute, and the results.

    ``outputs`` (n_results, rows) int64; ``tokens``, ``nonzero_terms``, ``negated_terms``: the
    data-dependent event counts (:mod:`hw.sim.events`); ``invalid``: a weight byte decoded so far is
    not valid (padding included). ``log`` lists the LOAD_ACTs and MATMULs in program order, as
    :meth:`replay` takes them (a run whose timing is known already needs only the values)."""

    def __init__(self, config, act_beats: np.ndarray, wgt_beats: np.ndarray, n_results: int):
        self.config = config
        self.act_beats, self.wgt_beats = act_beats, wgt_beats
        self.act_buffer = np.zeros((config.act_depth, config.lanes), dtype=np.int8)
        self.outputs = np.zeros((n_results, config.rows), dtype=np.int64)
        self.pending: list = []
        self.log: list = []
        self.tokens = self.nonzero_terms = self.negated_terms = 0
        self.invalid = False
        #: products held for :meth:`finish`: id(w) -> (w, [(x, first result, tokens, G), ...])
        self.deferred: dict = {}
        self.deferred_bytes = 0

    @property
    def weight_error(self) -> bool:
        """Error bit 1: a byte of the weight words decoded so far is not
        :data:`hw.formats.BYTE_VALID` (the decoder's sticky error flag)."""
        return self.invalid

    def load_act(self, addr: int, first_beat: int, count: int) -> None:
        """LOAD_ACT: activation beats ``first_beat ..`` into words ``addr ..`` (the MATMULs before
        it read the old contents, so their results are computed first)."""
        self.log.append((addr, first_beat, count))
        if self.pending:
            self.flush()
        self.act_buffer[addr:addr + count] = self.act_beats[first_beat:first_beat + count]

    def matmul(self, addr: int, k_words: int, tokens: int, first_word: int, first_result: int) -> None:
        """MATMUL: remembered until the activation buffer changes or the run ends."""
        job = (addr, k_words, tokens, first_word, first_result)
        self.log.append(job)
        self.pending.append(job)

    def flush(self) -> None:
        """Compute the results of the pending MATMULs (some products held for :meth:`finish`)."""
        _compute_results(self, self.pending)
        self.pending.clear()

    def replay(self, steps: list) -> None:
        """The values of a run whose datapath steps are ``steps`` (:func:`plan` of another run's
        :attr:`log`): what :meth:`load_act`, :meth:`matmul` and :meth:`flush` do, without keeping a
        log."""
        buf, beats = self.act_buffer, self.act_beats
        for op in steps:
            if len(op) == 3:
                addr, first, count = op
                buf[addr:addr + count] = beats[first:first + count]
            else:
                _compute_group(self, *op)
        self.finish()

    def finish(self) -> None:
        """Compute the products held back (:func:`_compute_group`): one product per weight matrix,
        its activation rows stacked (the token groups of a prefill call stream the same weights)."""
        R, acc_width = self.config.rows, self.config.acc_width
        for w, parts in self.deferred.values():
            x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
            d = wrap_signed(_product(x, w), acc_width)
            r = 0
            for _, n0, T, G in parts:
                # MATMUL gi of the group wrote results n0 + gi * T ..
                self.outputs[n0:n0 + G * T] = d[r:r + T].reshape(T, G, R).transpose(1, 0, 2).reshape(G * T, R)
                r += T
        self.deferred.clear()
        self.deferred_bytes = 0


def plan(log: list) -> list:
    """A :attr:`Datapath.log` as :meth:`Datapath.replay` runs it: the LOAD_ACTs ``(addr, first beat,
    count)`` as they are, and every run of consecutive MATMULs over the same activation words (their
    weight words and results consecutive) as one group ``(addr, k_words, tokens, first word, first
    result, G)`` that shares one matrix product."""
    out: list = []
    for op in log:
        last = out[-1] if out else ()
        if len(op) == 5 and len(last) == 6 and last[:3] == op[:3] \
                and op[3] == last[3] + last[1] * last[5] and op[4] == last[4] + last[2] * last[5]:
            out[-1] = (*last[:5], last[5] + 1)
        else:
            out.append(op if len(op) == 3 else (*op, 1))
    return out


def _decode(cfg, raw: np.ndarray, G: int, kw: int, K: int, row_bytes):
    """The ``(G * rows, K)`` int8 weight matrix of a group's weight words ``raw`` (one row per
    word), whether a byte of the words is invalid (padding included) and the nonzero and negated
    weights."""
    R, L = cfg.rows, cfg.lanes
    fmt = cfg.weight_format
    table = BYTE_WEIGHTS[fmt]
    words = _byte_table(fmt)
    counts = None
    if row_bytes is not None:
        payload = R * row_bytes        # bytes of a word that carry weights (the rest: padding)
        # the bytes read in matrix order (word k's row r after row r of word k - 1), looked up in
        # one pass that writes the matrix (np.take: no bounds checks with mode="clip", every byte
        # value and byte pair indexes its table)
        pairs = _pair_table(fmt) if row_bytes % 2 == 0 else None
        if pairs is not None:
            # two bytes per lookup (a 64 Ki-entry table)
            b = raw[:, :payload].view("<u2").reshape(G, kw, R, row_bytes // 2).transpose(0, 2, 1, 3)
            w = np.take(pairs, b, mode="clip").view(np.int8).reshape(G * R, K)
        else:
            b = raw[:, :payload].reshape(G, kw, R, row_bytes).transpose(0, 2, 1, 3)
            w = (np.take(words, b, mode="clip").view(np.int8) if words is not None
                 else np.take(table, b, axis=0, mode="clip")).reshape(G * R, K)
        count = _FIELD_COUNTS[fmt]
        if count is not None and payload == raw.shape[1]:
            counts = count(raw)
    else:
        w = table[raw].reshape(G * kw, -1)[:, :R * L]
        w = w.reshape(G, kw, R, L).transpose(0, 2, 1, 3).reshape(G * R, K)
    if counts is None:
        counts = int(np.count_nonzero(w)), _negatives(w)
    return w, invalid_bytes(fmt, raw), *counts


def _field_counter(fmt: str):
    """A count ``raw -> (nonzero weights, negative weights)`` over whole bytes ``raw`` read as 2-bit
    fields (radix-4 formats with four codes per byte, ``2bit``): the fields of each code value counted
    by popcounts eight bytes at a time, each code's weight read from the format's table (an invalid
    code reads 0). None for other formats (their weights are counted after decoding)."""
    codec = CODECS[fmt]
    if codec.radix != 4 or codec.codes_per_byte != 4:
        return None
    weight = [int(BYTE_WEIGHTS[fmt][c * 0x55, 0]) for c in range(4)]   # byte 0x55 * c: four codes c
    nonzero = [c for c in range(4) if weight[c] != 0]
    negative = [c for c in range(4) if weight[c] < 0]

    def count(raw):
        v, m = _field_words(raw)
        lo, hi = v & m, (v >> v.dtype.type(1)) & m
        n = [0, 0, 0, int(np.bitwise_count(lo & hi).sum(dtype=np.int64))]
        n[1] = int(np.bitwise_count(lo).sum(dtype=np.int64)) - n[3]
        n[2] = int(np.bitwise_count(hi).sum(dtype=np.int64)) - n[3]
        n[0] = 4 * raw.size - n[1] - n[2] - n[3]
        return sum(n[c] for c in nonzero), sum(n[c] for c in negative)
    return count


_FIELD_COUNTS = {fmt: _field_counter(fmt) for fmt in BYTE_WEIGHTS}


_SIGNS = np.uint64(0x8080808080808080)


def _negatives(w: np.ndarray) -> int:
    """The negative entries of the int8 matrix ``w``: its sign bits, counted eight bytes at a time
    where the layout allows."""
    flat = w.reshape(-1)
    if flat.size % 8 or not flat.flags.c_contiguous:
        return int(np.count_nonzero(flat < 0))
    return int(np.bitwise_count(flat.view(np.uint64) & _SIGNS).sum(dtype=np.int64))


_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def int8_dot_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has int8 dot-product instructions that ``torch._int_mm`` runs on (x86 flags
    ``avx512_vnni``, ``avx_vnni`` or ``amx_int8`` in ``cpuinfo``); False where that cannot be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return not _INT8_DOT_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


def product_kind() -> str:
    """How :func:`_product` multiplies on this machine: :data:`PRODUCT`, or where that is None,
    ``"int8"`` on a CPU with int8 dot-product instructions and ``"float"`` elsewhere."""
    kind = PRODUCT or ("int8" if int8_dot_cpu() else "float")
    if kind not in ("int8", "float"):
        raise ValueError(f"hw.sim.results.PRODUCT must be 'int8', 'float' or None, not {PRODUCT!r}")
    return kind


def _product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` (int8 (T, K) and (M, K)) exactly, as int64, the way :func:`product_kind` says;
    float where ``128 * K`` reaches ``2**31`` and where ``K`` is 1 (torch 2.13's CPU ``_int_mm``
    returns wrong sums for a (T, 1) x (1, M) product with M > 1)."""
    if product_kind() == "int8" and 2 <= x.shape[1] and 128 * x.shape[1] < (1 << 31):
        return _product_int8(x, w)
    return _product_float(x, w)


def _product_int8(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` by ``torch._int_mm`` (int8 x int8 -> int32; exact where ``128 * K < 2**31``)."""
    import torch
    with warnings.catch_warnings():      # ``w`` may be read-only (kept in DECODED); it is only read
        warnings.simplefilter("ignore", UserWarning)
        wt = torch.from_numpy(np.ascontiguousarray(w)).T
    d = torch._int_mm(torch.from_numpy(np.ascontiguousarray(x)), wt)
    return d.numpy().astype(np.int64)


def _product_float(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` exactly, as int64: float32 BLAS where ``|partial sums| <= 128 * K < 2**24``,
    float64 below ``2**53``; ``w`` converted a block of :data:`PRODUCT_BLOCK_BYTES` at a time."""
    T, K = x.shape
    M = w.shape[0]
    dt = np.float32 if 128 * K < (1 << 24) else np.float64
    rows = max(1, PRODUCT_BLOCK_BYTES // (np.dtype(dt).itemsize * max(K, 1)))
    xt = np.ascontiguousarray(x.T, dtype=dt)                 # (K, T)
    if M <= rows:
        return (w.astype(dt) @ xt).T.astype(np.int64)
    out = np.empty((M, T), dtype=dt)
    block = np.empty((rows, K), dtype=dt)
    for r0 in range(0, M, rows):
        n = min(rows, M - r0)
        np.copyto(block[:n], w[r0:r0 + n], casting="unsafe")
        np.matmul(block[:n], xt, out=out[r0:r0 + n])
    return out.T.astype(np.int64)


def _compute_results(dp: Datapath, jobs: list) -> None:
    """Result vectors of the MATMULs in ``jobs`` (addr, k_words, tokens, first word, first result);
    consecutive MATMULs over the same activation words share one matrix product."""
    for group in plan(jobs):
        _compute_group(dp, *group)


def _compute_group(dp: Datapath, addr: int, kw: int, T: int, g0: int, n0: int, G: int) -> None:
    """The results ``n0 ..`` of ``G`` consecutive MATMULs over the activation words ``addr ..``, each
    of ``kw`` words and ``T`` tokens, whose weight words start at ``g0``.

    The weights are laid out as a ``(G * rows, K)`` matrix (one row per output feature of the group,
    K ordered as the activation words) and multiplied as ``x @ w.T``. When every byte's codes lie in
    one row (``lanes`` a multiple of the codes per byte) the bytes are put in that order before they
    are decoded, so the table lookup writes the matrix directly; otherwise the decoded words are
    reordered."""
    cfg = dp.config
    R, L, bpw, B, tpb = cfg.rows, cfg.lanes, cfg.beats_per_word, cfg.bus_bytes, cfg.trits_per_byte
    K = kw * L
    x = dp.act_buffer[addr:addr + kw * T].reshape(T, K)
    # the group's words are consecutive in the weight stream
    raw = dp.wgt_beats[g0 * bpw:(g0 + kw * G) * bpw].reshape(G * kw, bpw * B)
    key = DECODED.key((cfg.weight_format, R, L, bpw, B, kw, G), raw)
    hit = DECODED.get(key, raw)
    if hit is not None:
        w, invalid, nz, neg = hit
        kept = True
    else:
        w, invalid, nz, neg = _decode(cfg, raw, G, kw, K, L // tpb if L % tpb == 0 else None)
        kept = DECODED.put(key, raw, w, invalid, nz, neg)
    dp.invalid = dp.invalid or bool(invalid)
    if kept:
        # the matrix stays in DECODED: its product waits for :meth:`Datapath.finish`, which stacks
        # the activations of every group of the run that uses it (the entry holds ``w``, so its id
        # is not reused while it waits)
        entry = dp.deferred.get(id(w))
        if entry is None:
            if dp.deferred_bytes + w.nbytes > DEFER_MAX_BYTES:
                dp.finish()
            entry = dp.deferred[id(w)] = (w, [])
            dp.deferred_bytes += w.nbytes
        entry[1].append((x.copy(), n0, T, G))
    else:
        d = wrap_signed(_product(x, w), cfg.acc_width).reshape(T, G, R)
        # MATMUL gi of the group wrote results n0 + gi * T ..
        dp.outputs[n0:n0 + G * T] = d.transpose(1, 0, 2).reshape(G * T, R)
    dp.tokens += T * G
    dp.nonzero_terms += T * nz
    dp.negated_terms += T * neg
