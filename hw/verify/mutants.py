"""A catalogue of RTL mutants: small, plausible bugs built into :class:`hw.rtl.top.TernCore` without
editing the RTL sources, and the gate that checks the differential suite kills every one.

A mutant replaces one block of the core by a wrapper with the block's own signature (the same ports
and latency) around the real block, which changes what crosses the block's boundary: a stable seam
that does not depend on how the block is written inside. While :func:`installed` is active the
core's elaboration (``hw.rtl.top``) builds the wrapper instead of the block, so both RTL backends
(the Amaranth simulation and the Verilog Verilator compiles) run the mutant, while the simulator and
the integer reference stay as they are. :func:`run_mutants` runs the random differential cases of
:func:`hw.verify.differential.run_verify` on each mutant: a mutant is *killed* when some case shows
an output or cycle mismatch, and *survives* otherwise. (A mutant the decoder makes equivalent, such
as reading the invalid code 3 as -1 in the dot units, has no place here: the decoder turns every
invalid code into a zero before it reaches them.)

Mutants (:data:`MUTANTS`):

* ``saturating_accumulator``: the accumulators saturate at ``acc_width`` bits instead of wrapping;
* ``accumulator_one_bit_narrow``: the accumulators wrap at ``acc_width - 1`` bits;
* ``pe_result_one_cycle_late``: the PE array's results (and their valid) one register later;
* ``zero_code_as_plus_one``: a decoder digit off: weight code 1 (zero) of lane 0 reads as +1;
* ``minus_128_as_127``: activation -128 clipped to 127 before the dot units (an int8 bug);
* ``last_lane_dropped``: the last lane's activation never reaches the dot units;
* ``rows_swapped``: results of rows 0 and 1 exchanged;
* ``invalid_byte_not_flagged``: the decoder's invalid-byte error never reaches the core;
* ``lanes_swapped``: the activations of lanes 0 and 1 exchanged before the dot units;
* ``accumulation_never_restarts``: the ``first`` flag is lost, accumulators carry over between tokens;
* ``wrong_bank_read``: the weight buffer reads the other bank;
* ``weight_bank_stuck``: every weight word is written into bank 0;
* ``act_read_off_by_one``: the activation buffer reads the word after the one addressed;
* ``act_top_word_not_written``: writes to the activation buffer's last word are lost;
* ``output_fifo_one_entry_short``: the output FIFO holds ``out_depth - 1`` results (a credit too many).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring

from hw.rtl.buffers import ActBuffer, OutputFIFO, WeightBuffer, result_layout
from hw.rtl.decoder import WeightDecoder
from hw.rtl.pe_array import PEArray

__all__ = ["Mutant", "MUTANTS", "installed", "run_mutants", "MutantError"]


class MutantError(ValueError):
    """An unknown mutant name."""


class _PEWrapper(PEArray):
    """A PE array (same signature and latency) around the real one; subclasses change the inputs it
    sees (:meth:`inputs`), the configuration it is built for (:meth:`inner_config`) or the results it
    gives (:meth:`outputs`)."""

    def inner_config(self, cfg):
        return cfg

    def inputs(self, m, inner):
        m.d.comb += [inner.act.eq(self.act), inner.codes.eq(self.codes)]

    def outputs(self, m, inner):
        m.d.comb += [self.result_valid.eq(inner.result_valid)]
        m.d.comb += [self.result[r].eq(inner.result[r]) for r in range(self.config.rows)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.real = inner = PEArray(self.inner_config(self.config))
        m.d.comb += [inner.valid.eq(self.valid), inner.first.eq(self.first), inner.last.eq(self.last)]
        self.inputs(m, inner)
        self.outputs(m, inner)
        return m


class _Saturating(_PEWrapper):
    def inner_config(self, cfg):
        return cfg.replace(acc_width=min(64, cfg.acc_width + 16))

    def outputs(self, m, inner):
        A = self.config.acc_width
        lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
        m.d.comb += self.result_valid.eq(inner.result_valid)
        for r in range(self.config.rows):
            x = inner.result[r]
            m.d.comb += self.result[r].eq(Mux(x > hi, hi, Mux(x < lo, lo, x)))


class _Narrow(_PEWrapper):
    def outputs(self, m, inner):
        A = self.config.acc_width
        m.d.comb += self.result_valid.eq(inner.result_valid)
        for r in range(self.config.rows):
            m.d.comb += self.result[r].eq(inner.result[r][:A - 1].as_signed())


class _Late(_PEWrapper):
    def outputs(self, m, inner):
        m.d.sync += self.result_valid.eq(inner.result_valid)
        m.d.sync += [self.result[r].eq(inner.result[r]) for r in range(self.config.rows)]


class _ZeroAsPlusOne(_PEWrapper):
    def inputs(self, m, inner):
        m.d.comb += [inner.act.eq(self.act), inner.codes.eq(self.codes)]
        for r in range(self.config.rows):
            c = self.codes[r][0]
            m.d.comb += inner.codes[r][0].eq(Mux(c == 1, 2, c))


class _Clip128(_PEWrapper):
    def inputs(self, m, inner):
        m.d.comb += inner.codes.eq(self.codes)
        for lane in range(self.config.lanes):
            a = self.act[lane]
            m.d.comb += inner.act[lane].eq(Mux(a == -128, 127, a))


class _LastLaneDropped(_PEWrapper):
    def inputs(self, m, inner):
        m.d.comb += [inner.act.eq(self.act), inner.codes.eq(self.codes)]
        m.d.comb += inner.act[self.config.lanes - 1].eq(0)


class _RowsSwapped(_PEWrapper):
    def outputs(self, m, inner):
        R = self.config.rows
        m.d.comb += self.result_valid.eq(inner.result_valid)
        perm = [1, 0] + list(range(2, R)) if R >= 2 else [0]
        m.d.comb += [self.result[r].eq(inner.result[perm[r]]) for r in range(R)]


class _NoByteError(WeightDecoder):
    def elaborate(self, platform):
        m = Module()
        m.submodules.real = inner = WeightDecoder(self.config)
        wiring.connect(m, wiring.flipped(self.beats), inner.beats)
        wiring.connect(m, inner.words, wiring.flipped(self.words))
        m.d.comb += self.error.eq(0)
        return m


class _LanesSwapped(_PEWrapper):
    def inputs(self, m, inner):
        m.d.comb += [inner.act.eq(self.act), inner.codes.eq(self.codes)]
        if self.config.lanes >= 2:
            m.d.comb += [inner.act[0].eq(self.act[1]), inner.act[1].eq(self.act[0])]


class _NeverRestarts(_PEWrapper):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += m.submodules.real.first.eq(0)     # the later assignment wins
        return m


def _buffer_wrapper(base, *, read_addr=None, write_addr=None, write_en=None):
    """A buffer of class ``base`` (same ports) around the real one, with the read address, the write
    address or the write enable changed by ``f(self, value)``."""
    def elaborate(self, platform):
        m = Module()
        m.submodules.real = inner = base(self.config)
        w, r = self.write, self.read
        m.d.comb += [
            inner.write.addr.eq(w.addr if write_addr is None else write_addr(self, w.addr)),
            inner.write.data.eq(w.data),
            inner.write.en.eq(w.en if write_en is None else write_en(self, w)),
            inner.read.addr.eq(r.addr if read_addr is None else read_addr(self, r.addr)),
            inner.read.en.eq(r.en),
            r.data.eq(inner.read.data),
        ]
        return m
    return type(f"Mutated{base.__name__}", (base,), {"elaborate": elaborate})


def _bank_bit(self):
    return 1 << (self.config.wgt_depth - 1).bit_length()


class _ShortFIFO(OutputFIFO):
    @classmethod
    def for_config(cls, config):
        return OutputFIFO(result_layout(config), config.out_depth - 1)


@dataclass(frozen=True)
class Mutant:
    """One mutant: ``name``, what it breaks, and the block of ``hw.rtl.top`` it replaces (``block``:
    the name TernCore builds it by) with ``cls``; ``applies(config)``: whether it changes anything
    on that configuration (e.g. ``rows_swapped`` needs two rows)."""
    name: str
    description: str
    block: str
    cls: type
    applies: Callable = lambda config: True


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("saturating_accumulator", "accumulators saturate instead of wrapping", "PEArray", _Saturating),
    Mutant("accumulator_one_bit_narrow", "accumulators wrap at acc_width - 1 bits", "PEArray", _Narrow),
    Mutant("pe_result_one_cycle_late", "PE results one register later", "PEArray", _Late),
    Mutant("zero_code_as_plus_one", "weight code 1 (zero) of lane 0 reads as +1", "PEArray", _ZeroAsPlusOne),
    Mutant("minus_128_as_127", "activation -128 clipped to 127", "PEArray", _Clip128),
    Mutant("last_lane_dropped", "the last lane's activation is lost", "PEArray", _LastLaneDropped),
    Mutant("rows_swapped", "results of rows 0 and 1 exchanged", "PEArray", _RowsSwapped,
           lambda c: c.rows >= 2),
    Mutant("invalid_byte_not_flagged", "the decoder's invalid-byte error is lost", "WeightDecoder",
           _NoByteError),
    Mutant("lanes_swapped", "activations of lanes 0 and 1 exchanged", "PEArray", _LanesSwapped,
           lambda c: c.lanes >= 2),
    Mutant("accumulation_never_restarts", "the first flag is lost", "PEArray", _NeverRestarts),
    Mutant("wrong_bank_read", "the weight buffer reads the other bank", "WeightBuffer",
           _buffer_wrapper(WeightBuffer, read_addr=lambda self, a: a ^ _bank_bit(self))),
    Mutant("weight_bank_stuck", "every weight word goes into bank 0", "WeightBuffer",
           _buffer_wrapper(WeightBuffer, write_addr=lambda self, a: a & (_bank_bit(self) - 1))),
    Mutant("act_read_off_by_one", "the activation buffer reads the next word", "ActBuffer",
           _buffer_wrapper(ActBuffer, read_addr=lambda self, a: a + 1)),
    Mutant("act_top_word_not_written", "writes to the last activation word are lost", "ActBuffer",
           _buffer_wrapper(ActBuffer, write_en=lambda self, w: w.en & (w.addr != self.config.act_depth - 1))),
    Mutant("output_fifo_one_entry_short", "the output FIFO holds out_depth - 1 results", "OutputFIFO",
           _ShortFIFO),
)}


@contextlib.contextmanager
def installed(name: str):
    """While active, :class:`hw.rtl.top.TernCore` elaborates with mutant ``name``."""
    import hw.rtl.top as top
    if name not in MUTANTS:
        raise MutantError(f"unknown mutant {name!r} (choose from {', '.join(MUTANTS)})")
    mut = MUTANTS[name]
    real = getattr(top, mut.block)
    setattr(top, mut.block, mut.cls)
    try:
        yield mut
    finally:
        setattr(top, mut.block, real)


def run_mutants(names=None, *, programs: int = 40, seed: int = 0, backend: str = "amaranth",
                config=None, progress=None) -> dict:
    """Run ``programs`` random differential cases (:func:`hw.verify.differential.run_verify`) on each
    mutant of ``names`` (default: all). Returns ``mutants`` (the names), ``killed`` and ``survived``
    (names), and ``cases`` (name -> the index of the first case that killed it, or None)."""
    from hw.verify.differential import run_verify
    names = list(MUTANTS) if names is None else list(names)
    for n in names:
        if n not in MUTANTS:
            raise MutantError(f"unknown mutant {n!r} (choose from {', '.join(MUTANTS)})")
    killed, survived, first = [], [], {}
    for k, n in enumerate(names):
        with installed(n):
            r = run_verify(backend, programs, seed, config, stop_at_first=True)
        f = r["first_failure"]
        (killed if f is not None else survived).append(n)
        first[n] = None if f is None else f["index"]
        if progress is not None:
            progress(k + 1, len(names))
    return {"mutants": names, "killed": killed, "survived": survived, "cases": first}
