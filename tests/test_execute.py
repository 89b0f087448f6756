"""ExecuteEngine: output credits bound the results in flight, run on the controller with the harness of
test_controller.py."""

from hw.config import TernConfig
from hw.isa import Instr, Op
from helpers import run_controller


def test_credits_limit_results_in_flight():
    """k_words=1, many tokens, out_depth=2, slow consumer: never more than 2 results reserved, and the
    last-k issue waits (stall_out) instead of overrunning."""
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, act_depth=16, wgt_depth=4, out_depth=2)
    res = run_controller(cfg, [Instr(Op.LOAD_ACT, 0, 16), Instr(Op.MATMUL, 0, 1, 16)], seed=5,
                         p_pop=0.7)
    assert res["max_reserved"] == 2
    assert res["counters"]["stall_out"] > 0
