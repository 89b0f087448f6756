"""hw.estimate's shortcuts give the full path's figures: a layer timed without values
(``simulate(..., values=False)``, all-zero streams) against random activations and weights with every
value computed; the DRAM schedule's per-burst bookkeeping against a per-item reference; the cache
folder shared by a study's processes against fresh estimates."""

import math

import numpy as np
import pytest

from hw.config import TernConfig
from hw.dram import schedule_program
from hw.estimate import estimate
from hw.estimate import model as M
from hw.sim import simulate
from hw.workloads import layer_streams
from tests.test_estimate_model import DEMO

SMALL = (("a", 40, 96), ("b", 24, 200))


def _figures(r):
    return {k: v for k, v in r.items() if not k.endswith("_wall_s")}


def _fresh():
    M._simulate_layer.cache_clear()
    M._memory_layer.cache_clear()
    M._DEMAND.clear()


@pytest.mark.parametrize("cfg, kw", [
    (TernConfig(), {}),
    (TernConfig(rows=8, lanes=32, bus_bytes=8, weight_format="base3"), {"memory": "ddr4", "tokens": 5}),
    (TernConfig(rows=4, lanes=48, bus_bytes=4, out_depth=2), {"memory": "hbm2", "clock_mhz": 500.0}),
])
def test_estimate_without_values_equals_the_full_path(cfg, kw):
    full = estimate(DEMO, cfg, values=True, **kw)
    fast = estimate(DEMO, cfg, **kw)
    assert _figures(fast) == _figures(full)
    assert fast["cycles_per_layer_pass"] == full["cycles_per_layer_pass"] > 0


def test_simulate_without_values_times_the_same_run():
    cfg = TernConfig(rows=8, lanes=32, bus_bytes=8)
    rand, _ = layer_streams(cfg, 3, list(SMALL), np.random.default_rng(1))
    zero, _ = layer_streams(cfg, 3, list(SMALL), None)
    assert zero.words == rand.words and zero.act_beats.shape == rand.act_beats.shape
    assert zero.wgt_beats.shape == rand.wgt_beats.shape and not zero.wgt_beats.any()
    a = simulate(cfg, words=rand.words, act_beats=rand.act_beats, wgt_beats=rand.wgt_beats)
    b = simulate(cfg, words=zero.words, act_beats=zero.act_beats, wgt_beats=zero.wgt_beats, values=False)
    assert a.outputs.any() and not b.outputs.any() and a.outputs.shape == b.outputs.shape
    assert (a.cycles, a.counters, a.error) == (b.cycles, b.counters, b.error)
    for s in ("instr", "act", "wgt", "out"):
        assert np.array_equal(getattr(a, f"{s}_cycles"), getattr(b, f"{s}_cycles"))
    data = {"nonzero_terms", "negated_terms"}
    assert b.events["nonzero_terms"] is None and a.events["nonzero_terms"] > 0
    assert {k: v for k, v in a.events.items() if k not in data} == \
        {k: v for k, v in b.events.items() if k not in data}


def _reference_schedule(ideal, item_bytes, memory, clock_mhz, fifo_bytes, write_batch=16):
    """The schedule with every item's availability and prediction kept, item by item (the
    controller model of hw.dram written out directly)."""
    from hw.dram import _INPUTS, _Channels, get_dram
    p = get_dram(memory)
    BB, f = p.burst_bytes, clock_mhz / 1e3
    chans = _Channels(p, p.channels)
    row_bytes = p.page_bytes * p.banks * p.channels
    reqs, addr = [], 0
    for si, s in enumerate(_INPUTS + ("out",)):
        n, ib = len(ideal[s]), item_bytes[s]
        base = addr // BB
        for k in range(-(-n * ib // BB)):
            i0, i1 = k * BB // ib, min(((k + 1) * BB - 1) // ib, n - 1)
            reqs.append((int(ideal[s][i1] if s == "out" else ideal[s][i0]), si, k, i0, i1, base + k))
        addr += -(-n * ib // row_bytes) * row_bytes
    reqs.sort(key=lambda r: (r[0], r[1], r[2]))
    at = {s: [0] * len(ideal[s]) for s in _INPUTS}
    pred = {s: [0] * len(ideal[s]) for s in _INPUTS}
    lag, pending, issue = 0, [], []
    for w, si, k, i0, i1, burst in reqs:
        if si == 3:
            c = w + lag + 1
            issue.append(c)
            pending.append((c / f, burst))
            continue
        s = _INPUTS[si]
        free = i1 - max(1, fifo_bytes // item_bytes[s])
        t = 0.0 if free < 0 else (pred[s][free] + 1) / f
        if len(pending) >= write_batch and pending[write_batch - 1][0] <= max(t, chans.bus_free[burst % chans.n]):
            due = max(t, chans.bus_free[burst % chans.n])
            while pending and pending[0][0] <= due:
                tw, bw = pending.pop(0)
                chans.access(bw, True, tw)
        c = math.ceil(chans.access(burst, False, t) * f - 1e-9)
        for i in range(i0, i1 + 1):
            at[s][i] = max(at[s][i], c)
            lag = max(lag, at[s][i] - int(ideal[s][i]))
            pred[s][i] = max(int(ideal[s][i]) + lag, at[s][i])
    return at, issue


@pytest.mark.parametrize("lanes, bus_bytes, memory, fifo", [
    (32, 8, "lpddr5", 8192), (48, 4, "ddr4", 200), (128, 64, "lpddr5", 64), (64, 16, "hbm2", 96),
])
def test_schedule_equals_an_item_by_item_reference(lanes, bus_bytes, memory, fifo):
    cfg = TernConfig(rows=8, lanes=lanes, bus_bytes=bus_bytes)
    streams, _ = layer_streams(cfg, 4, list(SMALL), None)
    res = simulate(cfg, words=streams.words, act_beats=streams.act_beats, wgt_beats=streams.wgt_beats,
                   values=False)
    ideal = {s: np.asarray(getattr(res, f"{s}_cycles")) for s in ("instr", "act", "wgt", "out")}
    item = {s: res.events["bus_bytes"][s] // len(c) for s, c in ideal.items()}
    sched = schedule_program(ideal, item, memory, clock_mhz=250.0, fifo_bytes=fifo)
    at, issue = _reference_schedule(ideal, item, memory, 250.0, fifo)
    for s in ("instr", "act", "wgt"):
        assert list(sched.timing.stream(s).at) == at[s], s
    assert sched.write_issue.tolist() == issue


def test_cache_folder_gives_the_figures_of_a_fresh_estimate(tmp_path):
    cfg = TernConfig(rows=8, lanes=32)
    _fresh()
    want = _figures(estimate(DEMO, cfg, memory="ddr4", clock_mhz=300.0))
    M.set_cache_dir(tmp_path)
    try:
        for variant in ("mux", "carry"):         # the dot variant changes no cycle: one schedule
            _fresh()
            got = _figures(estimate(DEMO, TernConfig(rows=8, lanes=32, dot_variant=variant), memory="ddr4",
                                    clock_mhz=300.0))
            want_v = want | {"config": got["config"]}
            assert got == want_v
        assert len(list((tmp_path / "dram").iterdir())) == 1
        assert len(list((tmp_path / "layer").iterdir())) == 2
        _fresh()                                  # read back from the folder
        assert _figures(estimate(DEMO, cfg, memory="ddr4", clock_mhz=300.0)) == want
    finally:
        M.set_cache_dir(None)
        _fresh()
