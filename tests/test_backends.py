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
    assert list(BACKENDS) == ["sim", "amaranth", "verilator"]
    assert rtl_backends() == ["amaranth", "verilator"]
    assert all(b.name == n and b.description for n, b in BACKENDS.items())


def test_unknown_and_missing_backends(monkeypatch):
    with pytest.raises(BackendError, match=r"unknown backend 'fpga' \(choose from sim, amaranth, verilator\)"):
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
