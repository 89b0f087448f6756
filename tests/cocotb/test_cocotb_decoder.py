"""WeightDecoder (hw/rtl/decoder.py) on Verilator, both weight formats, every byte value.

* base3: all 243 valid bytes decode to their five base-3 digits; each invalid byte 243..255 raises the
  sticky error flag exactly one cycle after the beat carrying it was accepted, keeps it until reset,
  and decodes as five zero weights.
* 2bit: all 256 byte values; the 81 bytes without a code 3 decode to their four codes; each of the
  175 bytes with a code 3 raises the error flag (one cycle after acceptance) and reads code 3 as 0.
* multi-beat words (padding bytes, several byte lanes): seeded random ternary words, packed here by an
  independent packer (cross-checked with hw.formats), under random valid gaps and backpressure; an
  invalid padding byte raises the error without changing the word.
* with every beat offered and ``words.ready`` high, word ``n`` leaves in cycle ``(n + 1) * bpw``
  (the decoder's documented throughput and latency).

Expected words are computed with plain integer arithmetic (digits of the byte), never by the code
under test.
"""

import numpy as np
import pytest

from hw.backends.common import pack_payloads, unpack_payloads
from hw.config import TernConfig
from hw.formats import weight_words_to_stream
from hw.rtl.decoder import WeightDecoder
from hw.timing import StreamTiming, Timing
from tbutil import build_component, replay_hint, run_tb, seed


def _byte_codes(fmt: str, b: int) -> list[int]:
    """The 2-bit codes a byte carries (invalid bytes/codes read as code 1, a zero weight)."""
    if fmt == "base3":
        return [(b // 3 ** j) % 3 for j in range(5)] if b < 243 else [1] * 5
    return [((b >> (2 * j)) & 3) if ((b >> (2 * j)) & 3) != 3 else 1 for j in range(4)]


def _byte_bad(fmt: str, b: int) -> bool:
    return b >= 243 if fmt == "base3" else any(((b >> (2 * j)) & 3) == 3 for j in range(4))


def _expected_words(dec: WeightDecoder, cfg: TernConfig, beats: list[list[int]]) -> list[int]:
    """Pack the codes of each word's ``bpw`` beats (byte j = lane j % B of beat j // B) into the
    decoder's output layout (code i = r*L + l at bits 2i)."""
    bpw, n = cfg.beats_per_word, cfg.rows * cfg.lanes
    words = []
    for w in range(len(beats) // bpw):
        codes = []
        for beat in beats[w * bpw:(w + 1) * bpw]:
            for b in beat:
                codes += _byte_codes(cfg.weight_format, b)
        words.append(codes[:n])
    return pack_payloads(dec.words.payload.shape(), words)


def _pack_words(cfg: TernConfig, trits: np.ndarray) -> list[list[int]]:
    """Independent packer: (n, R, L) ternary -> beats of B bytes, padding with the zero encoding."""
    tpb, B, bpw = cfg.trits_per_byte, cfg.bus_bytes, cfg.beats_per_word
    beats = []
    for word in trits.reshape(len(trits), -1):
        codes = list(word + 1) + [1] * (bpw * B * tpb - word.size)
        if cfg.weight_format == "base3":
            data = [sum(int(codes[i + j]) * 3 ** j for j in range(5)) for i in range(0, len(codes), 5)]
        else:
            data = [sum(int(codes[i + j]) << (2 * j) for j in range(4)) for i in range(0, len(codes), 4)]
        beats += [data[k * B:(k + 1) * B] for k in range(bpw)]
    return beats


def _case(dec, beats, n_words, timing):
    return {"beats": pack_payloads(dec.beats.payload.shape(), beats), "n_words": n_words,
            "timing": timing.to_dict()}


def _stalls(s: int, p_in=0.3, p_out=0.4) -> Timing:
    return Timing(wgt=StreamTiming(p_in), out=StreamTiming(p_out), seed=s)


def _run(dec, cfg, cases, label):
    b = build_component(dec, f"dec_{cfg.weight_format}_r{cfg.rows}l{cfg.lanes}b{cfg.bus_bytes}")
    return run_tb(b, "tb_decoder", {"cases": cases}, label=label)["results"]


def _check_words(dec, cfg, res, beats, hint):
    exp = _expected_words(dec, cfg, beats)
    assert len(res["words"]) == len(exp), f"{len(res['words'])} words, expected {len(exp)}; {hint}"
    for i, (g, e) in enumerate(zip(res["words"], exp)):
        assert g == e, f"word {i}: got {g:#x}, expected {e:#x} (beats {beats[i * cfg.beats_per_word:(i + 1) * cfg.beats_per_word]}); {hint}"


@pytest.mark.parametrize("fmt", ["base3", "2bit"])
def test_every_byte_value(fmt, request):
    s = seed(7)
    hint = replay_hint(s, request.node.nodeid)
    rng = np.random.default_rng(s)
    tpb = 5 if fmt == "base3" else 4
    cfg = TernConfig(rows=1, lanes=tpb, weight_format=fmt, bus_bytes=1, act_depth=16, wgt_depth=4)
    assert cfg.beats_per_word == 1
    dec = WeightDecoder(cfg)
    good = [b for b in range(256) if not _byte_bad(fmt, b)]
    bad = [b for b in range(256) if _byte_bad(fmt, b)]
    assert len(good) == (243 if fmt == "base3" else 81) and len(bad) == 256 - len(good)
    shuffled = [[int(b)] for b in rng.permutation(good)]
    cases = [_case(dec, [[b] for b in good], len(good), Timing()),       # ideal: throughput check
             _case(dec, shuffled, len(good), _stalls(s))]
    for i, b in enumerate(bad):   # each invalid byte alone, between valid ones, from reset
        pre = [[int(x)] for x in rng.choice(good, int(rng.integers(0, 4)))]
        post = [[int(x)] for x in rng.choice(good, int(rng.integers(0, 4)))]
        cases.append(_case(dec, pre + [[b]] + post, len(pre) + 1 + len(post), _stalls(s + i)))
    res = _run(dec, cfg, cases, request.node.nodeid)

    _check_words(dec, cfg, res[0], [[b] for b in good], hint)
    assert res[0]["word_cycles"] == [n + 1 for n in range(len(good))], hint
    assert res[0]["error_first"] is None and res[0]["error_last"] == 0, hint
    _check_words(dec, cfg, res[1], shuffled, hint)
    assert res[1]["error_first"] is None and res[1]["error_last"] == 0, hint
    for r, case, b in zip(res[2:], cases[2:], bad):
        beats = unpack_payloads(dec.beats.payload.shape(), case["beats"]).tolist()
        _check_words(dec, cfg, r, beats, hint)
        k = beats.index([b])
        assert r["error_first"] == r["beat_cycles"][k] + 1, (
            f"byte {b}: error rose in cycle {r['error_first']}, its beat was accepted in cycle "
            f"{r['beat_cycles'][k]}; {hint}")
        assert r["error_last"] == 1, f"byte {b}: error flag not sticky; {hint}"


@pytest.mark.parametrize("rows,lanes,fmt,bus", [(3, 7, "base3", 2), (2, 5, "2bit", 1), (4, 8, "base3", 16),
                                                (5, 13, "2bit", 3)])
def test_multibeat_words_under_stalls(rows, lanes, fmt, bus, request):
    s = seed(100 + rows * lanes)
    hint = replay_hint(s, request.node.nodeid)
    rng = np.random.default_rng(s)
    cfg = TernConfig(rows=rows, lanes=lanes, weight_format=fmt, bus_bytes=bus, act_depth=16, wgt_depth=4)
    bpw = cfg.beats_per_word
    dec = WeightDecoder(cfg)
    trits = rng.integers(-1, 2, (60, rows, lanes))
    trits[0] = 1
    trits[1] = -1
    trits[2] = 0
    beats = _pack_words(cfg, trits)
    ref = np.asarray(weight_words_to_stream(cfg, trits), dtype=np.uint8).reshape(-1, bus)
    assert np.array_equal(ref, np.array(beats)), "independent packer disagrees with hw.formats"
    cases = [_case(dec, beats, len(trits), Timing()), _case(dec, beats, len(trits), _stalls(s)),
             _case(dec, beats, len(trits), _stalls(s + 1, 0.6, 0.1)),
             _case(dec, beats, len(trits), _stalls(s + 2, 0.1, 0.7))]
    padding = bpw * bus * cfg.trits_per_byte - rows * lanes >= cfg.trits_per_byte
    if padding:   # an invalid byte in the padding of word 5: error, same words
        bad = [list(b) for b in beats]
        bad[5 * bpw + bpw - 1][bus - 1] = 250 if fmt == "base3" else 0xFF
        cases.append(_case(dec, bad, len(trits), _stalls(s + 3)))
    # a source that withdraws valid before the transfer and drives garbage while it is low, a sink
    # that withdraws ready (hw.timing: p_withdraw, garbage): the same words
    cases.append(_case(dec, beats, len(trits),
                       Timing(wgt=StreamTiming(0.2, p_withdraw=0.4, garbage=True),
                              out=StreamTiming(0.2, p_withdraw=0.5), seed=s + 4)))
    res = _run(dec, cfg, cases, request.node.nodeid)
    _check_words(dec, cfg, res[-1], beats, hint)
    assert res[-1]["words"] == pack_payloads(dec.words.payload.shape(), trits + 1), hint
    assert res[-1]["error_first"] is None, hint
    for r in res[:4]:
        _check_words(dec, cfg, r, beats, hint)
        assert r["error_first"] is None, hint
    assert res[0]["word_cycles"] == [(n + 1) * bpw for n in range(len(trits))], hint
    exp_codes = pack_payloads(dec.words.payload.shape(), trits + 1)
    assert res[1]["words"] == exp_codes, hint
    if padding:
        r = res[4]
        assert r["words"] == exp_codes, f"a bad padding byte changed the words; {hint}"
        assert r["error_first"] == r["beat_cycles"][5 * bpw + bpw - 1] + 1 and r["error_last"] == 1, hint
