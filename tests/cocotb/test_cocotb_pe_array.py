"""PEArray (hw/rtl/pe_array.py) on Verilator against a numpy reference.

A seeded stream of accumulations (1..6 steps each) with bubbles anywhere (``valid = 0`` cycles carry
random data and random first/last flags that must be ignored), extreme activations with all +1 / all
-1 rows (so that an ``acc_width = dot_width`` accumulator wraps), invalid code 3 (= 0) and random
data. Every result must appear exactly ``latency`` cycles after its ``last`` step, with the value
``wrap_A(sum of the steps' dot products)`` computed here with int64 numpy.
"""

import numpy as np
import pytest

from hw.backends.common import pack_payloads, unpack_payloads
from hw.config import TernConfig
from hw.program import wrap_signed
from hw.rtl.pe_array import PEArray
from tbutil import build_component, replay_hint, run_tb, seed

CODE_WEIGHT = np.array([-1, 0, 1, 0])


def _stimulus(pe: PEArray, cfg: TernConfig, rng: np.random.Generator, n_acc: int):
    R, L = cfg.rows, cfg.lanes

    def step(valid, first, last, act, codes):
        (a,), (k,) = pack_payloads(pe.act.shape(), [act]), pack_payloads(pe.codes.shape(), [codes])
        return [valid, first, last, a, k]

    steps, expected = [], []
    c = 0
    for j in range(n_acc):
        k = int(rng.integers(1, 7))
        acc = np.zeros(R, dtype=np.int64)
        extreme = j % 4 == 0
        for i in range(k):
            while rng.random() < 0.3:   # bubble: garbage that must not count
                steps.append(step(0, int(rng.integers(0, 2)), int(rng.integers(0, 2)),
                                  rng.integers(-128, 128, L), rng.integers(0, 4, (R, L))))
                c += 1
            if extreme:
                a = np.full(L, int(rng.choice([-128, -127, 127])))
                codes = np.repeat(rng.choice([0, 2], R)[:, None], L, axis=1)
            else:
                a = rng.integers(-128, 128, L)
                codes = rng.integers(0, 4, (R, L))
            acc += (CODE_WEIGHT[codes] * a[None, :]).sum(axis=1)
            steps.append(step(1, int(i == 0), int(i == k - 1), a, codes))
            c += 1
        expected.append((c - 1, wrap_signed(acc, cfg.acc_width).tolist(), acc.tolist()))
    return steps, expected


@pytest.mark.parametrize("rows,lanes,tree,acc_extra", [(3, 4, 1, 0), (4, 8, 0, 18), (2, 16, 2, 1), (5, 13, 3, 0)])
def test_pe_array_matches_reference(rows, lanes, tree, acc_extra, request):
    s = seed(300 + rows * lanes)
    hint = replay_hint(s, request.node.nodeid)
    cfg0 = TernConfig(rows=rows, lanes=lanes, tree_reg_every=tree, act_depth=16, wgt_depth=4)
    cfg = cfg0.replace(acc_width=cfg0.dot_width + acc_extra)
    pe = PEArray(cfg)
    steps, expected = _stimulus(pe, cfg, np.random.default_rng(s), 400)
    lat = pe.latency
    b = build_component(pe, f"pe_r{rows}l{lanes}t{tree}a{cfg.acc_width}")
    out = run_tb(b, "tb_pe_array", {"steps": steps, "drain": lat + 3}, label=request.node.nodeid)["results"]
    assert len(out) == len(expected), f"{len(out)} results, expected {len(expected)}; {hint}"
    for n, ((cyc, val), (last_c, exp, _)) in enumerate(zip(out, expected)):
        assert cyc == last_c + lat, f"result {n} in cycle {cyc}, expected {last_c + lat}; {hint}"
        got = unpack_payloads(pe.result.shape(), [val])[0].tolist()
        assert got == exp, f"result {n}: {got} != {exp}; {hint}"
    # with a dot_width accumulator the extreme accumulations really wrapped (and were checked)
    wrapped = sum(exp != raw for _, exp, raw in expected)
    if acc_extra == 0:
        assert wrapped > 0, f"no accumulation wrapped; {hint}"
