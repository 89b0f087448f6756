"""Weight decoder: weight stream beats (``hw.formats``) in, decoded weight words (2-bit codes) out.

Formats (``docs/FORMATS.md``, ``hw.formats``): ``2bit`` carries 4 codes per byte (code ``i`` in bits
``2*(i%4)``), ``base3`` carries 5 trits per byte (``byte = sum_j (t_j + 1) * 3**j``). A word of
``rows * lanes`` codes spans ``beats_per_word`` beats; byte ``j`` of a word is byte lane ``j % B`` of
beat ``j // B``; the tail of the last beat is padding (decoded, checked, dropped).

Base-3 digit extraction uses one 256-entry ROM per byte lane (``amaranth.lib.memory.Memory`` with
asynchronous read ports), filled at elaboration time with the five codes of every byte and an
"invalid" bit for bytes 243..255, both taken from the format's one decoding table
(``hw.formats.BYTE_CODES["base3"]``, ``BYTE_VALID["base3"]``). Why a ROM rather than constant
comparisons/subtractions: the comparison chain needs five dependent stages (compare against
162/81, subtract, compare against 54/27, ...), i.e. a deep carry chain per byte, while the ROM is a
single 8-input function per output bit (11 bits), which maps directly onto FPGA LUTs (a few LUT
levels, no carry chain) and is trivially verifiable: its contents are the codec's table, read at
elaboration time, and the hardware contains no multiplier, divider or arithmetic at all on this
path.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream
from amaranth.lib.data import ArrayLayout
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.formats import BYTE_CODES, BYTE_VALID, ZERO_CODE
from hw.rtl.buffers import weight_word_layout
from hw.rtl.component import ConfigComponent

__all__ = ["WeightDecoder", "wgt_beat_layout", "base3_rom_init"]


def wgt_beat_layout(config: TernConfig) -> ArrayLayout:
    """A weight stream beat: ``bus_bytes`` bytes, byte lane ``j`` = bits ``8j .. 8j+7``."""
    return ArrayLayout(8, config.bus_bytes)


def base3_rom_init() -> list[int]:
    """ROM contents, one entry per byte value: bits ``2j..2j+1`` = code of digit ``j`` (j = 0..4),
    bit 10 = invalid; made from the base3 codec's table. Invalid bytes (243..255) decode to zero
    weights (code 1) with bit 10 set."""
    valid = BYTE_VALID["base3"]
    digits = np.where(valid[:, None], BYTE_CODES["base3"], ZERO_CODE).astype(np.int64)
    entries = (digits << (2 * np.arange(digits.shape[1]))).sum(axis=1) | (~valid).astype(np.int64) << 10
    return [int(e) for e in entries]


class WeightDecoder(ConfigComponent):
    """Decodes the weight stream into weight words, one beat per cycle.

    Parameters
    ----------
    config : TernConfig
        Uses ``rows`` (R), ``lanes`` (L), ``bus_bytes`` (B), ``weight_format`` and the derived
        ``beats_per_word`` (bpw) and ``trits_per_beat``.

    Ports (``sync`` domain)
    -----------------------
    beats : In(stream.Signature(ArrayLayout(unsigned(8), B)))
        Weight stream beats. ``beats.ready`` is high unless the decoder holds a finished word that
        ``words`` has not taken and the offered beat would complete the next one: precisely
        ``beats.ready = (beat_count != bpw - 1) | ~words.valid | words.ready`` (combinational in
        ``words.ready``). So with ``words.ready`` high one beat is accepted every cycle, for every
        bpw including 1; under backpressure the decoder holds one finished word plus at most
        ``bpw - 1`` beats of the next word.
    words : Out(stream.Signature(ArrayLayout(ArrayLayout(unsigned(2), L), R)))
        Decoded weight words, ``codes[r][l]`` = code of flat index ``r*L + l``. Always valid codes
        0..2: invalid input (a 2bit code 3, a base3 byte 243..255) decodes as zero weights (code 1).
        ``words.valid`` and ``words.payload`` are registers.
    error : Out(1)
        Sticky: set in the cycle after a beat containing an invalid byte/code (payload or padding)
        was accepted; cleared only by reset.

    Timing: :attr:`latency` = 1: a word's payload and ``words.valid`` appear in the cycle after its
    last beat was accepted. With ``words.ready`` high and a beat offered every cycle, word ``n``
    (from 0) is transferred in cycle ``(n + 1) * bpw`` when beat 0 is accepted in cycle 0.

    Structure: B byte-lane decoders (2bit: wires, code 3 -> 1; base3: a 256x11 ROM each), a shift
    register ``beat_buf`` of ``bpw - 1`` decoded beats (the earlier beats of the word being
    assembled, oldest in the low bits), a beat counter ``beat_count``, and the output register
    ``word_r`` loaded with ``Cat(beat_buf, decoded last beat)`` truncated to ``R*L`` codes.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, {
            "beats": In(stream.Signature(wgt_beat_layout(config))),
            "words": Out(stream.Signature(weight_word_layout(config))),
            "error": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from the acceptance of a word's last beat to the word's first ``words.valid``
        (``config.decoder_latency``)."""
        return self.config.decoder_latency

    @property
    def max_buffered_beats(self) -> int:
        """Beats accepted beyond a finished word that ``words`` has not taken (``bpw - 1``)."""
        return self.config.beats_per_word - 1

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        self.check_built("decoder_latency", 1)   # one register stage: word_r / word_valid
        B, bpw, tpb = cfg.bus_bytes, cfg.beats_per_word, cfg.trits_per_byte
        beat_bits = 2 * tpb * B           # decoded codes of one beat
        word_bits = 2 * cfg.rows * cfg.lanes

        # -- byte-lane decoders ---------------------------------------------------------------------
        lane_codes, lane_bad = [], []
        if cfg.weight_format == "base3":
            m.submodules.base3_rom = rom = Memory(shape=11, depth=256, init=base3_rom_init())
        for j in range(B):
            byte = self.beats.payload[j]
            codes = Signal(2 * tpb, name=f"lane{j}_codes")
            bad = Signal(name=f"lane{j}_bad")
            if cfg.weight_format == "2bit":
                for q in range(4):
                    c = byte[2 * q:2 * q + 2]
                    is3 = c[0] & c[1]
                    # code 3 -> 1 (zero weight): bit 1 cleared, bit 0 kept
                    m.d.comb += codes[2 * q:2 * q + 2].eq(Cat(c[0], c[1] & ~is3))
                m.d.comb += bad.eq(Cat(byte[2 * q] & byte[2 * q + 1] for q in range(4)).any())
            else:
                port = rom.read_port(domain="comb")
                m.d.comb += [
                    port.addr.eq(byte),
                    codes.eq(port.data[:10]),
                    bad.eq(port.data[10]),
                ]
            lane_codes.append(codes)
            lane_bad.append(bad)
        beat_codes = Signal(beat_bits, name="beat_codes")
        beat_bad = Signal(name="beat_bad")
        m.d.comb += [beat_codes.eq(Cat(*lane_codes)), beat_bad.eq(Cat(*lane_bad).any())]

        # -- gearbox --------------------------------------------------------------------------------
        beat_count = Signal(range(bpw), name="beat_count")
        word_r = Signal(word_bits, name="word_r")
        word_valid = Signal(name="word_valid")
        error_r = Signal(name="error_r")
        last_beat = Signal(name="last_beat")
        accept = Signal(name="beat_accept")
        m.d.comb += [
            last_beat.eq(beat_count == bpw - 1),
            self.beats.ready.eq(~last_beat | ~word_valid | self.words.ready),
            accept.eq(self.beats.valid & self.beats.ready),
            self.words.valid.eq(word_valid),
            self.words.payload.eq(word_r),
            self.error.eq(error_r),
        ]
        if bpw > 1:
            beat_buf = Signal((bpw - 1) * beat_bits, name="beat_buf")
            full = Cat(beat_buf, beat_codes)
        else:
            full = beat_codes

        # Each register's enable depends on as little as possible: word_r loads whenever the word
        # register is free (its valid says whether a word arrived), and beat_buf shifts on a valid
        # beat that is not the last (such a beat is always accepted).
        word_free = Signal(name="word_free")
        beat_shift = Signal(name="beat_shift")
        m.d.comb += [
            word_free.eq(~word_valid | self.words.ready),
            beat_shift.eq(self.beats.valid & ~last_beat),
        ]
        with m.If(accept & beat_bad):
            m.d.sync += error_r.eq(1)
        with m.If(word_free):
            m.d.sync += [
                word_r.eq(full[:word_bits]),
                word_valid.eq(self.beats.valid & last_beat),
            ]
        with m.If(accept & last_beat):
            m.d.sync += beat_count.eq(0)
        with m.If(beat_shift):
            m.d.sync += beat_count.eq(beat_count + 1)
            if bpw > 1:
                m.d.sync += beat_buf.eq(Cat(beat_buf[beat_bits:], beat_codes))
        return m
