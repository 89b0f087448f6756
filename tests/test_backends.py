"""hw.backends: the one registry of backends (names, RTL flag, errors, sessions, batches); every
backend's own behaviour is tested in its test file and, against hw.sim, in tests/test_differential.py."""

import sys

import numpy as np
import pytest

from hw.backends import BACKENDS, Backend, BackendError, BackendUnavailable, get_backend, rtl_backends
from hw.config import TernConfig
from hw.program import linear_program, outputs_to_matrix, reference_matmul
from hw.sim import simulate
from hw.verify.generate import random_case


def test_registry_names_and_rtl_flags():
    assert list(BACKENDS) == ["sim", "amaranth", "verilator", "serial"]
    assert rtl_backends() == ["amaranth", "verilator"]
    assert all(b.name == n and b.description for n, b in BACKENDS.items())


def test_unknown_and_missing_backends(monkeypatch):
    with pytest.raises(BackendError, match=r"unknown backend 'fpga' \(choose from sim, amaranth, verilator, serial\)"):
        get_backend("fpga")
    with pytest.raises(BackendError, match="unknown backend 3"):
        get_backend(3)
    monkeypatch.setitem(sys.modules, "hw.backends.amaranth", None)   # as if it were not installed
    with pytest.raises(BackendUnavailable, match="needs hw.backends.amaranth"):
        get_backend("amaranth")
    with pytest.raises(ValueError, match="give its module or a run function"):
        Backend("empty", rtl=False)


def test_sim_backend_runs_a_program_and_its_session_repeats_it():
    cfg = TernConfig(rows=2, lanes=4, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(1)
    q, w = rng.integers(-128, 128, (3, 10)), rng.integers(-1, 2, (5, 10))
    prog = linear_program(cfg, q, w)
    b = get_backend("sim")
    res = b.run(cfg, prog)
    assert np.array_equal(outputs_to_matrix(cfg, res.outputs, 3, 5), reference_matmul(q, w))
    s = b.session(cfg)
    again = s.run(None, None, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    assert not res.compare(again)
    assert not s.closed
    s.close()
    assert s.closed


def test_run_batch_without_a_batch_mode_runs_each_case():
    cases = [random_case(2, i) for i in range(4)]
    assert not BACKENDS["sim"].batched and not BACKENDS["amaranth"].batched
    for case, res in zip(cases, BACKENDS["sim"].run_batch(cases)):
        assert not res.compare(simulate(case.config, case.program, case.timing))


def test_a_test_double_backend_uses_its_run_function():
    calls = []

    def fake(config, program, timing, **streams):
        calls.append((config, program, timing))
        return "result"

    b = Backend("fake", rtl=True, run=fake)
    assert b.run("cfg", "prog") == "result" and not b.batched
    assert b.session("cfg").run("prog") == "result"
    assert calls == [("cfg", "prog", None), ("cfg", "prog", None)]


# -- the Verilator backend's two drivers ------------------------------------------------------------------

def _verilator_cases():
    """Every kind of run of the small core of tests/cocotb: three problems (one with an accumulator
    that wraps) under every timing of the core tests, and the reset-in-the-middle cases."""
    from helpers import core_timings, reset_cut_case

    from hw.backends.verilator import VerilatorCase
    cfg, a, ta, b, tb, cuts = reset_cut_case(61)
    rng = np.random.default_rng(62)
    problems = [(rng.integers(-128, 128, (5, 60)), rng.integers(-1, 2, (11, 60))),
                (np.full((3, 64), -128), np.full((5, 64), -1)),
                (rng.integers(-128, 128, (7, 9)), rng.integers(-1, 2, (13, 9)))]
    cases = [VerilatorCase(linear_program(cfg, q, w), t) for q, w in problems for t in core_timings(63)]
    cases += [VerilatorCase(b, tb, interrupt=(a, ta, c)) for c in cuts]
    return cfg, problems, cases


def _check_verilator_driver(driver, cfg, problems, cases):
    from hw.backends.verilator import run_verilator_batch
    from hw.program import wrap_signed
    results = run_verilator_batch(cfg, cases, driver=driver)
    assert len(results) == len(cases)
    for i, (case, res) in enumerate(zip(cases, results)):
        diffs = res.compare(simulate(cfg, case.program, case.timing))
        assert not diffs and res.backend == "verilator", f"case {i}: {driver} vs hw.sim: {diffs}"
    for k, (q, w) in enumerate(problems):
        d = outputs_to_matrix(cfg, results[3 * k].outputs, q.shape[0], w.shape[0])
        assert np.array_equal(d, wrap_signed(q.astype(np.int64) @ w.astype(np.int64).T, cfg.acc_width))


def test_verilator_harness_equals_sim_field_by_field():
    """The C++ stream driver plays the drive policy of hw.backends.drive: every result, counter and
    transfer cycle equals hw.sim's (stalls, backpressure, a slow bus, resets in the middle of a
    program), and D equals numpy's int64 q @ T.T (wrapped to the accumulator)."""
    _check_verilator_driver("harness", *_verilator_cases())


def test_verilator_cocotb_driver_equals_sim():
    """The cocotb testbench (waveforms): one problem under the ideal timing and one reset in the middle."""
    cfg, problems, cases = _verilator_cases()
    _check_verilator_driver("cocotb", cfg, problems[:1], [cases[0], cases[-1]])


@pytest.mark.slow
def test_verilator_cocotb_driver_equals_sim_on_every_case():
    _check_verilator_driver("cocotb", *_verilator_cases())


def test_verilator_driver_choice_is_checked():
    from hw.backends.verilator import VerilatorSession, run_verilator
    cfg = TernConfig(rows=4, lanes=8)
    prog = linear_program(cfg, np.ones((1, 8)), np.ones((4, 8)))
    with pytest.raises(ValueError, match="driver must be one of harness, cocotb, not 'vpi'"):
        run_verilator(cfg, prog, driver="vpi")
    with pytest.raises(ValueError, match="waveforms need the cocotb driver"):
        VerilatorSession(cfg, waves=True, driver="harness")
    assert VerilatorSession(cfg, waves=True).driver == "cocotb"
    assert VerilatorSession(cfg).driver == "harness"


def test_verilator_harness_build_failure_quotes_the_log(tmp_path):
    from hw.flows.cocotb import CocotbRunError
    from hw.flows.verilator_harness import build_harness
    with pytest.raises(CocotbRunError, match=r"(?s)harness build of broken failed.*build\.log.*syntax error"):
        build_harness("module tern_core(input clk); this is not verilog endmodule\n", "tern_core", "broken",
                      build_root=tmp_path)
    assert not list(tmp_path.glob("harness-broken-*/tern-build.ok"))
