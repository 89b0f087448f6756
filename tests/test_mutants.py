"""hw.verify.mutants: every catalogued RTL mutant is killed by the random differential cases (an
output or cycle mismatch against hw.sim and the integer reference), and installing one changes
nothing outside its run.

Default run: the saturating accumulator (caught only by cases that wrap an accumulator, which the
generator's extreme data provides), two other mutants and one of the controller's stages on the first
cases of the CI differential seed; the wrappers themselves (every port passed through, nothing
changed) are invisible. ``-m slow``: every mutant on the 200 cases of tests/test_differential.py.
"""

import pytest

from hw.verify.mutants import MUTANTS, MutantError, installed, run_mutants

SEED = 20240611          # the seed of tests/test_differential.py


def test_the_ci_subset_is_killed():
    r = run_mutants(["saturating_accumulator", "rows_swapped", "pe_result_one_cycle_late",
                     "sync_retires_one_cycle_early"], programs=40, seed=SEED)
    assert r["survived"] == [] and len(r["killed"]) == 4, r


def test_a_wrapper_that_changes_nothing_is_invisible():
    """The port wrapper of every controller stage and of the output FIFO with no change: the case
    matches the simulator and the reference (so a killed mutant is killed by its change), while the
    stage's real mutant on the same case differs."""
    import hw.verify.mutants as mutants
    from hw.rtl.buffers import OutputFIFO
    from hw.verify.differential import check_case
    from hw.verify.generate import random_case
    case = random_case(SEED, 1)
    same = lambda self, m, outer, inner: []      # noqa: E731  every port passed through
    for block, real_mutant in (("ExecuteEngine", "credit_returned_late"), ("Dispatch", "sync_retires_one_cycle_early"),
                               ("WeightLoader", "bank_release_one_cycle_late"),
                               ("PerfCounters", "stall_counter_counts_episodes"),
                               ("OutputFIFO", "out_stall_ignored_for_one_cycle")):
        mut = MUTANTS[real_mutant]
        assert mut.block == block
        build = (lambda self: OutputFIFO(self.shape, self.depth)) if block == "OutputFIFO" else None
        base = mut.cls.__mro__[1]
        plain = mutants.Mutant("plain", "", block, mutants._port_wrapper(base, same, build=build), module=mut.module)
        try:
            MUTANTS["plain"] = plain
            with installed("plain"):
                r = check_case(case)
        finally:
            del MUTANTS["plain"]
        assert not r["output"] and not r["cycle"], (block, r["output"] + r["cycle"])
    with installed("credit_returned_late"):
        r = check_case(case)
    assert r["output"] or r["cycle"]


def test_installed_replaces_the_block_only_while_active():
    import hw.rtl.controller as controller
    import hw.rtl.top as top
    from hw.rtl.dispatch import Dispatch
    from hw.rtl.pe_array import PEArray
    assert top.PEArray is PEArray
    with installed("saturating_accumulator") as m:
        assert top.PEArray is m.cls and issubclass(m.cls, PEArray)
    assert top.PEArray is PEArray
    with installed("instr_ready_one_cycle_late") as m:
        assert controller.Dispatch is m.cls and issubclass(m.cls, Dispatch) and m.module == "hw.rtl.controller"
    assert controller.Dispatch is Dispatch
    with pytest.raises(MutantError, match="unknown mutant 'nope'"):
        with installed("nope"):
            pass
    with pytest.raises(MutantError, match="unknown mutant"):
        run_mutants(["nope"])


def test_a_mutant_is_a_real_difference_and_the_real_core_passes():
    """The saturating accumulator on one case that wraps: the RTL's outputs differ from the
    reference; the same case without the mutant matches."""
    from hw.verify.differential import check_case
    from hw.verify.generate import random_case
    case = next(c for c in (random_case(SEED, i) for i in range(60))
                if c.wraps and c.config.rows * c.config.lanes <= 64 and c.interrupt is None)
    assert not check_case(case)["output"]
    with installed("saturating_accumulator"):
        assert any("reference" in d for d in check_case(case)["output"])


@pytest.mark.slow
def test_every_mutant_is_killed_by_the_ci_sized_suite():
    r = run_mutants(programs=200, seed=SEED)
    assert r["survived"] == [] and r["killed"] == list(MUTANTS), r
