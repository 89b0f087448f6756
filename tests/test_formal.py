"""Formal proofs (hw.verify.formal): the CI subset is proved; the flow reports a real counterexample
as "failed" (so a proof that passes is not a flow that cannot fail); bad selections are one line."""

from __future__ import annotations

import pytest
from amaranth.hdl import Assert, Module, Signal

from hw.config import DOT_VARIANTS, TernConfig
from hw.verify import formal
from hw.verify.formal import FormalError, Property, properties, run_formal, run_property

pytestmark = pytest.mark.skipif(not formal.tools_available(), reason="yowasp-sby / yices not installed")


def test_catalogue_covers_every_unit_and_dot_variant():
    names = [p.name for p in properties()]
    assert len(names) == len(set(names))
    for variant in DOT_VARIANTS:
        assert f"pe_{variant}_L16_t2" in names      # every variant, 16 lanes (slow)
    for prefix in ("decoder_2bit", "decoder_base3", "out_fifo", "dispatch", "controller", "banks"):
        assert any(n.startswith(prefix) for n in names), prefix
    quick = {p.name for p in properties(quick=True)}
    assert quick < set(names)
    for variant in DOT_VARIANTS[1:]:
        assert f"dot_{variant}_L16" in names       # the unpipelined unit the 16-lane rows rely on
    for p in properties():
        assert (p.mode in ("prove", "bmc") and p.depth >= 2) or (p.mode == "cec" and p.depth == 1)


@pytest.mark.parametrize("name", [p.name for p in properties(quick=True)])
def test_quick_property_is_proved(name):
    r = run_formal([name])
    assert r["properties"] == 1
    assert r["failed"] == [], r["results"][0]["message"]
    assert r["proved"] == 1


def _wrong_counter():
    """A 3-bit counter claimed never to reach 5: false, reachable in 5 cycles."""
    m = Module()
    count = Signal(3)
    m.d.sync += count.eq(count + 1)
    m.d.comb += Assert(count != 5)
    return m


def test_a_false_property_fails_with_a_counterexample():
    r = run_property(Property("wrong_counter", _wrong_counter, "bmc", 8, True, "false"))
    assert r.status == "failed"
    assert "Assert failed" in r.message or "failed assertion" in r.message


def test_a_false_property_beyond_the_bound_is_not_a_failure():
    # 5 cycles are needed to reach the bad state: a bound of 3 cannot see it
    r = run_property(Property("wrong_counter", _wrong_counter, "bmc", 3, True, "false"))
    assert r.status == "proved" and r.depth == 3


def test_dot_shadow_tree_is_the_sum_of_products():
    # the identity that dot_<variant>_L<lanes> checks in linear forms, and that it can be false
    L = 5
    prods = [formal._Linear({f"p{l}": 1}) for l in range(L)]
    bits = [formal._Linear({f"b{l}": 1}) for l in range(L)]
    total = sum(prods, formal._Linear())
    for variant in DOT_VARIANTS[1:]:
        assert formal._dot_shadow(variant, prods, bits) == total
        assert formal._dot_shadow(variant, prods[:-1] + [0], bits) != total   # a lane left out


def _carry_unit_without_root_carry(monkeypatch):
    from hw.rtl.dot import TernaryDotUnit
    add = TernaryDotUnit._add

    def root_drops_carry(self, m, x, y, carry, *, root, node):
        if root:
            return x + y
        return add(self, m, x, y, carry, root=root, node=node)
    monkeypatch.setattr(TernaryDotUnit, "_add", root_drops_carry)


def test_dot_equivalence_fails_for_a_wrong_unit_and_a_wrong_shadow(monkeypatch):
    prop = lambda v: Property("dot", lambda: formal._dot_harness(v, 4), "cec", 1, True, "")
    assert run_property(prop("carry")).status == "proved"
    with monkeypatch.context() as mp:
        _carry_unit_without_root_carry(mp)          # the root adder loses its carry-in
        r = run_property(prop("carry"))
        assert r.status == "failed", r.message
    shadow = formal._dot_shadow
    monkeypatch.setattr(formal, "_dot_shadow",      # a shadow tree that leaves out a lane
                        lambda v, p, b, *a: shadow(v, list(p[:-1]) + [0], b, *a))
    assert run_property(prop("slot")).status == "failed"


def test_unknown_property_is_one_line():
    with pytest.raises(FormalError, match="unknown formal property 'nope'"):
        run_formal(["nope"])


def _controller_false_claim(**claim):
    """The controller harness of ``controller_out2_wgt4`` with a false ``claim``, to its bound."""
    prop = next(p for p in properties() if p.name == "controller_out2_wgt4")
    cfg = TernConfig(rows=1, lanes=1, acc_width=9, act_depth=16, wgt_depth=4, out_depth=2,
                     bus_bytes=1, tree_reg_every=0)
    return run_property(Property("false_claim", lambda: formal._controller_harness(cfg, **claim),
                                 "bmc", prop.depth, True, "false"))


def test_controller_bound_reaches_a_full_output_fifo():
    # the credit property's bound is long enough for the machine to fill the output FIFO: the false
    # claim "never full" has a counterexample within it
    assert _controller_false_claim(claim_never_full=True).status == "failed"


def test_controller_bound_reaches_an_issue_beside_a_write_of_its_bank():
    # the collision property ("no issue reads the address written in the same cycle") is not empty:
    # within its bound a step issues from the bank the loader is writing (the false claim "never in
    # the same bank" has a counterexample), so only the address comparison keeps it apart
    assert _controller_false_claim(claim_no_shared_bank=True).status == "failed"


@pytest.mark.slow
def test_weight_bank_ownership_is_proved_and_its_bound_reaches_a_reused_bank():
    """The bank property holds to its bound; the bound is long enough for a bank to be released
    and written again (the false claim "never rewritten" fails within it); and the mutant whose
    scoreboard counts a word loaded one word early breaks it (a counterexample)."""
    from hw.verify.mutants import installed
    prop = next(p for p in properties() if p.name == "banks_wgt4")
    assert run_property(prop).status == "proved"
    cfg = TernConfig(rows=1, lanes=1, acc_width=9, act_depth=16, wgt_depth=4, out_depth=2,
                     bus_bytes=1, tree_reg_every=0)
    r = run_property(Property("no_reuse", lambda: formal._bank_harness(cfg, claim_no_reuse=True),
                              "bmc", prop.depth, False, "false"))
    assert r.status == "failed"
    with installed("weight_word_used_before_written"):
        assert run_property(prop).status == "failed"
