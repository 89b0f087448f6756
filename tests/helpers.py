"""Helpers shared by the test suites (one place for what several test files need)."""

import json
import shlex

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.backends.drive import AmaranthBench, Port, Sink, Source, drive_streams
from hw.isa import Op
from hw.program import instr_is_valid
from hw.rtl.controller import Controller
from hw.timing import Timing


def random_stream_config(rng, *, min_lanes=1):
    """A random weight-stream geometry for the codec and decoder tests (``rng``: ``random.Random``):
    rows 1..16, lanes ``min_lanes``..64, bus_bytes 1..32, either weight format; the rest default."""
    from hw.config import TernConfig
    return TernConfig(rows=rng.randint(1, 16), lanes=rng.randint(min_lanes, 64),
                      bus_bytes=rng.randint(1, 32), weight_format=rng.choice(["2bit", "base3"]))


def core_timings(seed):
    """The three stream timings the core tests replay on every backend: ideal; seeded stalls on
    every input and backpressure; a slow weight bus with first-beat latency, activation stalls and
    heavy backpressure."""
    from fractions import Fraction

    from hw.timing import StreamTiming, Timing
    return [Timing.ideal(),
            Timing.random(seed, p_instr=0.3, p_act=0.3, p_wgt=0.4, p_out=0.5),
            Timing(wgt=StreamTiming(latency=7, rate=Fraction(1, 3)), act=StreamTiming(p_stall=0.2),
                   out=StreamTiming(p_stall=0.7), seed=seed + 1)]


def assert_same_as_sim(config, program, timing, res, hint=""):
    """``res`` (an RTL backend's RunResult of ``program`` under ``timing``) equals hw.sim.simulate of
    the same case field by field: outputs, cycles, counters, error flags, every transfer cycle."""
    from hw.sim import simulate
    diffs = res.compare(simulate(config, program, timing))
    assert not diffs, f"{res.backend} vs hw.sim, timing={timing!r}: " + "; ".join(diffs) + f"; {hint}"



def reset_cut_case(seed):
    """The reset-in-the-middle case every RTL backend runs (tests/test_top.py on Amaranth,
    tests/cocotb/test_cocotb_core.py on Verilator): program ``a`` (with timing ``ta``) is cut by a
    reset after each of ``cuts`` cycles (during its LOAD_ACT, while weights stream, in compute,
    while results wait on ``out``), then program ``b`` (timing ``tb``) runs. Returns
    ``(config, a, ta, b, tb, cuts)``; the cuts are checked to fall inside ``a``'s run."""
    import numpy as np

    from hw.config import TernConfig
    from hw.program import linear_program
    from hw.sim import simulate
    cfg = TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=3, act_depth=64, wgt_depth=8,
                     out_depth=3, tree_reg_every=1, acc_width=14)
    rng = np.random.default_rng(seed)
    a = linear_program(cfg, rng.integers(-128, 128, (5, 60)), rng.integers(-1, 2, (11, 60)))
    b = linear_program(cfg, rng.integers(-128, 128, (3, 21)), rng.integers(-1, 2, (6, 21)))
    ta = Timing.random(seed, p_wgt=0.3, p_out=0.6)
    tb = Timing.random(seed + 1, p_instr=0.2, p_act=0.2, p_wgt=0.2, p_out=0.3)
    sim_a = simulate(cfg, a, ta)
    cuts = [1, 4, int(sim_a.wgt_cycles[3]), int(sim_a.out_cycles[0]) - 2, int(sim_a.out_cycles[-3])]
    assert all(0 < c < sim_a.cycles for c in cuts)
    return cfg, a, ta, b, tb, cuts

# -- the command line (tests/test_cli*.py) -----------------------------------------------------------

def run(capsys, *argv):
    """``tern ARGV``: (exit code, stdout, stderr). Progress lines are off (an interval of an hour)
    unless the test sets ``TERN_PROGRESS_SECONDS`` itself, so that a slow machine cannot add lines
    to a stderr a test compares."""
    import os

    from sw.cli import main
    quiet = "TERN_PROGRESS_SECONDS" not in os.environ
    if quiet:
        os.environ["TERN_PROGRESS_SECONDS"] = "3600"
    try:
        code = main(list(argv))
    finally:
        if quiet:
            del os.environ["TERN_PROGRESS_SECONDS"]
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    """``tern ARGV --json``: (exit code, the one JSON object it printed on one line)."""
    code, out, err = run(capsys, *argv, "--json")
    assert out.count("\n") == 1, out
    return code, json.loads(out)


def assert_one_line_error(code, out, err, needle):
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


def install_faulty_sim(monkeypatch):
    """Replace the ``sim`` backend of the registry with one whose first output is one unit off."""
    from hw.backends import BACKENDS, Backend
    real = BACKENDS["sim"].run

    def faulty(config, program, timing, **streams):
        r = real(config, program, timing, **streams)
        r.outputs = r.outputs.copy()
        r.outputs[0, 0] += 1
        return r

    monkeypatch.setitem(BACKENDS, "sim", Backend("sim", rtl=False, run=faulty))


def bad_input_cases(table: str) -> list[str]:
    """The cases of a table of bad command lines, one ``COMMAND LINE => MESSAGE`` a line (the command
    line split like a shell does; MESSAGE: a part of the one line tern must print)."""
    return [line.strip() for line in table.strip().splitlines()]


def bad_input_test(table: str):
    """A test, parametrized over the cases of ``table`` (:func:`bad_input_cases`), that runs each
    command line and asserts exit code 2, nothing on stdout and one line on stderr that holds the
    case's message."""
    @pytest.mark.parametrize("case", bad_input_cases(table))
    def test(capsys, case):
        command, needle = (part.strip() for part in case.split("=>", 1))
        assert_one_line_error(*run(capsys, *shlex.split(command)), needle)
    return test


# -- the controller and its stages (tests/test_controller.py, test_dispatch.py, test_loader.py,
# test_execute.py): the controller simulated alone, the testbench playing the buffers (dict models
# updated at the clock edge, reads see writes of earlier cycles only), the decoder (a stream of
# numbered words) and the output path (a result may leave one cycle after its ``pe_last``) --------

def _act_value(i, lanes):
    return [((i * 7 + l * 3 + 1) % 256) - 128 for l in range(lanes)]


def _word_value(g, rows, lanes):
    return [[(g + r * 5 + l) % 4 for l in range(lanes)] for r in range(rows)]


def expected_issues(cfg, instrs):
    """The (act beat id, weight word id, first, last) of every PE issue, in program order."""
    act = {}
    beat = 0
    word = 0
    out = []
    for ins in instrs:
        if not instr_is_valid(cfg, ins):
            continue
        if ins.op == Op.LOAD_ACT:
            for i in range(ins.b):
                act[ins.a + i] = beat
                beat += 1
        elif ins.op == Op.MATMUL:
            kw, tokens = ins.b, ins.c
            for t in range(tokens):
                for k in range(kw):
                    out.append((act.get(ins.a + t * kw + k), word + k, k == 0, k == kw - 1))
            word += kw
    return out, beat, word


def run_controller(cfg, instrs, *, seed, p_instr=0.0, p_act=0.0, p_word=0.0, p_pop=0.0,
                   max_cycles=4000, extra_data=True):
    """Simulate; returns a dict of traces. Streams offer one extra beat/word after the program's data
    (``extra_data``) to show that nothing beyond the program's data is taken."""
    exp_issues, n_beats, n_words = expected_issues(cfg, instrs)
    dut = Controller(cfg)
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    res = {"accept": [], "act_w": [], "wgt_w": [], "issues": [], "pops": [], "max_reserved": 0,
           "cycles": None}

    # The streams are driven by the one stream-drive policy (hw.backends.drive) from a seeded
    # Timing: instr, act, words (the "wgt" timing) and the output path's pops (the "out" timing: a
    # pop is made when the sink is ready and the oldest result is poppable).
    timing = Timing.random(seed, p_instr=p_instr, p_act=p_act, p_wgt=p_word, p_out=p_pop)
    extra = 1 if extra_data else 0
    i_src = Source(timing, "instr", [{"op": ins.opcode, "a": ins.a, "b": ins.b, "c": ins.c}
                                     for ins in instrs])           # set through INSTR_LAYOUT
    a_src = Source(timing, "act", [_act_value(i, cfg.lanes) for i in range(n_beats + extra)])
    w_src = Source(timing, "wgt", [_word_value(i, cfg.rows, cfg.lanes) for i in range(n_words + extra)])
    pops = Sink(timing, "out")
    sources = [(i_src, Port(dut.instr.valid, dut.instr.ready, dut.instr.payload)),
               (a_src, Port(dut.act.valid, dut.act.ready, dut.act.payload)),
               (w_src, Port(dut.words.valid, dut.words.ready, dut.words.payload))]
    st = {"act_mem": {}, "wgt_mem": {}, "pending": [], "outstanding": 0, "prev_issue": None,
          "idle_run": 0, "last": None}

    async def tb(ctx):
        ctx.set(dut.wgt_beat, 0)

        def cycle_end(ctx, cycle):
            """After the edge that ended cycle ``cycle`` (read in the next cycle, registers only)."""
            prev = st["last"]
            if prev is None:
                return False
            busy0, act_r, wgt_r, writes, pop = prev
            # the edge: did this cycle issue? (busy counter counts issues)
            issued = ctx.get(dut.perf.busy) - busy0
            assert issued in (0, 1)
            st["prev_issue"] = (st["act_mem"].get(act_r), st["wgt_mem"].get(wgt_r)) if issued else None
            if issued:
                res["issue_cycles"] = res.get("issue_cycles", []) + [cycle]
            for mem, addr, val in writes:
                st[mem][addr] = val
            if pop:
                st["pending"].pop(0)
                res["pops"].append(cycle)
                st["outstanding"] -= 1
            if st["prev_issue"] is not None and ctx.get(dut.pe_last):
                st["outstanding"] += 1
            res["max_reserved"] = max(res["max_reserved"], st["outstanding"])
            if i_src.done and ctx.get(dut.idle) and not st["pending"] and st["prev_issue"] is None:
                st["idle_run"] += 1
                if st["idle_run"] == 4:
                    res["cycles"] = cycle + 1
                    return True
            else:
                st["idle_run"] = 0
            return False

        def until(cycle):
            # the edge that ended the previous cycle, then this cycle (inputs driven, outputs settled)
            if cycle_end(ctx, cycle - 1):
                return True
            pending = st["pending"]
            pop = bool(pending) and pending[0] <= cycle and pops.ready(cycle)
            ctx.set(dut.out_pop, pop)     # acts at the edge only (credits are registered)
            if pop:
                pops.transfer(cycle, None)
            if st["prev_issue"] is not None:
                assert ctx.get(dut.pe_valid), f"seed={seed} cycle={cycle}"
                res["issues"].append(st["prev_issue"] + (bool(ctx.get(dut.pe_first)),
                                                         bool(ctx.get(dut.pe_last))))
                if ctx.get(dut.pe_last):
                    pending.append(cycle + 1)
            else:
                assert not ctx.get(dut.pe_valid), f"seed={seed} cycle={cycle}: pe_valid without issue"
            i_xfer = i_src.valid(cycle) and ctx.get(dut.instr.ready)
            a_xfer = a_src.valid(cycle) and ctx.get(dut.act.ready)
            w_xfer = w_src.valid(cycle) and ctx.get(dut.words.ready)
            assert ctx.get(dut.act_w.en) == a_xfer, f"seed={seed} cycle={cycle}"
            assert ctx.get(dut.wgt_w.en) == w_xfer, f"seed={seed} cycle={cycle}"
            writes = []
            if a_xfer:
                ai = a_src.n
                assert ai < n_beats, \
                    f"seed={seed} cycle={cycle}: took an activation beat beyond the program"
                assert [ctx.get(dut.act_w.data[l]) for l in range(cfg.lanes)] == \
                    _act_value(ai, cfg.lanes)
                writes.append(("act_mem", ctx.get(dut.act_w.addr), ai))
                res["act_w"].append(cycle)
            if w_xfer:
                assert w_src.n < n_words, \
                    f"seed={seed} cycle={cycle}: took a weight word beyond the program"
                writes.append(("wgt_mem", ctx.get(dut.wgt_w.addr), w_src.n))   # bank * wgt_depth + word
                res["wgt_w"].append(cycle)
            if i_xfer:
                res["accept"].append(cycle)
            st["last"] = (ctx.get(dut.perf.busy), ctx.get(dut.act_r.addr), ctx.get(dut.wgt_r.addr),
                          writes, pop)
            return False

        why, _ = await drive_streams(AmaranthBench(ctx), sources, [], until=until,
                                     max_cycles=max_cycles + 1)
        if why == "done":
            res["counters"] = {n: ctx.get(dut.perf[n]) for n in cfg.perf_counters}
            res["error"] = ctx.get(dut.error)
        res["n_beats_taken"], res["n_words_taken"] = a_src.n, w_src.n

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert res["cycles"] is not None, f"seed={seed}: program did not finish in {max_cycles} cycles"
    assert res["issues"] == exp_issues, f"seed={seed}: issue sequence differs from program order"
    assert res["n_beats_taken"] == n_beats and res["n_words_taken"] == n_words, f"seed={seed}"
    assert res["max_reserved"] <= cfg.out_depth, f"seed={seed}: output credits exceeded"
    bad = any(not instr_is_valid(cfg, i) for i in instrs)
    assert res["error"] == int(bad), f"seed={seed}: error={res['error']}, expected bad={bad}"
    c = res["counters"]
    assert c["busy"] == len(exp_issues), f"seed={seed}"
    assert c["act_beats"] == n_beats, f"seed={seed}"
    parts = ("busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle")
    assert sum(c[p] for p in parts) == c["cycles"], f"seed={seed}: counters do not partition cycles"
    return res
