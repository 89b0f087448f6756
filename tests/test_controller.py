"""Controller: its four stages together against the program-order semantics (random programs under
random stalls, a hand-derived schedule). ``run_controller`` is the harness of the stage tests too
(test_dispatch.py, test_loader.py, test_execute.py).

The controller is simulated alone; the testbench plays the buffers (dict models updated at the clock
edge, reads see writes of earlier cycles only), the decoder (a stream of numbered words) and the
output path (a result may leave one cycle after its ``pe_last``). Every issue is checked against the
program-order semantics of docs/ISA.md.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.config import TernConfig
from hw.isa import Instr, Op
from hw.program import instr_is_valid
from hw.rtl.controller import Controller


class _Gap:
    """Seeded geometric gaps before each transfer (probability p of one more idle cycle)."""

    def __init__(self, rng, p):
        self.rng, self.p, self.left = rng, p, None

    def ready_now(self):
        if self.left is None:
            self.left = 0
            while self.p and self.rng.random() < self.p:
                self.left += 1
        if self.left:
            self.left -= 1
            return False
        return True

    def consumed(self):
        self.left = None


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
    rng = random.Random(seed)
    exp_issues, n_beats, n_words = expected_issues(cfg, instrs)
    dut = Controller(cfg)
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    res = {"accept": [], "act_w": [], "wgt_w": [], "issues": [], "pops": [], "max_reserved": 0,
           "cycles": None}

    async def tb(ctx):
        gi, ga, gw, gp = (_Gap(rng, p) for p in (p_instr, p_act, p_word, p_pop))
        ii = ai = wi = 0
        act_mem, wgt_mem = {}, {}
        pending = []          # cycles at which results become poppable
        outstanding = 0       # results reserved (last issued) and not popped
        prev_issue = None
        idle_run = 0
        for cycle in range(max_cycles):
            # drive inputs
            iv = ii < len(instrs) and gi.ready_now()
            ctx.set(dut.instr.valid, iv)
            if iv:
                ins = instrs[ii]   # the payload set through INSTR_LAYOUT's fields
                ctx.set(dut.instr.payload, {"op": ins.opcode, "a": ins.a, "b": ins.b, "c": ins.c})
            lim_a = n_beats + (1 if extra_data else 0)
            av = ai < lim_a and ga.ready_now()
            ctx.set(dut.act.valid, av)
            ctx.set(dut.act.payload, _act_value(ai, cfg.lanes))
            lim_w = n_words + (1 if extra_data else 0)
            wv = wi < lim_w and gw.ready_now()
            ctx.set(dut.words.valid, wv)
            ctx.set(dut.words.payload, _word_value(wi, cfg.rows, cfg.lanes))
            pop = bool(pending) and pending[0] <= cycle and gp.ready_now()
            ctx.set(dut.out_pop, pop)
            ctx.set(dut.wgt_beat, 0)
            # observe (combinational, this cycle)
            if prev_issue is not None:
                assert ctx.get(dut.pe_valid), f"seed={seed} cycle={cycle}"
                res["issues"].append(prev_issue + (bool(ctx.get(dut.pe_first)),
                                                   bool(ctx.get(dut.pe_last))))
                if ctx.get(dut.pe_last):
                    pending.append(cycle + 1)
            else:
                assert not ctx.get(dut.pe_valid), f"seed={seed} cycle={cycle}: pe_valid without issue"
            busy0 = ctx.get(dut.perf.busy)
            i_xfer = iv and ctx.get(dut.instr.ready)
            a_xfer = av and ctx.get(dut.act.ready)
            w_xfer = wv and ctx.get(dut.words.ready)
            assert ctx.get(dut.act_w.en) == a_xfer, f"seed={seed} cycle={cycle}"
            assert ctx.get(dut.wgt_w.en) == w_xfer, f"seed={seed} cycle={cycle}"
            act_r = ctx.get(dut.act_r.addr)
            wgt_r = ctx.get(dut.wgt_r.addr)  # bank * wgt_depth + word
            writes = []
            if a_xfer:
                assert ai < n_beats, f"seed={seed} cycle={cycle}: took an activation beat beyond the program"
                assert [ctx.get(dut.act_w.data[l]) for l in range(cfg.lanes)] == _act_value(ai, cfg.lanes)
                writes.append((act_mem, ctx.get(dut.act_w.addr), ai))
                res["act_w"].append(cycle)
            if w_xfer:
                assert wi < n_words, f"seed={seed} cycle={cycle}: took a weight word beyond the program"
                writes.append((wgt_mem, ctx.get(dut.wgt_w.addr), wi))
                res["wgt_w"].append(cycle)
            if i_xfer:
                res["accept"].append(cycle)
            await ctx.tick()
            # the edge: did this cycle issue? (busy counter counts issues)
            issued = ctx.get(dut.perf.busy) - busy0
            assert issued in (0, 1)
            prev_issue = (act_mem.get(act_r), wgt_mem.get(wgt_r)) if issued else None
            if issued:
                res["issue_cycles"] = res.get("issue_cycles", []) + [cycle]
            for mem, addr, val in writes:
                mem[addr] = val
            ii += i_xfer
            ai += a_xfer
            wi += w_xfer
            if a_xfer:
                ga.consumed()
            if w_xfer:
                gw.consumed()
            if i_xfer:
                gi.consumed()
            if pop:
                pending.pop(0)
                gp.consumed()
                res["pops"].append(cycle)
                outstanding -= 1
            if prev_issue is not None and ctx.get(dut.pe_last):
                outstanding += 1
            res["max_reserved"] = max(res["max_reserved"], outstanding)
            if ii == len(instrs) and ctx.get(dut.idle) and not pending and prev_issue is None:
                idle_run += 1
                if idle_run == 4:
                    res["cycles"] = cycle + 1
                    break
            else:
                idle_run = 0
        res["counters"] = {n: ctx.get(dut.perf[n]) for n in cfg.perf_counters}
        res["error"] = ctx.get(dut.error)
        res["n_beats_taken"], res["n_words_taken"] = ai, wi

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


def _random_program(rng, cfg, n):
    instrs = []
    loaded = set()
    for _ in range(n):
        r = rng.random()
        if r < 0.3 or not loaded:
            cnt = rng.randint(1, min(8, cfg.act_depth))
            addr = rng.randrange(cfg.act_depth - cnt + 1)
            instrs.append(Instr(Op.LOAD_ACT, addr, cnt))
            loaded.update(range(addr, addr + cnt))
        elif r < 0.85:
            kw = rng.randint(1, cfg.wgt_depth)
            tokens = rng.randint(1, max(1, min(3, cfg.act_depth // kw)))
            addr = rng.randrange(cfg.act_depth - kw * tokens + 1)
            instrs.append(Instr(Op.MATMUL, addr, kw, tokens))
        elif r < 0.9:
            instrs.append(Instr(Op.SYNC))
        elif r < 0.95:
            instrs.append(Instr(Op.NOP))
        else:
            instrs.append(rng.choice([Instr(Op.MATMUL, 0, cfg.wgt_depth + 1, 1),
                                      Instr(Op.LOAD_ACT, cfg.act_depth, 1), Instr(9, 1, 2, 3)]))
    return instrs


@pytest.mark.parametrize("seed", range(6))
def test_random_programs_random_stalls(seed):
    rng = random.Random(1000 + seed)
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4,
                     out_depth=rng.choice([2, 3, 5]))
    instrs = _random_program(rng, cfg, 14)
    run_controller(cfg, instrs, seed=seed, p_instr=rng.choice([0, 0.3]), p_act=rng.choice([0, 0.5]),
                   p_word=rng.choice([0, 0.3, 0.7]), p_pop=rng.choice([0, 0.5, 0.8]))


def test_exact_timing_small_program():
    """Hand-derived cycles (docs/ARCHITECTURE.md): instructions accepted in cycles 0 and 1; the
    LOAD_ACT is current from cycle 3 and takes beats in 3..6; the loader holds the MATMUL from cycle 4
    and writes words 0, 1 in cycles 4, 5; the MATMUL is current from cycle 7 and issues in 7..10."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=4)
    res = run_controller(cfg, [Instr(Op.LOAD_ACT, 0, 4), Instr(Op.MATMUL, 0, 2, 2)], seed=0)
    assert res["accept"] == [0, 1]
    assert res["act_w"] == [3, 4, 5, 6]
    assert res["wgt_w"] == [4, 5]
    assert res["issue_cycles"] == [7, 8, 9, 10]
    # the testbench's output path: poppable one cycle after pe_last (issue 8 -> 10, issue 10 -> 12)
    assert res["pops"] == [10, 12]
    c = res["counters"]
    assert (c["cycles"], c["busy"], c["act_beats"], c["stall_weight"]) == (res["cycles"], 4, 4, 0)
