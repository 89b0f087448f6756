"""hw.sim.events: the energy event counts against hand-computed adder trees (the configuration's
``tree_adder_widths``) and counts taken from the program itself."""

import numpy as np

from hw.config import TernConfig
from hw.isa import Op
from hw.program import instr_is_valid
from hw.sim import simulate
from hw.verify.generate import random_case


def adder_tree_widths(lanes):
    """The adder-tree histogram the event counts use (``TernConfig.tree_adder_widths``)."""
    return TernConfig(lanes=lanes).tree_adder_widths


def test_adder_tree_widths_hand_computed():
    # 64 lanes: 32 adders of 2 lanes (|sum| <= 256: 10 bits), 16 of 4 (11), 8 (12), 4 (13), 2 (14), 1 (15)
    assert adder_tree_widths(64) == {10: 32, 11: 16, 12: 8, 13: 4, 14: 2, 15: 1}
    # 5 lanes: (0+1) (2+3) 4 -> (01+23) 4 -> (0123+4): widths 10, 10, 11, 11
    assert adder_tree_widths(5) == {10: 2, 11: 2}
    assert adder_tree_widths(1) == {}


def test_event_counts():
    cfg = TernConfig(rows=3, lanes=5, weight_format="base3", bus_bytes=2, act_depth=32, wgt_depth=4,
                     out_depth=3)
    case = random_case(7, 3, cfg)
    while not case.program.n_matmul_steps or case.program.expected_error & 2:
        case = random_case(7, case.index + 1, cfg)   # MATMULs, and stream words = builder words
    prog = case.program
    r = simulate(cfg, prog, case.timing)
    ev = r.events
    busy = prog.n_matmul_steps
    mms = [i for i in prog.instrs if i.op == Op.MATMUL and instr_is_valid(cfg, i)]
    tokens = sum(i.c for i in mms)
    nz = neg = 0
    g = 0
    for i in mms:   # weights of each MATMUL from the builder's words (not the stream)
        wds = prog.wgt_words[g:g + i.b]
        nz += i.c * int(np.count_nonzero(wds))
        neg += i.c * int((wds < 0).sum())
        g += i.b
    assert ev["pe_issues"] == busy and ev["dot_products"] == 3 * busy
    assert ev["tree_adds_by_width"] == {10: 2 * 3 * busy, 11: 2 * 3 * busy}
    assert ev["acc_adds"] == (busy - tokens) * 3 and ev["acc_loads"] == tokens * 3
    assert ev["nonzero_terms"] == nz and ev["negated_terms"] == neg
    n_act = len(prog.act_beats)
    assert ev["sram_bits"]["act_buffer"] == {"read": busy * 40, "write": n_act * 40}
    assert ev["sram_bits"]["weight_buffer"] == {"read": busy * 30, "write": g * 30}
    assert ev["sram_bits"]["output_fifo"]["write"] == tokens * 3 * cfg.acc_width
    assert ev["bus_bytes"]["wgt"] == len(prog.wgt_beats) * 2
    assert ev["active_cycles"] + ev["stall_cycles"] + ev["idle_cycles"] == r.cycles
