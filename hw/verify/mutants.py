"""A catalogue of RTL mutants: small, plausible bugs built into :class:`hw.rtl.top.TernCore` without
editing the RTL sources, and the gate that checks the differential suite kills every one.

A mutant replaces one block of the core by a wrapper with the block's own signature (the same ports
and latency) around the real block, which changes what crosses the block's boundary: a stable seam
that does not depend on how the block is written inside. While :func:`installed` is active the
core's elaboration (``hw.rtl.top``) builds the wrapper instead of the block, so both RTL backends
(the Amaranth simulation and the Verilog Verilator compiles) run the mutant, while the simulator and
the integer reference stay as they are. :func:`run_mutants` runs the random differential cases of
:func:`hw.verify.differential.run_verify` on each mutant: a mutant is *killed* when some case shows
an output or cycle mismatch, and *survives* otherwise.

Mutants (:data:`MUTANTS`):

* ``saturating_accumulator``: the accumulators saturate at ``acc_width`` bits instead of wrapping;
* ``accumulator_one_bit_narrow``: the accumulators wrap at ``acc_width - 1`` bits;
* ``pe_result_one_cycle_late``: the PE array's results (and their valid) one register later;
* ``zero_code_as_plus_one``: a decoder digit off: weight code 1 (zero) of lane 0 reads as +1;
* ``minus_128_as_127``: activation -128 clipped to 127 before the dot units (an int8 bug);
* ``last_lane_dropped``: the last lane's activation never reaches the dot units;
* ``rows_swapped``: results of rows 0 and 1 exchanged;
* ``invalid_byte_not_flagged``: the decoder's invalid-byte error never reaches the core.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring

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
