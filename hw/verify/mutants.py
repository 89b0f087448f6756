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
* ``output_fifo_one_entry_short``: the output FIFO holds ``out_depth - 1`` results (a credit too many);
* ``credit_off_by_one``: the execute engine counts ``out_depth + 1`` output credits (the FIFO overflows);
* ``credit_returned_late``: an ``out`` transfer returns its credit one cycle late;
* ``weight_word_used_before_written``: the bank scoreboard counts a word as loaded one word early;
* ``out_stall_ignored_for_one_cycle``: the output FIFO sees ``out.ready`` one cycle late;
* ``act_withdrawn_valid_taken``: the engine takes an ``act`` beat in a cycle ``valid`` was withdrawn;
* ``stall_counter_counts_episodes``: ``stall_weight`` counts each stall once, not each stalled cycle;
* ``instr_ready_one_cycle_late``: ``instr.ready`` falls a cycle late (that cycle's instruction is lost);
* ``sync_retires_one_cycle_early``: dispatch sees the engine idle one cycle after it started again;
* ``single_word_token_never_ends``: the ``last`` flag of a one-word token is lost;
* ``bank_release_one_cycle_late``: the loader learns of a released bank one cycle late;
* ``wgt_gate_closes_one_cycle_late``: weight beats are admitted one cycle after the loader's gate closed.

Most are wrappers of a block of ``hw.rtl.top``; those of the controller's stages (the execute engine,
the weight loader, the dispatch stage, the counters) replace the class ``hw.rtl.controller``
builds them by (:attr:`Mutant.module`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from hw.rtl.buffers import ActBuffer, OutputFIFO, WeightBuffer, result_layout
from hw.rtl.counters import PerfCounters
from hw.rtl.decoder import WeightDecoder
from hw.rtl.dispatch import Dispatch
from hw.rtl.execute import ExecuteEngine
from hw.rtl.loader import WeightLoader
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


def _port_wrapper(base, change, *, inner_config=None, build=None):
    """A block of class ``base`` (same signature) around the real one: every port passes through,
    except those ``change(self, m, outer, inner)`` drives itself; it returns their paths (tuples of
    member names, e.g. ``("out_pop",)`` or ``("instr", "ready")``). ``outer``/``inner``: path ->
    the wrapper's / the real block's port value. The real block is ``build(self)``, by default
    ``base(inner_config(config))`` (the same configuration unless ``inner_config`` is given)."""
    def elaborate(self, platform):
        m = Module()
        if build is not None:
            inner = build(self)
        else:
            inner = base(self.config if inner_config is None else inner_config(self.config))
        m.submodules.real = inner
        outer_ports = {path: v for path, _, v in self.signature.flatten(self)}
        inner_ports = {path: (member.flow, v) for path, member, v in inner.signature.flatten(inner)}
        driven = set(change(self, m, outer_ports, {p: v for p, (_, v) in inner_ports.items()}))
        for path, (flow, v) in inner_ports.items():
            if path in driven:
                continue
            if flow == wiring.In:
                m.d.comb += v.eq(outer_ports[path])
            else:
                m.d.comb += outer_ports[path].eq(v)
        return m
    return type(f"Mutated{base.__name__}", (base,), {"elaborate": elaborate})


def _delayed(m, value, name):
    """``value`` one cycle late (a register, reset to 0)."""
    r = Signal.like(value, name=name, init=0)
    m.d.sync += r.eq(value)
    return r


def _late_credit(self, m, o, i):
    m.d.comb += i[("out_pop",)].eq(_delayed(m, o[("out_pop",)], "out_pop_late"))
    return [("out_pop",)]


def _early_fill(self, m, o, i):
    """Each bank's fill, and the index of the word written now, one word higher (at most the
    bank's depth): the engine sees every word one word early."""
    WD = self.config.wgt_depth
    for b in (0, 1):
        f = o[(f"bank{b}_fill",)]
        m.d.comb += i[(f"bank{b}_fill",)].eq(Mux(f < WD, f + 1, f))
    w = o[("write_word",)]
    m.d.comb += i[("write_word",)].eq(Mux(w < WD - 1, w + 1, w))
    return [("bank0_fill",), ("bank1_fill",), ("write_word",)]


def _act_valid_held(self, m, o, i):
    """``act.valid`` as the engine sees it: also high in a cycle after one in which it was high
    without a transfer (a withdrawn beat is taken once more)."""
    valid, ready = o[("act", "valid")], i[("act", "ready")]
    pending = _delayed(m, valid & ~ready, "act_pending")
    m.d.comb += i[("act", "valid")].eq(valid | pending)
    return [("act", "valid")]


def _stall_episodes(self, m, o, i):
    outer, inner = o[("events",)], i[("events",)]
    stall = outer.stall_weight
    m.d.comb += inner.eq(outer)
    m.d.comb += inner.stall_weight.eq(stall & ~_delayed(m, stall, "stall_weight_before"))   # wins
    return [("events",)]


def _instr_ready_late(self, m, o, i):
    ready = i[("instr", "ready")]
    m.d.comb += o[("instr", "ready")].eq(ready | _delayed(m, ready, "instr_ready_before"))
    return [("instr", "ready")]


def _stale_engine_idle(self, m, o, i):
    idle = o[("engine_idle",)]
    m.d.comb += i[("engine_idle",)].eq(idle | _delayed(m, idle, "engine_idle_before"))
    return [("engine_idle",)]


def _late_release(self, m, o, i):
    m.d.comb += i[("bank_release",)].eq(_delayed(m, o[("bank_release",)], "bank_release_late"))
    return [("bank_release",)]


def _late_gate(self, m, o, i):
    gate = i[("wgt_gate",)]
    m.d.comb += o[("wgt_gate",)].eq(gate | _delayed(m, gate, "wgt_gate_before"))
    return [("wgt_gate",)]


def _late_out_ready(self, m, o, i):
    m.d.comb += i[("r", "ready")].eq(_delayed(m, o[("r", "ready")], "out_ready_late"))
    return [("r", "ready")]


#: ``OutputFIFO.for_config`` builds its own class, so this wrapper where the core asks for it.
_StaleReadyFIFO = _port_wrapper(OutputFIFO, _late_out_ready, build=lambda self: OutputFIFO(self.shape, self.depth))


class _SingleWordTokenNeverEnds(_PEWrapper):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += m.submodules.real.last.eq(self.last & ~self.first)
        return m


@dataclass(frozen=True)
class Mutant:
    """One mutant: ``name``, what it breaks, and the block of ``hw.rtl.top`` it replaces (``block``:
    the name TernCore builds it by) with ``cls``; ``applies(config)``: whether it changes anything
    on that configuration (e.g. ``rows_swapped`` needs two rows); ``module``: the module whose name
    ``block`` is replaced (``hw.rtl.controller`` for the controller's stages)."""
    name: str
    description: str
    block: str
    cls: type
    applies: Callable = lambda config: True
    module: str = "hw.rtl.top"


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
    Mutant("credit_off_by_one", "the engine counts out_depth + 1 output credits", "ExecuteEngine",
           _port_wrapper(ExecuteEngine, lambda self, m, o, i: [],
                         inner_config=lambda c: c.replace(out_depth=c.out_depth + 1)),
           module="hw.rtl.controller"),
    Mutant("credit_returned_late", "an out transfer returns its credit one cycle late", "ExecuteEngine",
           _port_wrapper(ExecuteEngine, _late_credit), module="hw.rtl.controller"),
    Mutant("weight_word_used_before_written", "the bank scoreboard counts a word loaded one word early",
           "ExecuteEngine", _port_wrapper(ExecuteEngine, _early_fill), module="hw.rtl.controller"),
    Mutant("out_stall_ignored_for_one_cycle", "the output FIFO sees out.ready one cycle late", "OutputFIFO",
           _StaleReadyFIFO),
    Mutant("act_withdrawn_valid_taken", "the engine takes an act beat whose valid was withdrawn",
           "ExecuteEngine", _port_wrapper(ExecuteEngine, _act_valid_held), module="hw.rtl.controller"),
    Mutant("stall_counter_counts_episodes", "stall_weight counts each stall once, not each cycle",
           "PerfCounters", _port_wrapper(PerfCounters, _stall_episodes),
           lambda c: "stall_weight" in c.perf_counters, module="hw.rtl.controller"),
    Mutant("instr_ready_one_cycle_late", "instr.ready falls one cycle late (that instruction is lost)",
           "Dispatch", _port_wrapper(Dispatch, _instr_ready_late), module="hw.rtl.controller"),
    Mutant("sync_retires_one_cycle_early", "dispatch sees the engine idle one cycle too long", "Dispatch",
           _port_wrapper(Dispatch, _stale_engine_idle), module="hw.rtl.controller"),
    Mutant("single_word_token_never_ends", "the last flag of a one-word token is lost", "PEArray",
           _SingleWordTokenNeverEnds),
    Mutant("bank_release_one_cycle_late", "the loader learns of a released bank one cycle late",
           "WeightLoader", _port_wrapper(WeightLoader, _late_release), module="hw.rtl.controller"),
    Mutant("wgt_gate_closes_one_cycle_late", "weight beats admitted one cycle after the gate closed",
           "WeightLoader", _port_wrapper(WeightLoader, _late_gate), module="hw.rtl.controller"),
)}


@contextlib.contextmanager
def installed(name: str):
    """While active, :class:`hw.rtl.top.TernCore` elaborates with mutant ``name``."""
    import importlib
    if name not in MUTANTS:
        raise MutantError(f"unknown mutant {name!r} (choose from {', '.join(MUTANTS)})")
    mut = MUTANTS[name]
    module = importlib.import_module(mut.module)
    real = getattr(module, mut.block)
    setattr(module, mut.block, mut.cls)
    try:
        yield mut
    finally:
        setattr(module, mut.block, real)


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
