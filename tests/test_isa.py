import random

import pytest

from hw import isa
from hw.isa import FIELD_MAX, INSTR_LAYOUT, Instr, Op, decode, encode


def test_layout_is_64_bits_in_documented_order():
    assert INSTR_LAYOUT.size == 64
    assert INSTR_LAYOUT["op"].offset == 0
    assert INSTR_LAYOUT["a"].offset == 4
    assert INSTR_LAYOUT["b"].offset == 24
    assert INSTR_LAYOUT["c"].offset == 44


def test_known_words():
    assert encode(isa.nop()) == 0
    assert encode(isa.sync()) == 3
    assert encode(isa.load_act(2, 5)) == 1 | (2 << 4) | (5 << 24)
    assert encode(isa.matmul(1, 2, 3)) == 0x0000_3000_0200_0012


def test_encoding_agrees_with_amaranth_layout():
    # the Python encoder and the hardware layout must place fields identically
    rng = random.Random(1)
    for _ in range(200):
        op, a, b, c = rng.choice(list(Op)), rng.randrange(FIELD_MAX + 1), rng.randrange(FIELD_MAX + 1), rng.randrange(FIELD_MAX + 1)
        const = INSTR_LAYOUT.const({"op": op.value, "a": a, "b": b, "c": c})
        assert const.as_value().value == encode(Instr(op, a, b, c))


def test_round_trip_and_illegal_ops():
    rng = random.Random(2)
    for _ in range(500):
        w = rng.getrandbits(64)
        i = decode(w)
        assert encode(i) == w
    assert decode(0xF).op == 15


@pytest.mark.parametrize("kwargs", [dict(a=-1), dict(b=FIELD_MAX + 1), dict(c=1.5)])
def test_rejects_bad_fields(kwargs):
    with pytest.raises(ValueError, match="instruction field"):
        Instr(Op.MATMUL, **kwargs)


def test_rejects_bad_words():
    with pytest.raises(ValueError):
        decode(1 << 64)
    with pytest.raises(ValueError):
        Instr(16)
