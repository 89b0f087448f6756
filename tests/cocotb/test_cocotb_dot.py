"""TernaryDotUnit (hw/rtl/dot.py) on Verilator: every output compared with a numpy reference.

Small lane counts are exhaustive over every weight-code combination (including the invalid code 3,
which must act as 0) crossed with the extreme and special activations; lanes=1 is exhaustive over all
int8 activations too. Larger units get every code combination's extremes (all +1 / all -1 / all 0 with
-128, -127, 127) and seeded random vectors. Both pipelined (tree_reg_every >= 1) and purely
combinational (tree_reg_every = 0) units are covered.
"""

import itertools

import numpy as np
import pytest

from hw.backends.common import pack_payloads
from hw.rtl.dot import TernaryDotUnit
from tbutil import build_component, replay_hint, run_tb, seed

SPECIAL = (-128, -127, -64, -1, 0, 1, 63, 127)
CODE_WEIGHT = np.array([-1, 0, 1, 0])   # code 0: -1, 1: 0, 2: +1, 3 (invalid): 0


def _reference(acts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return (acts.astype(np.int64) * CODE_WEIGHT[codes]).sum(axis=1)


def _vectors(lanes: int, rng: np.random.Generator, n_random: int):
    acts, codes = [], []
    all_codes = list(itertools.product(range(4), repeat=lanes)) if lanes <= 3 else []
    if lanes == 1:
        for a in range(-128, 128):
            for c in range(4):
                acts.append([a]); codes.append([c])
    elif lanes <= 3:
        for c in all_codes:
            for a in itertools.product(SPECIAL, repeat=lanes):
                acts.append(list(a)); codes.append(list(c))
    for a in (-128, -127, 127, 1, -1):
        for c in (0, 1, 2, 3):
            acts.append([a] * lanes); codes.append([c] * lanes)
    for _ in range(n_random):
        acts.append(rng.integers(-128, 128, lanes).tolist())
        codes.append(rng.integers(0, 4, lanes).tolist())
    return np.array(acts, dtype=np.int64), np.array(codes, dtype=np.int64)


@pytest.mark.parametrize("lanes,tree_reg_every,n_random", [
    (1, 1, 50), (2, 1, 500), (3, 1, 500), (7, 0, 3000), (16, 2, 3000), (64, 3, 3000),
])
def test_dot_unit_matches_reference(lanes, tree_reg_every, n_random, request):
    s = seed(1000 + lanes)
    acts, codes = _vectors(lanes, np.random.default_rng(s), n_random)
    dot = TernaryDotUnit(lanes, tree_reg_every)
    lat = dot.latency
    b = build_component(dot, f"dot_l{lanes}_r{tree_reg_every}")
    out = run_tb(b, "tb_dot", {"latency": lat, "act": pack_payloads(dot.act.shape(), acts),
                               "codes": pack_payloads(dot.codes.shape(), codes)},
                 label=request.node.nodeid)
    got = np.array(out["sum"], dtype=np.int64)
    exp = _reference(acts, codes)
    assert got.shape == exp.shape
    bad = np.flatnonzero(got != exp)
    assert bad.size == 0, (f"{bad.size} of {len(exp)} sums differ; first: act={acts[bad[0]].tolist()} "
                           f"codes={codes[bad[0]].tolist()} got {got[bad[0]]} expected {exp[bad[0]]}; "
                           + replay_hint(s, request.node.nodeid))


def test_exhaustive_vectors_cover_every_code_combination():
    acts, codes = _vectors(3, np.random.default_rng(0), 0)
    assert len({tuple(c) for c in codes.tolist()}) == 4 ** 3
    assert len({tuple(a) for a in acts.tolist()}) >= len(SPECIAL) ** 3
