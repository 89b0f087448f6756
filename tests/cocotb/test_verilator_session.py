"""hw.backends.verilator.VerilatorSession: one Verilated simulator started once, many dependent cases.

Every result of a session is compared field by field (result vectors, cycle count, all performance
counters, error flags and the cycle of every stream transfer) with hw.sim.simulate of the same case
and timing, and its D with an independent numpy int64 ``q @ T.T`` (wrapped to ``acc_width``), whatever
ran before it in the session: stalled streams, a case that hit its cycle limit (HarnessError), a
repeat of an earlier case. A simulator that dies or stops answering gives a clear error, not a hang.
Failures name the seed (replay with ``TERN_SEED=<seed>``).
"""

import os
import signal
import time

import numpy as np
import pytest

from hw.flows.cocotb import CocotbRunError
from hw.config import TernConfig
from hw.isa import Instr, Op
from hw.program import linear_program, outputs_to_matrix, wrap_signed
from hw.backends.common import HarnessError
from hw.backends.verilator import VerilatorSession, run_verilator
from hw.sim import simulate
from hw.timing import Timing
from helpers import assert_same_as_sim, core_timings
from tbutil import replay_hint, seed

#: The small configuration of test_cocotb_core (same build): 2bit weights, 3 beats per word, a 14-bit
#: accumulator that wraps at K = 64, 3 output credits.
CFG = TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=3, act_depth=64, wgt_depth=8,
                 out_depth=3, tree_reg_every=1, acc_width=14)


def _stuck_words():
    """A LOAD_ACT of 4 beats with only 2 beats on the stream: never finishes."""
    return [Instr(Op.LOAD_ACT, 0, 4).word], np.zeros((2, CFG.lanes), dtype=np.int8)


def _check(prog, q, w, timing, res, hint):
    assert_same_as_sim(CFG, prog, timing, res, f"session; {hint}")
    d = outputs_to_matrix(CFG, res.outputs, q.shape[0], w.shape[0])
    exp = wrap_signed(q.astype(np.int64) @ w.astype(np.int64).T, CFG.acc_width)
    assert np.array_equal(d, exp), f"D differs from q @ T.T; {hint}"
    assert res.error == 0 and res.backend == "verilator", hint


def test_session_results_identical_to_sim_and_to_a_fresh_run(request):
    s = seed(41)
    hint = replay_hint(s, request.node.nodeid)
    rng = np.random.default_rng(s)
    problems = [(rng.integers(-128, 128, (5, 60)), rng.integers(-1, 2, (11, 60))),
                (rng.choice([-128, 127], (6, 40)), rng.choice([-1, 1], (9, 40))),
                (np.full((3, 64), -128), np.full((5, 64), -1)),          # accumulator wrap
                (rng.integers(-128, 128, (7, 9)), rng.integers(-1, 2, (13, 9)))]
    timings = core_timings(s)
    with VerilatorSession(CFG) as sess:
        first = {}
        for i, (q, w) in enumerate(problems):
            prog = linear_program(CFG, q, w)
            for j, timing in enumerate(timings):
                res = sess.run(prog, timing)
                _check(prog, q, w, timing, res, f"problem {i}, timing {j}; {hint}")
                first[i, j] = res
        assert sess.calls == len(problems) * len(timings)
        # the same case again, after other cases: identical in every field
        q, w = problems[0]
        prog = linear_program(CFG, q, w)
        again = sess.run(prog, timings[1])
        assert not again.compare(first[0, 1]), hint
        # a fresh simulator (run_verilator) gives the same result as the session
        fresh = run_verilator(CFG, prog, timings[1])
        assert not fresh.compare(again), hint


def test_failed_case_then_successful_cases_in_one_session(request):
    s = seed(43)
    hint = replay_hint(s, request.node.nodeid)
    rng = np.random.default_rng(s)
    q, w = rng.integers(-128, 128, (4, 30)), rng.integers(-1, 2, (6, 30))
    prog = linear_program(CFG, q, w)
    timing = Timing.random(s, p_instr=0.2, p_act=0.3, p_wgt=0.3, p_out=0.4)
    words, act = _stuck_words()
    with VerilatorSession(CFG) as sess:
        with pytest.raises(HarnessError, match="did not finish within 200 cycles"):
            sess.run(words=words, act_beats=act, max_cycles=200)
        _check(prog, q, w, timing, sess.run(prog, timing), f"after a HarnessError; {hint}")
        # a case cut by its cycle limit in the middle of streaming weights and computing
        sim = simulate(CFG, prog, timing)
        with pytest.raises(HarnessError, match=f"did not finish within {sim.cycles - 5} cycles"):
            sess.run(prog, timing, max_cycles=sim.cycles - 5)
        _check(prog, q, w, timing, sess.run(prog, timing), f"after a cut-short program; {hint}")
        assert sess.running and sess.calls == 4


def test_dead_simulator_raises_clear_error_without_hanging():
    words, act = _stuck_words()
    sess = VerilatorSession(CFG).start()
    os.kill(sess.pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(CocotbRunError, match=r"the simulator (ended|is gone).*exit code -9"):
        sess.run(words=words, act_beats=act, max_cycles=200)
    assert time.monotonic() - t0 < 20
    assert sess.closed and not sess.running
    with pytest.raises(RuntimeError, match="the session is closed"):
        sess.run(words=words, act_beats=act, max_cycles=200)


def test_timeout_kills_a_simulator_that_does_not_answer():
    words, act = _stuck_words()
    sess = VerilatorSession(CFG, timeout=1.0).start()
    pid = sess.pid
    t0 = time.monotonic()
    with pytest.raises(CocotbRunError, match="no answer to case 0 within 1 s"):
        sess.run(words=words, act_beats=act, max_cycles=10**12)   # would run for days
    assert time.monotonic() - t0 < 20
    assert sess.closed and not sess.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_close_ends_the_simulator_and_removes_its_run_folder(monkeypatch):
    monkeypatch.delenv("TERN_KEEP_RUNS", raising=False)
    prog = linear_program(CFG, np.ones((2, 8), dtype=np.int64), np.ones((4, 8), dtype=np.int64))
    sess = VerilatorSession(CFG)
    assert not sess.running and sess.pid is None   # started lazily
    with sess:
        res = sess.run(prog)
        assert np.array_equal(outputs_to_matrix(CFG, res.outputs, 2, 4), np.full((2, 4), 8))
        pid, run_dir = sess.pid, sess.run_dir
        assert run_dir.is_dir() and sess.running
    assert sess.closed and not sess.running and not run_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    sess.close()   # idempotent
    with pytest.raises(RuntimeError, match="the session is closed"):
        sess.run(prog)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="config"):
        VerilatorSession("small")
    for bad in (0, -1.0, True, "10"):
        with pytest.raises(ValueError, match="timeout"):
            VerilatorSession(CFG, timeout=bad)
    with pytest.raises(TypeError, match="timing"):
        VerilatorSession(CFG).run(linear_program(CFG, np.ones((1, 8)), np.ones((4, 8))), timing="fast")
