"""Differential tests: the RTL (TernCore under Amaranth simulation, hw.backends.amaranth) against the
cycle-accurate simulator (hw.sim) and the numpy int64 reference, on random programs.

Each case (hw.verify.generate.random_case) draws a small random configuration (rows 1..16, lanes 4..64,
both weight formats, act_depth 16/32, wgt_depth 4/8, out_depth 2..6, so that the queues, the bank
scoreboard and the output credits are exercised), a random program (LOAD_ACT, MATMUL with 1..4
tokens and K often not a multiple of lanes, NOP, SYNC, bad instructions, sometimes an invalid
weight byte) and a random timing (ideal, seeded stalls on every input, backpressure on ``out``, a
bandwidth-limited bus with first-beat latency). Every result vector, the error flags, the cycle
count, all eight performance counters and the cycle of every transfer on all four streams must be
equal. A failure message starts with the seed and index that replay the case, then the config,
timing and program.

Default run: 200 cases (about a minute and a half on one core). ``-m slow``: 2000 more, with longer
programs: 50 on each of 40 distinct random configurations (rows x lanes at most 128), each
configuration's cases in one Amaranth simulation per 25 (``run_verify(config=...)``); each prints
one ``SCALE`` JSON line with its counts and CPU time (``-s``).
"""

import random
import time

import pytest

from hw.config import TernConfig
from hw.isa import Op
from hw.verify.differential import VerifyError, check_case, cpu_seconds, run_verify, scale_line
from hw.verify.generate import random_case, random_config

SEED = 20240611
CHUNK = 10


def _run(seed, indices, **kw):
    failures = []
    for i in indices:
        case = random_case(seed, i, **kw)
        try:
            r = check_case(case)
        except Exception as e:  # a crash in either model is a failure of this case, reported in full
            failures.append(f"{case.describe()}\n  raised {e!r}")
            continue
        if r["output"] or r["cycle"]:
            failures.append(case.describe() + "\n  " + "\n  ".join(r["output"] + r["cycle"]))
    return failures


@pytest.mark.parametrize("chunk", range(200 // CHUNK))
def test_rtl_vs_sim_random_programs(chunk):
    failures = _run(SEED, range(chunk * CHUNK, (chunk + 1) * CHUNK))
    assert not failures, f"{len(failures)} of {CHUNK} cases differ:\n" + "\n".join(failures)


N_SCALE = 40


def scale_configs() -> list:
    """The 40 distinct random configurations of the slow suite (fixed seeds, rows x lanes <= 128)."""
    out, k = [], 0
    while len(out) < N_SCALE:
        c = random_config(random.Random(f"tern-amaranth-scale-{k}"), max_pes=128)
        k += 1
        if c not in out:
            out.append(c)
    return out


def test_the_scale_configurations_are_distinct():
    cfgs = scale_configs()
    assert len(set(cfgs)) == N_SCALE and all(c.rows * c.lanes <= 128 for c in cfgs)
    assert any(c.lanes <= 3 for c in cfgs) and any(c.rows == 1 for c in cfgs)
    assert sum(c.acc_width == c.dot_width for c in cfgs) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(N_SCALE))
def test_rtl_vs_sim_random_programs_long(chunk):
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    cfg = scale_configs()[chunk]
    r = run_verify("amaranth", 50, SEED + 1 + chunk, cfg, max_instr=30)
    print("\n" + scale_line("amaranth", chunk, cfg, {"random": r}, cpu0, wall0))
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, r["first_failure"]


def test_cases_cover_the_interesting_features():
    """The 200 default cases really contain what the module docstring promises."""
    seen = {"stalls": 0, "bus": 0, "bad_instr": 0, "bad_byte": 0, "tokens>1": 0, "base3": 0,
            "k_padded": 0, "rows>8": 0, "lanes>=32": 0}
    for i in range(200):
        c = random_case(SEED, i)
        t = c.timing
        seen["stalls"] += any(getattr(t, s).p_stall > 0 for s in ("instr", "act", "wgt", "out"))
        seen["bus"] += any(getattr(t, s).rate < 1 for s in ("instr", "act", "wgt", "out"))
        seen["bad_instr"] += c.program.expected_error & 1
        seen["bad_byte"] += (c.program.expected_error >> 1) & 1
        seen["tokens>1"] += any(x.op == Op.MATMUL and x.c > 1 for x in c.program.instrs)
        seen["base3"] += c.config.weight_format == "base3"
        seen["rows>8"] += c.config.rows > 8
        seen["lanes>=32"] += c.config.lanes >= 32
        w = c.program.wgt_words
        seen["k_padded"] += bool(len(w)) and bool((w[:, :, -1] == 0).all())
    assert all(v >= 5 for v in seen.values()), seen


def test_run_verify_reports():
    r = run_verify("amaranth", 4, 7)
    assert r["programs"] == 4 and r["mismatches"] == 0 and r["cycle_mismatches"] == 0
    assert r["first_failure"] is None and r["cycles"] > 0


def test_run_verify_catches_a_timing_bug(monkeypatch):
    """A simulator with a PE latency one cycle too long must be reported as cycle mismatches (and
    its outputs still match): the comparison is not vacuous."""
    import hw.verify.differential as differential
    real = differential.simulate

    class DeeperPE(TernConfig):   # the simulator asks the configuration for every latency
        @property
        def pe_latency(self):
            return super().pe_latency + 1

    def wrong(cfg, program, timing):
        return real(DeeperPE(**cfg.to_dict()), None, timing, words=program.words,
                    act_beats=program.act_beats, wgt_beats=program.wgt_beats)

    monkeypatch.setattr(differential, "simulate", wrong)
    r = run_verify("amaranth", 6, 3)
    assert r["cycle_mismatches"] >= 1 and r["mismatches"] == 0
    f = r["first_failure"]
    assert f["seed"] == 3 and "config" in f and any("cycle" in d for d in f["differences"])


def test_run_verify_fixed_config_and_errors():
    cfg = TernConfig(rows=3, lanes=7, weight_format="base3", bus_bytes=2, act_depth=16, wgt_depth=4,
                     out_depth=2)
    r = run_verify("amaranth", 3, 1, config=cfg)
    assert r["mismatches"] == r["cycle_mismatches"] == 0
    with pytest.raises(VerifyError, match="verilog"):
        run_verify("verilog", 1, 0)
    with pytest.raises(VerifyError, match="programs"):
        run_verify("amaranth", -1, 0)
    with pytest.raises(VerifyError, match="config"):
        run_verify("amaranth", 1, 0, config={"rows": 2})


def test_a_fixed_configuration_runs_in_one_simulation_with_the_same_results(monkeypatch):
    """run_verify on a fixed configuration runs its Amaranth cases in batches (one simulation each);
    every case gives what it gives alone (check_case on its own), reset cases included."""
    import hw.backends.amaranth as amaranth
    import hw.verify.differential as differential
    cfg = TernConfig(rows=2, lanes=3, weight_format="2bit", bus_bytes=1, act_depth=16, wgt_depth=4,
                     out_depth=2, acc_width=10)
    calls = []
    real = amaranth.run_rtl_cases
    monkeypatch.setattr(amaranth, "run_rtl_cases", lambda c, cases: calls.append(len(cases)) or real(c, cases))
    monkeypatch.setattr(differential, "_AMARANTH_CHUNK", 6)
    r = run_verify("amaranth", 8, 11, config=cfg)
    assert calls == [6, 2] and r["mismatches"] == r["cycle_mismatches"] == 0
    cases = [random_case(11, i, cfg) for i in range(8)]
    assert any(c.interrupt is not None for c in cases)
    alone = [check_case(c)["rtl"] for c in cases]
    assert r["cycles"] == sum(x.cycles for x in alone)


def test_run_verify_counts_an_rtl_that_never_finishes(monkeypatch):
    """An RTL run that hits its cycle limit is an output mismatch of that case (with the simulator's
    cycle count in the message), not a crash of the whole run."""
    from hw.backends import BACKENDS, Backend
    from hw.backends.common import HarnessError

    real = BACKENDS["amaranth"].run
    calls = []

    def hangs_on_second(config, program, timing):
        calls.append(1)
        if len(calls) == 2:
            raise HarnessError("run_rtl: no SYNC/done after 999 cycles")
        return real(config, program, timing)

    monkeypatch.setitem(BACKENDS, "amaranth", Backend("amaranth", rtl=True, run=hangs_on_second))
    r = run_verify("amaranth", 3, 5)
    assert (r["mismatches"], r["cycle_mismatches"]) == (1, 0)
    f = r["first_failure"]
    assert f["index"] == 1 and len(f["differences"]) == 1
    assert f["differences"][0].startswith("amaranth did not finish (the simulator did, in ")
    assert "no SYNC/done after 999 cycles" in f["differences"][0]


def test_a_simulator_blind_to_withdrawals_is_caught(monkeypatch):
    """Cases whose timings withdraw valid and ready: a simulator that ignores the withdrawn cycles
    (the same timing with ``p_withdraw = 0``) gives cycle mismatches, so the harnesses really
    withdraw and the real simulator really models it (the other tests: 0 mismatches)."""
    import hw.verify.differential as differential
    from hw.timing import STREAMS
    real = differential.simulate

    def blind(cfg, program, timing):
        return real(cfg, program, timing.replace(**{s: timing.stream(s).replace(p_withdraw=0.0)
                                                    for s in STREAMS}))

    cases = [c for c in (random_case(SEED, i) for i in range(40))
             if any(c.timing.withdraws(s) for s in STREAMS)][:6]
    assert len(cases) == 6
    assert all(not check_case(c)["cycle"] for c in cases[:2])
    monkeypatch.setattr(differential, "simulate", blind)
    assert sum(bool(check_case(c)["cycle"]) for c in cases) >= 3


def test_run_verify_reports_coverage():
    """The coverage counters of run_verify, recounted from the same cases."""
    from hw.isa import is_valid
    r = run_verify("amaranth", 6, 2)
    cases = [random_case(2, i) for i in range(6)]
    assert r["wraps"] == sum(c.wraps > 0 for c in cases)
    assert r["wraps_min_width"] == sum(c.wraps > 0 and c.config.acc_width == c.config.dot_width for c in cases)
    assert r["resets"] == sum(c.interrupt is not None for c in cases)
    assert r["bad_instructions"] == sum(not is_valid(c.config, i) for c in cases for i in c.program.instrs)
    assert r["configs"] == 6 and r["mismatches"] == r["cycle_mismatches"] == 0
