"""tern instruction set: one field table and one set of validity rules, shared by the RTL's dispatch
stage, the simulator, the program builder and the compiler.

Every instruction is one 64-bit word (see ``docs/ISA.md``)::

    bits  0..3    op   (Op)
    bits  4..23   a    20-bit unsigned operand
    bits 24..43   b    20-bit unsigned operand
    bits 44..63   c    20-bit unsigned operand

=========  ==  ===========  ==========  ==========================================================
op         #   a            b           c
=========  ==  ===========  ==========  ==========================================================
NOP        0   -            -           -
LOAD_ACT   1   act address  count       -           ``count`` beats of the activation stream
MATMUL     2   act address  k_words     tokens      ``k_words`` weight words from the weight stream,
                                                    ``tokens`` result vectors to the output stream
SYNC       3   -            -           -           wait until everything before it has finished
=========  ==  ===========  ==========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from amaranth.lib import data, enum as hdl_enum

__all__ = ["Op", "Instr", "FIELDS", "INSTR_LAYOUT", "FIELD_BITS", "FIELD_MAX", "encode", "decode",
           "decode_words", "Check", "check", "is_valid", "nop", "load_act", "matmul", "sync"]

FIELD_BITS = 20
FIELD_MAX = (1 << FIELD_BITS) - 1

#: The one field table of the instruction word: ``(name, lsb, width)``, lowest bits first. The
#: encoder, both decoders and the Amaranth layout are made from it.
FIELDS = (("op", 0, 4), ("a", 4, FIELD_BITS), ("b", 24, FIELD_BITS), ("c", 44, FIELD_BITS))


class Op(hdl_enum.Enum, shape=4):
    NOP = 0
    LOAD_ACT = 1
    MATMUL = 2
    SYNC = 3


#: The instruction word as an Amaranth layout (64 bits).
INSTR_LAYOUT = data.StructLayout({name: width for name, _, width in FIELDS})
assert all(INSTR_LAYOUT[name].offset == lsb for name, lsb, _ in FIELDS) and INSTR_LAYOUT.size == 64


@dataclass(frozen=True)
class Instr:
    """One decoded instruction. ``op`` may be an :class:`Op` or, for illegal words, a raw int."""
    op: Op | int
    a: int = 0
    b: int = 0
    c: int = 0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= FIELD_MAX:
                raise ValueError(f"instruction field {name} must be an integer in 0..{FIELD_MAX}, not {v!r}")
        op = self.op
        if isinstance(op, Op):
            return
        if isinstance(op, bool) or not isinstance(op, int) or not 0 <= op <= 15:
            raise ValueError(f"instruction op must be an Op or an integer in 0..15, not {op!r}")

    @property
    def opcode(self) -> int:
        """The raw 4-bit opcode."""
        return self.op.value if isinstance(self.op, Op) else int(self.op)

    @property
    def word(self) -> int:
        return encode(self)

    def __str__(self):
        name = self.op.name if isinstance(self.op, Op) else f"ILLEGAL({self.op})"
        if self.op == Op.LOAD_ACT:
            return f"{name} addr={self.a} count={self.b}"
        if self.op == Op.MATMUL:
            return f"{name} act={self.a} k_words={self.b} tokens={self.c}"
        return name


def encode(instr: Instr) -> int:
    """The 64-bit word of ``instr``."""
    values = {"op": instr.opcode, "a": instr.a, "b": instr.b, "c": instr.c}
    word = 0
    for name, lsb, _ in FIELDS:
        word |= values[name] << lsb
    return word


def decode(word: int) -> Instr:
    """The instruction in a 64-bit word; unknown opcodes decode to a raw int ``op``."""
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < 1 << 64:
        raise ValueError(f"instruction word must be an integer in 0..2**64-1, not {word!r}")
    f = {name: (word >> lsb) & ((1 << width) - 1) for name, lsb, width in FIELDS}
    try:
        op = Op(f["op"])
    except ValueError:
        op = f["op"]
    return Instr(op, f["a"], f["b"], f["c"])


def decode_words(words) -> dict:
    """Vectorised :func:`decode`: the fields of many 64-bit words as int64 arrays
    ``{"op": ..., "a": ..., "b": ..., "c": ...}`` (raw opcodes)."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    return {name: ((w >> np.uint64(lsb)) & np.uint64((1 << width) - 1)).astype(np.int64)
            for name, lsb, width in FIELDS}


class Check(NamedTuple):
    """What the dispatch stage decides about an instruction (:func:`check`)."""
    load: object     # a good LOAD_ACT (executed)
    matmul: object   # a good MATMUL (executed)
    bad: object      # skipped with error bit 0: an illegal opcode or an operand out of range


def check(config, op, a, b, c, *, span=None) -> Check:
    """The validity rules of ``docs/ISA.md``, written once for every kind of operand: Python ints,
    numpy arrays (one element per instruction) and Amaranth values (the RTL's dispatch stage).

    * LOAD_ACT is good iff ``count >= 1`` and ``addr + count <= act_depth``;
    * MATMUL is good iff ``1 <= k_words <= wgt_depth``, ``1 <= tokens <= act_depth`` and
      ``act_addr + k_words * tokens <= act_depth``;
    * NOP and SYNC are always good; opcodes 4..15 are bad.

    ``op`` is the raw opcode. ``span`` is ``k_words * tokens`` when the caller forms the product
    itself (the RTL, which has no multiplier, passes a shift-and-add of the range-checked operands);
    by default it is ``b * c``."""
    AD, WD = config.act_depth, config.wgt_depth
    span = b * c if span is None else span
    load = (op == Op.LOAD_ACT.value) & (b >= 1) & (a + b <= AD)
    mm = ((op == Op.MATMUL.value) & (b >= 1) & (b <= WD) & (c >= 1) & (c <= AD)
          & (a + span <= AD))
    good = (op == Op.NOP.value) | (op == Op.SYNC.value) | load | mm
    return Check(load, mm, good == 0)


def is_valid(config, instr: Instr) -> bool:
    """Whether the machine executes ``instr`` (True) or skips it and sets error bit 0 (False)."""
    return not bool(check(config, instr.opcode, instr.a, instr.b, instr.c).bad)


def nop() -> Instr:
    return Instr(Op.NOP)


def load_act(addr: int, count: int) -> Instr:
    return Instr(Op.LOAD_ACT, addr, count)


def matmul(act_addr: int, k_words: int, tokens: int) -> Instr:
    return Instr(Op.MATMUL, act_addr, k_words, tokens)


def sync() -> Instr:
    return Instr(Op.SYNC)
