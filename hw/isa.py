"""tern instruction set: encoding shared by the RTL controller, the simulator and the compiler.

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

from amaranth.lib import data, enum as hdl_enum

__all__ = ["Op", "Instr", "INSTR_LAYOUT", "FIELD_BITS", "FIELD_MAX", "encode", "decode",
           "nop", "load_act", "matmul", "sync"]

FIELD_BITS = 20
FIELD_MAX = (1 << FIELD_BITS) - 1


class Op(hdl_enum.Enum, shape=4):
    NOP = 0
    LOAD_ACT = 1
    MATMUL = 2
    SYNC = 3


#: The instruction word as an Amaranth layout (64 bits).
INSTR_LAYOUT = data.StructLayout({
    "op": 4,
    "a": FIELD_BITS,
    "b": FIELD_BITS,
    "c": FIELD_BITS,
})


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
    op = instr.op.value if isinstance(instr.op, Op) else int(instr.op)
    return op | (instr.a << 4) | (instr.b << 24) | (instr.c << 44)


def decode(word: int) -> Instr:
    """The instruction in a 64-bit word; unknown opcodes decode to a raw int ``op``."""
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < 1 << 64:
        raise ValueError(f"instruction word must be an integer in 0..2**64-1, not {word!r}")
    raw = word & 0xF
    try:
        op = Op(raw)
    except ValueError:
        op = raw
    m = FIELD_MAX
    return Instr(op, (word >> 4) & m, (word >> 24) & m, (word >> 44) & m)


def nop() -> Instr:
    return Instr(Op.NOP)


def load_act(addr: int, count: int) -> Instr:
    return Instr(Op.LOAD_ACT, addr, count)


def matmul(act_addr: int, k_words: int, tokens: int) -> Instr:
    return Instr(Op.MATMUL, act_addr, k_words, tokens)


def sync() -> Instr:
    return Instr(Op.SYNC)
