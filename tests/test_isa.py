import random

import numpy as np
import pytest

from hw import isa
from hw.config import TernConfig
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


def test_decode_words_is_decode_vectorised():
    rng = random.Random(3)
    words = [rng.getrandbits(64) for _ in range(300)] + [0, (1 << 64) - 1]
    f = isa.decode_words(words)
    assert all(f[k].dtype == np.int64 for k in ("op", "a", "b", "c"))
    for i, w in enumerate(words):
        d = decode(w)
        op = d.op.value if isinstance(d.op, Op) else d.op
        assert (int(f["op"][i]), int(f["a"][i]), int(f["b"][i]), int(f["c"][i])) == (op, d.a, d.b, d.c)


def ref_valid(cfg, op, a, b, c):
    """The rules of docs/ISA.md, written out."""
    if op in (Op.NOP.value, Op.SYNC.value):
        return True
    if op == Op.LOAD_ACT.value:
        return b >= 1 and a + b <= cfg.act_depth
    if op == Op.MATMUL.value:
        return 1 <= b <= cfg.wgt_depth and 1 <= c <= cfg.act_depth and a + b * c <= cfg.act_depth
    return False


def test_check_is_the_same_rule_for_ints_and_arrays():
    cfg = TernConfig(act_depth=16, wgt_depth=4)
    rng = random.Random(4)
    cases = [(rng.randrange(16), rng.randrange(20), rng.randrange(8), rng.randrange(20)) for _ in range(2000)]
    cases += [(1, 16, 0, 0), (1, 0, 1, 0), (1, 15, 1, 0), (2, 0, 4, 4), (2, 0, 5, 1), (2, 0, 1, 17), (2, 1, 1, 16)]
    ops, a, b, c = (np.array(x) for x in zip(*cases))
    bad = isa.check(cfg, ops, a, b, c).bad
    for i, (op, x, y, z) in enumerate(cases):
        want = ref_valid(cfg, op, x, y, z)
        assert bool(isa.check(cfg, op, x, y, z).bad) == (not want) == bool(bad[i]), (op, x, y, z)
        if 0 <= op <= 15:
            assert isa.is_valid(cfg, Instr(op, x, y, z)) == want
