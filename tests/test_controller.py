"""Controller: its four stages together against the program-order semantics (random programs under
random stalls, a hand-derived schedule). Its harness, ``run_controller`` (tests/helpers.py), serves the
stage tests too (test_dispatch.py, test_loader.py, test_execute.py).

The controller is simulated alone; the testbench plays the buffers (dict models updated at the clock
edge, reads see writes of earlier cycles only), the decoder (a stream of numbered words) and the
output path (a result may leave one cycle after its ``pe_last``). Every issue is checked against the
program-order semantics of docs/ISA.md.
"""

import random

import pytest

from hw.config import TernConfig
from hw.isa import Instr, Op

from helpers import run_controller


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
    """Hand-derived cycles (docs/ARCHITECTURE.md): instructions accepted in cycles 0 and 1; with
    wgt_depth 4 the check pipeline has 2 stages (dispatch latency 5), so the LOAD_ACT is current from
    cycle 5 and takes beats in 5..8; the loader holds the MATMUL from cycle 6 and writes words 0, 1 in
    cycles 6, 7; the MATMUL is current from cycle 9 and issues in 9..12."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=4)
    assert (cfg.check_stages, cfg.dispatch_latency) == (2, 5)
    res = run_controller(cfg, [Instr(Op.LOAD_ACT, 0, 4), Instr(Op.MATMUL, 0, 2, 2)], seed=0)
    assert res["accept"] == [0, 1]
    assert res["act_w"] == [5, 6, 7, 8]
    assert res["wgt_w"] == [6, 7]
    assert res["issue_cycles"] == [9, 10, 11, 12]
    # the testbench's output path: poppable one cycle after pe_last (issue 10 -> 12, issue 12 -> 14)
    assert res["pops"] == [12, 14]
    c = res["counters"]
    assert (c["cycles"], c["busy"], c["act_beats"], c["stall_weight"]) == (res["cycles"], 4, 4, 0)
