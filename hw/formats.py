"""Hardware weight stream formats (``docs/FORMATS.md``), vectorised with numpy.

Ternary weights ``t`` in {-1, 0, +1} travel as 2-bit codes ``c = t + 1`` (0: -1, 1: 0, 2: +1; code 3 is
invalid). Each format is one :class:`Codec`: a byte holds ``codes_per_byte`` codes as the digits of a
base-``radix`` number, ``byte = sum_j c_j * radix**j``, code ``i`` of a sequence being digit
``i % codes_per_byte`` of byte ``i // codes_per_byte``:

* ``2bit``: radix 4, four codes per byte (code ``j`` in bits ``2j .. 2j+1``). Every byte is four codes;
  a byte holding code 3 is invalid. The zero-weight byte is ``0x55``.
* ``base3``: radix 3, five trits per byte. Bytes 243..255 are no five digits and are invalid (all
  their weights read 0). The zero-weight byte is ``121``.

Weight stream: a *weight word* is one ``lanes``-chunk of K for each of the ``rows`` rows of a tile,
``rows * lanes`` codes in row-major order (flat index ``r * lanes + l``). A word is packed into
``beats_per_word * bus_bytes`` bytes (its tail padded with zero weights); byte ``j`` of the word is
byte lane ``j % bus_bytes`` of beat ``j // bus_bytes``.
"""

from __future__ import annotations

import itertools

import numpy as np

from hw.config import TRITS_PER_BYTE, WEIGHT_FORMATS, TernConfig

__all__ = [
    "FormatError", "Codec", "CODECS", "ZERO_CODE", "INVALID_CODE", "ZERO_BYTE", "pack_2bit",
    "unpack_2bit", "pack_base3", "unpack_base3", "BYTE_CODES", "BYTE_VALID",
    "BYTE_WEIGHTS", "weight_words_to_stream", "stream_to_weight_words", "stream_error",
]

#: The code of a zero weight (``t + 1`` for ``t = 0``): the padding code of every format.
ZERO_CODE = 1
#: The code no weight has: what every table reads for an invalid code or byte.
INVALID_CODE = 3


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


def _as_bytes(data, what) -> np.ndarray:
    b = _as_int_array(data, what)
    _first_bad((b < 0) | (b > 255), b, what, "byte")
    return b.astype(np.uint8)


class Codec:
    """One weight format: ``codes_per_byte`` codes per byte as the digits of a base-``radix`` number.

    The pack rule (:meth:`pack_digits`) is the whole format; the per-byte tables :attr:`byte_codes`,
    :attr:`byte_valid` and :attr:`byte_weights` are its inverse over every digit combination, and every
    decoder (this module, the simulator, the RTL decoder's ROM, the tests) reads them."""

    def __init__(self, name: str, radix: int, codes_per_byte: int, label: str):
        self.name, self.radix, self.codes_per_byte, self.label = name, radix, codes_per_byte, label
        self._places = [np.uint8(radix ** j) for j in range(codes_per_byte)]
        digits = np.array(list(itertools.product(range(radix), repeat=codes_per_byte)),
                          dtype=np.uint8)[:, ::-1]                # (radix**cpb, cpb), digit 0 first
        codes = np.full((256, codes_per_byte), INVALID_CODE, dtype=np.uint8)
        codes[self.pack_digits(digits)] = digits
        codes.setflags(write=False)
        #: ``(256, codes_per_byte)`` uint8: the code of each weight a byte carries (3 = invalid).
        self.byte_codes = codes
        #: ``(256,)`` bool: the byte holds no invalid code (what keeps the decoder's error flag low).
        self.byte_valid = (codes != INVALID_CODE).all(axis=1)
        #: ``(256, codes_per_byte)`` int8: the weights of a byte, an invalid code reading 0 (as the
        #: hardware decoder reads it).
        self.byte_weights = np.where(codes == INVALID_CODE, 0, codes.astype(np.int8) - 1).astype(np.int8)
        for table in (self.byte_valid, self.byte_weights):
            table.setflags(write=False)
        #: The byte of ``codes_per_byte`` zero weights (padding).
        self.zero_byte = int(self.pack_digits(np.full((1, codes_per_byte), ZERO_CODE, np.uint8))[0])

    def __repr__(self):
        return f"Codec({self.name!r})"

    # -- packing -------------------------------------------------------------------------------------

    def pack_digits(self, digits: np.ndarray) -> np.ndarray:
        """uint8 digits ``(..., codes_per_byte)``, each below :attr:`radix` (unchecked) -> uint8 bytes
        ``(...)``. Computed in uint8 (no wider temporaries: the driver packs hundreds of MB)."""
        out = digits[..., 0].copy()
        for j in range(1, self.codes_per_byte):
            out += digits[..., j] * self._places[j]
        return out

    def pack(self, codes, what: str | None = None) -> np.ndarray:
        """Codes (any shape, digits ``0 .. radix-1``, flattened in C order) -> uint8 bytes; a length
        that is not a multiple of :attr:`codes_per_byte` is padded with the zero-weight code."""
        what = what or f"pack_{self.name}"
        c = _as_int_array(codes, what).reshape(-1)
        _first_bad((c < 0) | (c >= self.radix), c, what, "code", f"0..{self.radix - 1}")
        cpb = self.codes_per_byte
        padded = np.full(-(-c.size // cpb) * cpb, ZERO_CODE, dtype=np.uint8)
        padded[:c.size] = c
        return self.pack_digits(padded.reshape(-1, cpb))

    # -- unpacking -----------------------------------------------------------------------------------

    def unpack(self, data, what: str | None = None) -> np.ndarray:
        """uint8 bytes -> their codes (uint8, flat, :attr:`codes_per_byte` per byte; 3 = invalid)."""
        return self.byte_codes[_as_bytes(data, what or f"unpack_{self.name}").reshape(-1)].reshape(-1)

    def check_valid(self, b: np.ndarray, what: str) -> None:
        """Raise :class:`FormatError` naming the first invalid code (``2bit``) or byte (``base3``)
        of the uint8 bytes ``b``."""
        bad = ~self.byte_valid[b.reshape(-1)]
        if not bad.any():
            return
        if self.radix ** self.codes_per_byte == 256:      # every byte is digits: a code is invalid
            pos = np.flatnonzero(self.byte_codes[b.reshape(-1)].reshape(-1) == INVALID_CODE)
            p = int(pos[0])
            raise FormatError(f"{what}: invalid {self.label} code {INVALID_CODE} at code {p} "
                              f"(byte {p // self.codes_per_byte}, "
                              f"value {int(b.reshape(-1)[p // self.codes_per_byte])})")
        _first_bad(bad, b, what, f"{self.label} byte", f"0..{self.radix ** self.codes_per_byte - 1}")

    def weights(self, data, *, strict: bool = True, what: str | None = None) -> np.ndarray:
        """uint8 bytes -> weights (int8, -1..1, flat, :attr:`codes_per_byte` per byte). Invalid codes
        or bytes raise :class:`FormatError` with ``strict``; otherwise they read 0 (as the hardware
        decoder reads them, besides raising its error flag)."""
        what = what or f"unpack_{self.name}"
        b = _as_bytes(data, what).reshape(-1)
        if strict:
            self.check_valid(b, what)
        return self.byte_weights[b].reshape(-1)


#: The codec of each weight format.
CODECS = {"2bit": Codec("2bit", 4, TRITS_PER_BYTE["2bit"], "2bit"),
          "base3": Codec("base3", 3, TRITS_PER_BYTE["base3"], "base-3")}
assert tuple(CODECS) == WEIGHT_FORMATS

#: ``BYTE_CODES[fmt][byte, j]``: the code (trit + 1; 3 = invalid) of weight ``j`` of a stream byte.
#: The one decoding table of each format: the simulator, the RTL decoder's ROM and the tests use it.
BYTE_CODES = {fmt: c.byte_codes for fmt, c in CODECS.items()}
#: ``BYTE_VALID[fmt][byte]``: the byte holds no invalid code (what keeps the decoder's error flag low).
BYTE_VALID = {fmt: c.byte_valid for fmt, c in CODECS.items()}
#: ``BYTE_WEIGHTS[fmt][byte, j]``: the weight (int8, -1..1) of weight ``j`` of a byte, invalid codes
#: reading 0 (as the hardware decoder reads them).
BYTE_WEIGHTS = {fmt: c.byte_weights for fmt, c in CODECS.items()}
#: The byte that encodes only zero weights, per format (used for padding).
ZERO_BYTE = {fmt: c.zero_byte for fmt, c in CODECS.items()}


# -- byte level -------------------------------------------------------------------------------------

def pack_2bit(codes) -> np.ndarray:
    """Codes (any shape, values 0..3, flattened in C order) -> uint8 bytes, four codes per byte,
    code ``i`` in bits ``2*(i%4)``. A length that is not a multiple of 4 is padded with code 1
    (zero weight)."""
    return CODECS["2bit"].pack(codes)


def unpack_2bit(data) -> np.ndarray:
    """uint8 bytes -> codes (uint8, 0..3), four per byte. Code 3 is returned as is (invalid)."""
    return CODECS["2bit"].unpack(data)


def pack_base3(trits) -> np.ndarray:
    """Trits (any shape, values -1..1, flattened in C order) -> uint8 bytes, five per byte,
    ``byte = sum_j (t_j + 1) * 3**j``. A length that is not a multiple of 5 is padded with 0."""
    t = _as_int_array(trits, "pack_base3").reshape(-1)
    _first_bad((t < -1) | (t > 1), t, "pack_base3", "trit", "-1, 0, 1")
    return CODECS["base3"].pack(t.astype(np.int64) + 1)


def unpack_base3(data, *, strict: bool = True) -> np.ndarray:
    """uint8 bytes -> trits (int8, -1..1), five per byte. Bytes 243..255 are invalid: with
    ``strict`` a :class:`FormatError` names the first one (value and position); otherwise their
    trits decode as 0 (what the hardware decoder does, besides raising its error flag)."""
    return CODECS["base3"].weights(data, strict=strict)


# -- stream level -----------------------------------------------------------------------------------

def _config_first(a, b, what):
    """``(x, config)`` from arguments given as ``(x, config)`` or ``(config, x)``."""
    if isinstance(a, TernConfig) and not isinstance(b, TernConfig):
        a, b = b, a
    if not isinstance(b, TernConfig):
        raise TypeError(f"{what}: config must be a hw.config.TernConfig, not {b!r}")
    return a, b


def weight_words_to_stream(words, config) -> np.ndarray:
    """Ternary weight words -> weight stream beats.

    ``words``: integer array (k_words, rows, lanes) of values in {-1, 0, +1}; ``config``: the
    :class:`TernConfig`. (The arguments are also accepted in the order ``(config, words)``.)
    Returns uint8 (k_words * beats_per_word, bus_bytes); each word's tail is padded with the
    zero-weight encoding."""
    words, config = _config_first(words, config, "weight_words_to_stream")
    R, L, B, bpw = config.rows, config.lanes, config.bus_bytes, config.beats_per_word
    w = _as_int_array(words, "weight_words_to_stream")
    if w.ndim != 3 or w.shape[1:] != (R, L):
        raise FormatError(f"weight_words_to_stream: words must have shape (k_words, {R}, {L}) for "
                          f"rows={R} lanes={L}, not {w.shape}")
    _first_bad((w < -1) | (w > 1), w, "weight_words_to_stream", "weight", "-1, 0, 1")
    # code = t + 1 in uint8, each word padded to whole beats with the zero-weight code
    k, codec = w.shape[0], CODECS[config.weight_format]
    codes = np.full((k, bpw * B * codec.codes_per_byte), ZERO_CODE, dtype=np.uint8)
    codes[:, :R * L] = (w.reshape(k, R * L) + 1).astype(np.uint8)
    return codec.pack_digits(codes.reshape(k * bpw * B, codec.codes_per_byte)).reshape(k * bpw, B)


def _stream_bytes(beats, config, what):
    B, bpw = config.bus_bytes, config.beats_per_word
    b = _as_int_array(beats, what)
    if b.ndim != 2 or b.shape[1] != B:
        raise FormatError(f"{what}: beats must have shape (n_beats, {B}) for bus_bytes={B}, "
                          f"not {b.shape}")
    if b.shape[0] % bpw:
        raise FormatError(f"{what}: {b.shape[0]} beats is not a whole number of words "
                          f"({bpw} beats per word)")
    return _as_bytes(b, what)


def stream_error(beats, config) -> bool:
    """True iff the stream holds an invalid byte (base3: 243..255) or code (2bit: 3) anywhere,
    padding included: the condition that sets the hardware decoder's sticky error flag."""
    beats, config = _config_first(beats, config, "stream_error")
    b = _stream_bytes(beats, config, "stream_error")
    return not bool(BYTE_VALID[config.weight_format][b].all())


def stream_to_weight_words(beats, config, *, strict: bool = True) -> np.ndarray:
    """Weight stream beats (n_beats, bus_bytes) -> ternary words int8 (k_words, rows, lanes); the
    inverse of :func:`weight_words_to_stream`. (Also accepts ``(config, beats)``.)

    Invalid bytes/codes (padding included) raise :class:`FormatError` naming the first one with
    ``strict``; otherwise they decode as zero weights, like the hardware decoder."""
    beats, config = _config_first(beats, config, "stream_to_weight_words")
    R, L, bpw = config.rows, config.lanes, config.beats_per_word
    b = _stream_bytes(beats, config, "stream_to_weight_words")
    k = b.shape[0] // bpw
    trits = CODECS[config.weight_format].weights(b, strict=strict, what="stream_to_weight_words")
    return trits.reshape(k, bpw * config.trits_per_beat)[:, :R * L].reshape(k, R, L)
