"""Hardware weight stream formats (``docs/FORMATS.md``), vectorized with numpy.

Ternary weights ``t`` in {-1, 0, +1} travel as 2-bit codes ``c = t + 1`` (0: -1, 1: 0, 2: +1; code 3 is
invalid).

* ``2bit``: four codes per byte, code ``i`` in bits ``2*(i % 4) .. 2*(i % 4) + 1`` of byte ``i // 4``.
  The zero-weight byte is ``0x55``.
* ``base3``: five trits per byte, ``byte = sum_j (t_j + 1) * 3**j`` (j = 0..4), trit ``i`` is digit
  ``i % 5`` of byte ``i // 5``. Bytes 243..255 are invalid. The zero-weight byte is ``121``.

Weight stream: a *weight word* is one ``lanes``-chunk of K for each of the ``rows`` rows of a tile,
``rows * lanes`` codes in row-major order (flat index ``r * lanes + l``). A word is packed into
``beats_per_word * bus_bytes`` bytes (its tail padded with zero weights); byte ``j`` of the word is
byte lane ``j % bus_bytes`` of beat ``j // bus_bytes``.
"""

from __future__ import annotations

import numpy as np

from hw.config import TernConfig

__all__ = [
    "FormatError", "ZERO_BYTE", "pack_2bit", "unpack_2bit", "pack_base3", "unpack_base3",
    "BASE3_TABLE", "BYTE_CODES", "BYTE_VALID", "BYTE_WEIGHTS", "weight_words_to_stream",
    "stream_to_weight_words", "stream_error",
]

#: The byte that encodes only zero weights, per format (used for padding).
ZERO_BYTE = {"2bit": 0x55, "base3": 121}

_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.int64)


def _base3_table() -> np.ndarray:
    """(243, 5) uint8: the five codes (digits) of every valid base-3 byte."""
    b = np.arange(243, dtype=np.int64)
    return ((b[:, None] // _POW3[None, :]) % 3).astype(np.uint8)


#: ``BASE3_TABLE[byte, j]`` = code (trit + 1) of digit ``j`` of a valid base-3 byte.
BASE3_TABLE = _base3_table()


def _byte_codes(fmt: str) -> np.ndarray:
    """(256, trits_per_byte) uint8: the 2-bit code (trit + 1) of each weight a stream byte carries, in
    the byte's order; an invalid code or byte gives code 3."""
    b = np.arange(256)
    if fmt == "2bit":
        return np.stack([(b >> (2 * j)) & 3 for j in range(4)], axis=1).astype(np.uint8)
    codes = np.full((256, 5), 3, dtype=np.uint8)
    codes[:243] = BASE3_TABLE
    return codes


#: ``BYTE_CODES[fmt][byte, j]``: the code (trit + 1; 3 = invalid) of weight ``j`` of a stream byte.
#: The one decoding table of each format: the simulator, the RTL decoder's ROM and the tests use it.
BYTE_CODES = {fmt: _byte_codes(fmt) for fmt in ("2bit", "base3")}
#: ``BYTE_VALID[fmt][byte]``: the byte holds no invalid code (what keeps the decoder's error flag low).
BYTE_VALID = {fmt: (codes != 3).all(axis=1) for fmt, codes in BYTE_CODES.items()}
#: ``BYTE_WEIGHTS[fmt][byte, j]``: the weight (int8, -1..1) of weight ``j`` of a byte, invalid codes
#: reading 0 (as the hardware decoder reads them).
BYTE_WEIGHTS = {fmt: np.where(codes == 3, 0, codes.astype(np.int8) - 1).astype(np.int8)
                for fmt, codes in BYTE_CODES.items()}


class FormatError(ValueError):
    """Bad input to a weight format encoder/decoder; the message names the value and its position."""


def _as_int_array(x, what):
    a = np.asarray(x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise FormatError(f"{what}: expected an integer array, got dtype {a.dtype}")
    return a


def _first_bad(mask, values, what, kind, valid=""):
    pos = np.flatnonzero(mask.reshape(-1))
    if pos.size:
        p = int(pos[0])
        hint = f"; valid: {valid}" if valid else ""
        raise FormatError(f"{what}: invalid {kind} {int(values.reshape(-1)[p])} at position {p}"
                          f" ({pos.size} invalid in total{hint})")


def pack_2bit(codes) -> np.ndarray:
    """Codes (any shape, values 0..3, flattened in C order) -> uint8 bytes, four codes per byte,
    code ``i`` in bits ``2*(i%4)``. A length that is not a multiple of 4 is padded with code 1
    (zero weight)."""
    c = _as_int_array(codes, "pack_2bit").reshape(-1)
    _first_bad((c < 0) | (c > 3), c, "pack_2bit", "code", "0..3")
    pad = (-c.size) % 4
    c = np.concatenate([c.astype(np.uint8), np.ones(pad, dtype=np.uint8)]).reshape(-1, 4)
    return (c[:, 0] | (c[:, 1] << 2) | (c[:, 2] << 4) | (c[:, 3] << 6)).astype(np.uint8)


def unpack_2bit(data) -> np.ndarray:
    """uint8 bytes -> codes (uint8, 0..3), four per byte. Code 3 is returned as is (invalid)."""
    b = _as_int_array(data, "unpack_2bit").reshape(-1)
    _first_bad((b < 0) | (b > 255), b, "unpack_2bit", "byte")
    b = b.astype(np.uint8)
    return np.stack([(b >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)


def pack_base3(trits) -> np.ndarray:
    """Trits (any shape, values -1..1, flattened in C order) -> uint8 bytes, five per byte,
    ``byte = sum_j (t_j + 1) * 3**j``. A length that is not a multiple of 5 is padded with 0."""
    t = _as_int_array(trits, "pack_base3").reshape(-1)
    _first_bad((t < -1) | (t > 1), t, "pack_base3", "trit", "-1, 0, 1")
    pad = (-t.size) % 5
    c = np.concatenate([t.astype(np.int64) + 1, np.ones(pad, dtype=np.int64)]).reshape(-1, 5)
    return (c @ _POW3).astype(np.uint8)


def unpack_base3(data, *, strict: bool = True) -> np.ndarray:
    """uint8 bytes -> trits (int8, -1..1), five per byte. Bytes 243..255 are invalid: with
    ``strict`` a :class:`FormatError` names the first one (value and position); otherwise their
    trits decode as 0 (what the hardware decoder does, besides raising its error flag)."""
    b = _as_int_array(data, "unpack_base3").reshape(-1)
    _first_bad((b < 0) | (b > 255), b, "unpack_base3", "byte")
    bad = b >= 243
    if strict:
        _first_bad(bad, b, "unpack_base3", "base-3 byte", "0..242")
    codes = BASE3_TABLE[np.where(bad, 121, b)]
    return (codes.astype(np.int8) - 1).reshape(-1)


def _check_config(config, what):
    if not isinstance(config, TernConfig):
        raise TypeError(f"{what}: config must be a hw.config.TernConfig, not {config!r}")


def weight_words_to_stream(words, config) -> np.ndarray:
    """Ternary weight words -> weight stream beats.

    ``words``: integer array (k_words, rows, lanes) of values in {-1, 0, +1}; ``config``: the
    :class:`TernConfig`. (The arguments are also accepted in the order ``(config, words)``.)
    Returns uint8 (k_words * beats_per_word, bus_bytes); each word's tail is padded with the
    zero-weight encoding."""
    if isinstance(words, TernConfig) and not isinstance(config, TernConfig):
        words, config = config, words
    _check_config(config, "weight_words_to_stream")
    R, L, B, bpw = config.rows, config.lanes, config.bus_bytes, config.beats_per_word
    w = _as_int_array(words, "weight_words_to_stream")
    if w.ndim != 3 or w.shape[1:] != (R, L):
        raise FormatError(f"weight_words_to_stream: words must have shape (k_words, {R}, {L}) for "
                          f"rows={R} lanes={L}, not {w.shape}")
    _first_bad((w < -1) | (w > 1), w, "weight_words_to_stream", "weight", "-1, 0, 1")
    # Vectorised in uint8 (no int64 temporaries: the driver packs hundreds of MB of 2B4T weights):
    # code = t + 1, padded to whole beats with code 1 (zero weight), then tpb codes per byte.
    k, tpb = w.shape[0], config.trits_per_byte
    codes = np.ones((k, bpw * B * tpb), dtype=np.uint8)
    codes[:, :R * L] = (w.reshape(k, R * L) + 1).astype(np.uint8)
    c = codes.reshape(k * bpw * B, tpb)
    if config.weight_format == "2bit":
        data = c[:, 0] | (c[:, 1] << 2) | (c[:, 2] << 4) | (c[:, 3] << 6)
    else:
        data = c[:, 0] + 3 * c[:, 1] + 9 * c[:, 2] + 27 * c[:, 3] + 81 * c[:, 4]   # <= 242: no wrap
    return data.astype(np.uint8).reshape(k * bpw, B)


def _stream_bytes(beats, config, what):
    B, bpw = config.bus_bytes, config.beats_per_word
    b = _as_int_array(beats, what)
    if b.ndim != 2 or b.shape[1] != B:
        raise FormatError(f"{what}: beats must have shape (n_beats, {B}) for bus_bytes={B}, "
                          f"not {b.shape}")
    if b.shape[0] % bpw:
        raise FormatError(f"{what}: {b.shape[0]} beats is not a whole number of words "
                          f"({bpw} beats per word)")
    _first_bad((b < 0) | (b > 255), b, what, "byte")
    return b.astype(np.uint8)


def stream_error(beats, config) -> bool:
    """True iff the stream holds an invalid byte (base3: 243..255) or code (2bit: 3) anywhere,
    padding included: the condition that sets the hardware decoder's sticky error flag."""
    _check_config(config, "stream_error")
    b = _stream_bytes(beats, config, "stream_error")
    if config.weight_format == "2bit":
        return bool((unpack_2bit(b) == 3).any())
    return bool((b >= 243).any())


def stream_to_weight_words(beats, config, *, strict: bool = True) -> np.ndarray:
    """Weight stream beats (n_beats, bus_bytes) -> ternary words int8 (k_words, rows, lanes); the
    inverse of :func:`weight_words_to_stream`. (Also accepts ``(config, beats)``.)

    Invalid bytes/codes (padding included) raise :class:`FormatError` naming the first one with
    ``strict``; otherwise they decode as zero weights, like the hardware decoder."""
    if isinstance(beats, TernConfig) and not isinstance(config, TernConfig):
        beats, config = config, beats
    _check_config(config, "stream_to_weight_words")
    R, L, bpw = config.rows, config.lanes, config.beats_per_word
    b = _stream_bytes(beats, config, "stream_to_weight_words")
    k = b.shape[0] // bpw
    if config.weight_format == "2bit":
        codes = unpack_2bit(b)
        if strict:
            pos = np.flatnonzero(codes == 3)
            if pos.size:
                p = int(pos[0])
                raise FormatError(f"stream_to_weight_words: invalid 2bit code 3 at code {p} "
                                  f"(byte {p // 4}, value {int(b.reshape(-1)[p // 4])})")
        trits = np.where(codes == 3, 0, codes.astype(np.int8) - 1).astype(np.int8)
    else:
        trits = unpack_base3(b, strict=strict)
    trits = trits.reshape(k, bpw * config.trits_per_beat)[:, :R * L]
    return trits.reshape(k, R, L).astype(np.int8)
