"""WeightLoader: the execute engine streams behind the loader word by word (bank scoreboard), run on
the controller with the harness of test_controller.py."""

from hw.config import TernConfig
from hw.isa import Instr, Op
from helpers import run_controller


def test_issue_waits_for_word_and_streams_behind_loader():
    """Decode-like MATMUL (tokens=1): word k written in cycle w_k is issued in cycle
    max(w_k + 1, previous issue + 1) — the execute engine follows the loader with no extra bubble."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=8, out_depth=4)
    res = run_controller(cfg, [Instr(Op.LOAD_ACT, 0, 8), Instr(Op.MATMUL, 0, 8, 1)], seed=11,
                         p_word=0.6)
    prev = None
    for w, i in zip(res["wgt_w"], res["issue_cycles"]):
        expect = w + 1 if prev is None else max(w + 1, prev + 1)
        # the MATMUL is current only after the LOAD_ACT's beats D .. D + 7
        expect = max(expect, cfg.dispatch_latency + 8)
        assert i == expect, f"seed=11: words written {res['wgt_w']}, issues {res['issue_cycles']}"
        prev = i
