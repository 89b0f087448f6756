"""hw.formats: exhaustive byte round trips, invalid bytes, per-byte tables, stream layout checked
against explicit per-code loops written from the format text (docs/FORMATS.md)."""

import random

import numpy as np
import pytest

from hw.config import TernConfig
from hw.formats import (BYTE_CODES, BYTE_VALID, BYTE_WEIGHTS, CODECS, FormatError, pack_2bit, pack_base3,
                        stream_error, stream_to_weight_words, unpack_2bit, unpack_base3,
                        weight_words_to_stream)
from helpers import random_stream_config


# -- independent slow references: one code at a time, straight from the contract ------------------

def ref_byte_base3(trits5):
    return sum((t + 1) * 3 ** j for j, t in enumerate(trits5))


def ref_digits_base3(byte):
    out = []
    for _ in range(5):
        out.append(byte % 3 - 1)
        byte //= 3
    return out


def ref_stream(words, cfg):
    """Explicit loops: flat code i = r*L + l; 2bit code i -> byte i//4 bits 2*(i%4); base3 trit i ->
    digit i%5 of byte i//5; byte j of a word -> lane j%B of beat j//B; padding = zero weight."""
    R, L, B = cfg.rows, cfg.lanes, cfg.bus_bytes
    tpb = 4 if cfg.weight_format == "2bit" else 5
    bpw = -(-(R * L) // (B * tpb))
    beats = []
    for word in words:
        nbytes = bpw * B
        trits = [0] * (nbytes * tpb)
        for r in range(R):
            for l in range(L):
                trits[r * L + l] = int(word[r][l])
        data = []
        for j in range(nbytes):
            chunk = trits[j * tpb:(j + 1) * tpb]
            if tpb == 4:
                data.append(sum((t + 1) << (2 * q) for q, t in enumerate(chunk)))
            else:
                data.append(ref_byte_base3(chunk))
        for bi in range(bpw):
            beats.append([data[bi * B + lane] for lane in range(B)])
    return np.array(beats, dtype=np.int64).reshape(-1, B)


# -- byte level ------------------------------------------------------------------------------------

def test_base3_all_valid_bytes_round_trip():
    data = np.arange(243, dtype=np.uint8)
    trits = unpack_base3(data)
    assert trits.dtype == np.int8 and trits.shape == (243 * 5,)
    for b in range(243):
        assert trits[5 * b:5 * b + 5].tolist() == ref_digits_base3(b), b
    assert np.array_equal(pack_base3(trits), data)


def test_base3_all_trit_combinations():
    combos = [[(n // 3 ** j) % 3 - 1 for j in range(5)] for n in range(243)]
    packed = pack_base3(np.array(combos))
    assert packed.tolist() == [ref_byte_base3(c) for c in combos]


@pytest.mark.parametrize("bad", range(243, 256))
def test_base3_invalid_bytes_rejected(bad):
    data = np.array([0, 121, 242, bad, bad, 5], dtype=np.uint8)
    with pytest.raises(FormatError, match=rf"invalid base-3 byte {bad} at position 3 \(2 invalid"):
        unpack_base3(data)
    lax = unpack_base3(data, strict=False)
    assert lax[15:25].tolist() == [0] * 10                # invalid bytes decode as zero weights
    assert lax[:15].tolist() == ref_digits_base3(0) + ref_digits_base3(121) + ref_digits_base3(242)


def test_2bit_all_bytes_round_trip():
    data = np.arange(256, dtype=np.uint8)
    codes = unpack_2bit(data)
    for b in range(256):
        assert codes[4 * b:4 * b + 4].tolist() == [(b >> (2 * q)) & 3 for q in range(4)], b
    assert np.array_equal(pack_2bit(codes), data)


def test_known_values():
    assert pack_2bit([1, 1, 1, 1]).tolist() == [0x55]
    assert pack_2bit([2, 0, 1, 3]).tolist() == [0b11_01_00_10]
    assert pack_base3([0, 0, 0, 0, 0]).tolist() == [121]
    assert pack_base3([1, -1, 0, 0, 1]).tolist() == [2 + 0 * 3 + 1 * 9 + 1 * 27 + 2 * 81]
    assert pack_base3([1, 1, 1, 1, 1]).tolist() == [242]
    assert pack_base3([-1] * 5).tolist() == [0]
    # padding of a partial byte: zero weights
    assert pack_2bit([0]).tolist() == [0b01_01_01_00]
    assert pack_base3([1]).tolist() == [2 + 3 + 9 + 27 + 81]


def test_random_round_trips():
    rng = np.random.default_rng(5)
    for n in (1, 4, 5, 17, 1000):
        t = rng.integers(-1, 2, size=n)
        assert np.array_equal(unpack_base3(pack_base3(t))[:n], t)
        c = rng.integers(0, 4, size=n)
        assert np.array_equal(unpack_2bit(pack_2bit(c))[:n], c)


def test_bad_values():
    with pytest.raises(FormatError, match="invalid code 4 at position 1"):
        pack_2bit([0, 4, 1])
    with pytest.raises(FormatError, match="invalid trit 2 at position 2"):
        pack_base3([0, 1, 2])
    with pytest.raises(FormatError, match="invalid byte 256 at position 0"):
        unpack_2bit([256])
    with pytest.raises(FormatError, match="dtype"):
        pack_base3([0.5])


# -- stream level ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_stream_against_explicit_loops(seed):
    rng = random.Random(seed)
    cfg = random_stream_config(rng)
    k = rng.randint(0, 4)
    words = np.array([[[rng.randint(-1, 1) for _ in range(cfg.lanes)] for _ in range(cfg.rows)]
                      for _ in range(k)], dtype=np.int8).reshape(k, cfg.rows, cfg.lanes)
    beats = weight_words_to_stream(words, cfg)
    msg = f"seed={seed} {cfg}"
    assert beats.dtype == np.uint8 and beats.shape == (k * cfg.beats_per_word, cfg.bus_bytes), msg
    assert np.array_equal(beats.astype(np.int64), ref_stream(words, cfg)), msg
    assert np.array_equal(weight_words_to_stream(cfg, words), beats), msg  # (config, words) order
    back = stream_to_weight_words(beats, cfg)
    assert back.dtype == np.int8 and np.array_equal(back, words), msg
    assert not stream_error(beats, cfg)


@pytest.mark.parametrize("fmt,zero", [("2bit", 0x55), ("base3", 121)])
def test_padding_is_zero_encoding(fmt, zero):
    # 3 x 5 = 15 codes; 2bit: 4 bytes (last holds 3 codes + 1 pad code), B=3 -> 2 beats, 2 pad bytes
    # base3: 3 bytes, B=3 -> 1 beat, no pad byte (15 is a multiple of 5)
    cfg = TernConfig(rows=3, lanes=5, bus_bytes=3, weight_format=fmt)
    words = -np.ones((1, 3, 5), dtype=np.int8)
    beats = weight_words_to_stream(words, cfg)
    if fmt == "2bit":
        assert beats.tolist() == [[0, 0, 0], [0b01_00_00_00, zero, zero]]
    else:
        assert beats.tolist() == [[0, 0, 0]]
    cfg = TernConfig(rows=1, lanes=7, bus_bytes=4, weight_format=fmt)
    beats = weight_words_to_stream(np.ones((2, 1, 7), dtype=np.int8), cfg)
    if fmt == "2bit":   # 7 codes -> 2 bytes (last: 3 codes + 1 zero), 2 pad bytes
        assert beats.tolist() == [[0xAA, 0b01_10_10_10, zero, zero]] * 2
    else:               # 7 trits -> 2 bytes (last: 2 trits + 3 zeros), 2 pad bytes
        assert beats.tolist() == [[242, 2 + 2 * 3 + 9 + 27 + 81, zero, zero]] * 2


def test_stream_invalid_bytes():
    cfg = TernConfig(rows=2, lanes=4, bus_bytes=2, weight_format="base3")  # 8 trits: 2 bytes, 1 beat
    beats = weight_words_to_stream(np.zeros((3, 2, 4), dtype=np.int8), cfg)
    beats[1, 1] = 250
    with pytest.raises(FormatError, match="invalid base-3 byte 250 at position 3"):
        stream_to_weight_words(beats, cfg)
    assert stream_error(beats, cfg)
    lax = stream_to_weight_words(beats, cfg, strict=False)
    assert np.array_equal(lax, np.zeros((3, 2, 4), dtype=np.int8))
    cfg2 = cfg.replace(weight_format="2bit")                               # 8 codes: 2 bytes
    beats2 = weight_words_to_stream(np.ones((1, 2, 4), dtype=np.int8), cfg2)
    beats2[0, 1] = 0b10_11_10_10                                            # code 3 at code 6
    with pytest.raises(FormatError, match="invalid 2bit code 3 at code 6"):
        stream_to_weight_words(beats2, cfg2)
    assert stream_error(beats2, cfg2)
    lax = stream_to_weight_words(beats2, cfg2, strict=False)
    assert lax.reshape(-1).tolist() == [1, 1, 1, 1, 1, 1, 0, 1]
    # an invalid padding byte is an error too
    cfg3 = TernConfig(rows=1, lanes=3, bus_bytes=2, weight_format="base3")
    beats3 = weight_words_to_stream(np.zeros((1, 1, 3), dtype=np.int8), cfg3)
    assert beats3.tolist() == [[121, 121]]
    beats3[0, 1] = 243
    assert stream_error(beats3, cfg3)
    with pytest.raises(FormatError, match="243 at position 1"):
        stream_to_weight_words(beats3, cfg3)


def test_stream_bad_shapes():
    cfg = TernConfig(rows=2, lanes=4, bus_bytes=1)      # 8 codes, 2 beats per word
    with pytest.raises(FormatError, match=r"shape \(k_words, 2, 4\)"):
        weight_words_to_stream(np.zeros((1, 4, 2), dtype=np.int8), cfg)
    with pytest.raises(FormatError, match="invalid weight 2"):
        weight_words_to_stream(np.full((1, 2, 4), 2), cfg)
    with pytest.raises(FormatError, match="not a whole number of words"):
        stream_to_weight_words(np.zeros((3, 1), dtype=np.uint8), cfg)
    with pytest.raises(FormatError, match=r"shape \(n_beats, 1\)"):
        stream_to_weight_words(np.zeros((2, 2), dtype=np.uint8), cfg)
    with pytest.raises(TypeError, match="TernConfig"):
        weight_words_to_stream(np.zeros((1, 2, 4)), {"rows": 2})


# -- the per-byte tables (the one decoding table of each format) -------------------------------------

def test_byte_tables_against_explicit_digits():
    for b in range(256):
        codes2 = [(b >> (2 * q)) & 3 for q in range(4)]
        assert BYTE_CODES["2bit"][b].tolist() == codes2, b
        assert BYTE_VALID["2bit"][b] == (3 not in codes2), b
        assert BYTE_WEIGHTS["2bit"][b].tolist() == [0 if c == 3 else c - 1 for c in codes2], b
        if b < 243:
            assert BYTE_CODES["base3"][b].tolist() == [t + 1 for t in ref_digits_base3(b)], b
            assert BYTE_WEIGHTS["base3"][b].tolist() == ref_digits_base3(b), b
        else:
            assert BYTE_CODES["base3"][b].tolist() == [3] * 5, b
            assert BYTE_WEIGHTS["base3"][b].tolist() == [0] * 5, b
        assert BYTE_VALID["base3"][b] == (b < 243), b
    for fmt, codec in CODECS.items():
        assert codec.name == fmt and BYTE_CODES[fmt] is codec.byte_codes
        assert BYTE_WEIGHTS[fmt].dtype == np.int8 and BYTE_CODES[fmt].dtype == np.uint8
        with pytest.raises(ValueError):                    # read-only: one table, never patched
            codec.byte_codes[0, 0] = 0
