"""sw.driver.runtime: one API on every backend (sim, Amaranth RTL, Verilator), statistics, errors.

Results are checked against an independent torch int64 matmul; the RTL backends must also reproduce
the simulator's cycle count and counters exactly for the same calls."""

import sys

import numpy as np
import pytest
import torch

from hw.backends import Backend
from hw.config import TernConfig
from hw.sim import simulate
from hw.result import PERF_COUNTERS
from hw.timing import StreamTiming, Timing
from sw.driver.compiler import CompileError
from sw.driver.runtime import (BACKENDS, Accelerator, BackendError, BackendUnavailable, DeviceError,
                               get_backend, projection_kind)
from sw.model.bitlinear import BitLinear


ALL = [b for b in BACKENDS if b != "serial"]   # serial needs a board: tests/test_serial.py
RTL = ["amaranth", "verilator"]

# small enough for the RTL backends: K split (acc 13 bits: one 16-lane word per chunk), N padded,
# tokens in groups (act_depth 16)
SMALL = TernConfig(rows=4, lanes=16, acc_width=13, act_depth=16, wgt_depth=4, out_depth=4)


def torch_reference(q, t):
    return torch.as_tensor(q).to(torch.int64) @ torch.as_tensor(t).to(torch.int64).T


@pytest.mark.parametrize("backend", ALL)
def test_linear_exact_on_every_backend(backend):
    rng = np.random.default_rng(7)
    acc = Accelerator(SMALL, backend)
    cases = [(1, 6, 40), (5, 9, 33)]
    for T, N, K in cases:
        q = torch.from_numpy(rng.integers(-128, 128, size=(T, K), dtype=np.int8))
        t = torch.from_numpy(rng.integers(-1, 2, size=(N, K), dtype=np.int8))
        D = acc.linear(q, t, name="model.layers.3.mlp.up_proj")
        assert isinstance(D, torch.Tensor) and D.dtype == torch.int64
        assert torch.equal(D, torch_reference(q, t))
    # numpy in, numpy out
    qn = rng.integers(-128, 128, size=(2, 20), dtype=np.int8)
    tn = rng.integers(-1, 2, size=(3, 20), dtype=np.int8)
    Dn = acc.linear(qn, tn)
    assert isinstance(Dn, np.ndarray) and np.array_equal(Dn, torch_reference(qn, tn).numpy())
    assert len(acc.records) == 3
    r = acc.records[1]
    assert (r.kind, r.layer, r.tokens, r.N, r.K, r.chunks) == ("up_proj", 3, 5, 9, 33, 3)
    assert r.groups == 3   # one LOAD_ACT per chunk: 16 one-word tokens fit act_depth=16


@pytest.mark.parametrize("backend", RTL)
def test_rtl_backends_reproduce_the_simulators_cycles(backend):
    """Same calls, same timing: identical D, cycles and all eight counters on the RTL and the sim."""
    rng = np.random.default_rng(3)
    timing = Timing(wgt=StreamTiming(p_stall=0.3), out=StreamTiming(p_stall=0.2), seed=4)
    sim = Accelerator(SMALL, "sim", timing)
    rtl = Accelerator(SMALL, backend, timing)
    q = rng.integers(-128, 128, size=(3, 45), dtype=np.int8)
    t = rng.integers(-1, 2, size=(7, 45), dtype=np.int8)
    assert np.array_equal(sim.linear(q, t), rtl.linear(q, t))
    assert np.array_equal(rtl.linear(q, t), torch_reference(q, t).numpy())
    a, b = sim.records[0], rtl.records[0]
    assert a.cycles == b.cycles and a.counters == b.counters


def test_verilator_backend_runs_every_call_in_one_session():
    """Dependent calls of one Accelerator share one simulator process (started on the first call);
    each call still reproduces the simulator's D, cycles and counters; close() ends the process."""
    rng = np.random.default_rng(5)
    timing = Timing(act=StreamTiming(p_stall=0.2), wgt=StreamTiming(p_stall=0.3), out=StreamTiming(p_stall=0.4),
                    seed=6)
    sim = Accelerator(SMALL, "sim", timing)
    with Accelerator(SMALL, "verilator", timing) as acc:
        assert acc._session is None
        q = rng.integers(-128, 128, size=(3, 40), dtype=np.int8)
        pids = set()
        for i, (N, K) in enumerate([(7, 40), (5, 7), (9, 40), (4, 33)]):
            t = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
            D = acc.linear(q[:, :K], t)
            assert np.array_equal(D, torch_reference(q[:, :K], t).numpy())
            assert np.array_equal(sim.linear(q[:, :K], t), D)
            q = np.clip(D[:, :1] + rng.integers(-128, 128, size=(3, 40)), -128, 127).astype(np.int8)  # dependent
            pids.add(acc._session.pid)
        sess = acc._session
        assert len(pids) == 1 and sess.calls == 4 and sess.running
        for a, b in zip(sim.records, acc.records, strict=True):
            assert a.cycles == b.cycles and a.counters == b.counters
    assert sess.closed and not sess.running and acc._session is None


def test_records_are_the_devices_counters():
    """A call's record is exactly what hw.sim.simulate reports for the compiled program."""
    cfg = TernConfig(rows=4, lanes=8, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, size=(6, 50), dtype=np.int8)
    t = rng.integers(-1, 2, size=(10, 50), dtype=np.int8)
    acc = Accelerator(cfg)
    acc.linear(q, t)
    comp = acc.compile(t)
    assert acc.cache.hits == 1 and acc.cache.misses == 1   # linear compiled it, compile() hit the cache
    prog = comp.program(q)
    res = simulate(cfg, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    rec = acc.records[0]
    assert rec.cycles == res.cycles and rec.counters == {k: res.counters[k] for k in PERF_COUNTERS}
    assert rec.instructions == len(prog.words)
    # busy = every MATMUL step: tokens x words x tiles over all chunks
    assert rec.busy == 6 * -(-50 // 8) * -(-10 // 4)


def test_stats_sum_the_records():
    cfg = TernConfig(rows=4, lanes=8)
    rng = np.random.default_rng(9)
    acc = Accelerator(cfg, clock_mhz=100)
    for i, (T, N, K) in enumerate([(1, 8, 16), (1, 12, 24), (4, 8, 16)]):
        acc.step = i
        acc.linear(rng.integers(-128, 128, size=(T, K), dtype=np.int8),
                   rng.integers(-1, 2, size=(N, K), dtype=np.int8), name="model.layers.0.self_attn.q_proj")
    acc.generated_tokens = 3
    s = acc.stats
    cyc = sum(r.cycles for r in acc.records)
    busy = sum(r.counters["busy"] for r in acc.records)
    beats = sum(r.counters["wgt_beats"] for r in acc.records)
    assert s["cycles"] == cyc and s["calls"] == 3
    assert s["utilization"] == busy / cyc and s["bus_utilization"] == beats / cyc
    assert s["tokens_per_s"] == pytest.approx(3 / (cyc / 100e6), rel=1e-12)
    assert s["prefill_cycles"] == acc.records[0].cycles
    assert s["decode_cycles"] == acc.records[1].cycles + acc.records[2].cycles
    assert s["breakdown"]["q_proj"]["calls"] == 3 and s["breakdown"]["q_proj"]["cycles"] == cyc
    acc.reset_stats()
    assert acc.stats["cycles"] == 0 and acc.stats["tokens_per_s"] is None


def test_device_wall_s_is_the_backends_run_time(monkeypatch):
    """``CallRecord.wall_s`` times the backend's run of the program: a backend that sleeps 20 ms per
    program shows at least 20 ms per call, and no call's figure exceeds the time around the whole call;
    ``device_wall_s`` sums the records; ``summary(records)`` gives the figures of a subset of the calls."""
    import time
    real = BACKENDS["sim"].run

    def sleepy(config, program, timing, **streams):
        time.sleep(0.02)
        return real(config, program, timing, **streams)

    monkeypatch.setitem(BACKENDS, "sleepy", Backend("sleepy", rtl=False, run=sleepy))
    rng = np.random.default_rng(3)
    acc = Accelerator(TernConfig(rows=4, lanes=8), "sleepy")
    around = []
    t = rng.integers(-1, 2, size=(12, 24), dtype=np.int8)
    for _ in range(3):
        q = rng.integers(-128, 128, size=(2, 24), dtype=np.int8)
        t0 = time.perf_counter()
        D = acc.linear(q, t)
        around.append(time.perf_counter() - t0)
        assert torch.equal(torch.from_numpy(D), torch_reference(q, t))
    assert acc.cache.misses == 1 and acc.cache.hits == 2            # compiled once
    for rec, whole in zip(acc.records, around):
        assert 0.02 <= rec.wall_s <= whole
    s = acc.stats
    assert s["device_wall_s"] == sum(r.wall_s for r in acc.records) and "wall_s_device" not in s
    last = acc.summary(acc.records[1:])
    assert last["calls"] == 2 and last["cycles"] == acc.records[1].cycles + acc.records[2].cycles
    assert last["device_wall_s"] == acc.records[1].wall_s + acc.records[2].wall_s
    assert acc.records[0].cycles == acc.records[1].cycles == acc.records[2].cycles   # same shapes
    assert acc.records[0].counters == acc.records[2].counters


def test_core_hook_in_a_bitlinear():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(21, 70, generator=g)
    bl = BitLinear.from_float(w, name="model.layers.0.mlp.down_proj")
    x = torch.randn(2, 3, 70, generator=g)
    acc = Accelerator(TernConfig(rows=4, lanes=16, acc_width=14, act_depth=16, wgt_depth=4))
    ref = bl.forward_exact(x)
    got = bl.forward_exact(x, core=acc.core)
    assert torch.equal(got.D, ref.D) and torch.equal(got.y, ref.y)
    assert acc.records[0].name == "model.layers.0.mlp.down_proj" and acc.records[0].tokens == 6


def test_timing_changes_cycles_not_results():
    cfg = TernConfig(rows=4, lanes=8)
    rng = np.random.default_rng(4)
    q = rng.integers(-128, 128, size=(2, 40), dtype=np.int8)
    t = rng.integers(-1, 2, size=(9, 40), dtype=np.int8)
    fast = Accelerator(cfg)
    slow = Accelerator(cfg, timing=Timing(wgt=StreamTiming(rate=0.25)))
    assert np.array_equal(fast.linear(q, t), slow.linear(q, t))
    assert slow.records[0].cycles > fast.records[0].cycles
    assert slow.records[0].counters["stall_weight"] > fast.records[0].counters["stall_weight"]


def test_backend_errors(monkeypatch):
    with pytest.raises(BackendError, match="unknown backend 'fpga'"):
        Accelerator(TernConfig(), "fpga")
    monkeypatch.setitem(sys.modules, "hw.backends.verilator", None)   # as if the module were not installed
    with pytest.raises(BackendUnavailable, match="hw.backends.verilator"):
        get_backend("verilator")
    with pytest.raises(TypeError, match="TernConfig"):
        Accelerator({"rows": 4})
    with pytest.raises(ValueError, match="clock_mhz"):
        Accelerator(TernConfig(), clock_mhz=0)
    with pytest.raises(TypeError, match="Timing"):
        Accelerator(TernConfig(), timing="ideal")
    acc = Accelerator(TernConfig(rows=2, lanes=4))
    with pytest.raises(CompileError, match="do not match"):
        acc.linear(np.zeros((1, 5), dtype=np.int8), np.zeros((2, 4), dtype=np.int8))


def test_device_errors_are_reported(monkeypatch):
    """A device that raises its error flags, or loses a result vector, is never trusted."""
    cfg = TernConfig(rows=2, lanes=4)
    real = BACKENDS["sim"].run

    def flagged(config, program, timing, **streams):
        r = real(config, program, timing, **streams)
        r.error = 2
        return r

    def lossy(config, program, timing, **streams):
        r = real(config, program, timing, **streams)
        r.outputs = r.outputs[:-1]
        return r

    q = np.ones((1, 4), dtype=np.int8)
    t = np.ones((2, 4), dtype=np.int8)
    monkeypatch.setitem(BACKENDS, "flagged", Backend("flagged", rtl=False, run=flagged))
    monkeypatch.setitem(BACKENDS, "lossy", Backend("lossy", rtl=False, run=lossy))
    with pytest.raises(DeviceError, match="error flags 2"):
        Accelerator(cfg, "flagged").linear(q, t)
    with pytest.raises(CompileError, match="result vectors"):
        Accelerator(cfg, "lossy").linear(q, t)


def test_projection_kind():
    assert projection_kind("model.layers.12.self_attn.k_proj") == "k_proj"
    assert projection_kind("") == "linear"


def test_repeated_calls_reuse_decoded_weights_and_stay_exact(monkeypatch):
    """Generation calls the same compiled weights again with new activations: hw.sim decodes them once
    (hw.sim.results.DECODED) and every call stays equal to torch's int64 product, to a run with the
    cache off, and in events and counters to the first call's."""
    from hw.sim import results

    monkeypatch.setattr(results, "DECODED", results.DecodedWeights(64 << 20))
    cfg = TernConfig(rows=4, lanes=16, act_depth=64, wgt_depth=16)
    rng = np.random.default_rng(11)
    t = rng.integers(-1, 2, (24, 100), dtype=np.int8)
    acc = Accelerator(cfg, "sim")
    outs = []
    for step in range(3):
        q = rng.integers(-128, 128, (2, 100), dtype=np.int8)
        d = acc.linear(q, t)
        assert np.array_equal(d, torch_reference(q, t).numpy()), step
        outs.append((q, d))
    assert results.DECODED.misses >= 1 and results.DECODED.hits >= 2 * results.DECODED.misses
    first, last = acc.records[0], acc.records[-1]
    assert first.counters == last.counters
    prog = acc.compile(t).program(outs[-1][0])
    cached = simulate(cfg, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    monkeypatch.setattr(results, "DECODED", results.DecodedWeights(0))   # off
    fresh = simulate(cfg, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
    assert not cached.compare(fresh) and cached.events == fresh.events
    assert len(results.DECODED) == 0


def test_decoded_weights_are_used_only_for_equal_bytes():
    """Two weight streams whose sampled bytes agree but that differ elsewhere: the second decodes its
    own weights (the sample only finds a candidate; the bytes are compared in full)."""
    from hw.sim import results

    cache = results.DecodedWeights(1 << 20)
    raw = np.zeros((64, 4096), dtype=np.uint8)
    other = raw.copy()
    other[1, 1] = 1          # not in the sample (every 64th byte, the last 64)
    key = cache.key(("2bit",), raw)
    assert cache.key(("2bit",), other) == key
    w = np.ones((4, 4), dtype=np.float32)
    cache.put(key, raw, w, np.zeros(256, dtype=np.int64), 16, 0)
    assert cache.get(key, other) is None
    hit = cache.get(key, raw.copy())
    assert hit is not None and hit[0] is w and (cache.hits, cache.misses) == (1, 1)
    raw2 = np.ones((64, 1024), dtype=np.uint8)
    key2 = cache.key(("2bit",), raw2)
    cache.put(key2, raw2, np.ones(1 << 17, dtype=np.float32), np.zeros(256, dtype=np.int64), 0, 0)
    assert len(cache) == 1 and cache.nbytes <= cache.max_bytes     # over the budget: the oldest went out
    assert cache.get(key, raw) is None and cache.get(key2, raw2) is not None
    cache.put(cache.key(("2bit",), raw), raw, np.ones(1 << 18, dtype=np.float32), None, 0, 0)
    assert len(cache) == 1       # larger than the whole budget: not kept


def test_lazy_preset_layers_are_generated_once_and_shared(monkeypatch):
    """Two random models of one preset and seed share each layer (generated on first use, the same
    weights as random_layer); another seed gets its own."""
    from sw.model import presets
    from sw.model.config import ModelConfig

    monkeypatch.setattr(presets, "_LAYERS", presets._LayerCache())
    calls = []
    real = presets.random_layer
    monkeypatch.setattr(presets, "random_layer", lambda *a: calls.append(a) or real(*a))
    cfg = ModelConfig(vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    a, b = presets.random_model(cfg, seed=3), presets.random_model(cfg, seed=3)
    assert a.layers[1] is b.layers[1] and a.layers[0] is b.layers[0] and len(calls) == 2
    ref = real(cfg, 1, 3)
    assert torch.equal(a.layers[1].mlp.down_proj.T, ref.mlp.down_proj.T)
    assert presets.random_model(cfg, seed=4).layers[1] is not a.layers[1] and len(calls) == 3
    with pytest.raises(IndexError):
        a.layers[2]


def test_compiled_weights_of_a_tensor_are_found_without_hashing_again_until_it_changes():
    from sw.driver import compiler
    cache = compiler.WeightCache()
    t = torch.randint(-1, 2, (8, 32), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    c1 = cache.get(SMALL, t)
    assert cache.get(SMALL, t) is c1 and (cache.hits, cache.misses) == (1, 1)
    hashed = []
    real = compiler.weight_fingerprint
    compiler_fp = lambda x: hashed.append(1) or real(x)   # noqa: E731
    import unittest.mock
    with unittest.mock.patch.object(compiler, "weight_fingerprint", compiler_fp):
        assert cache.get(SMALL, t) is c1 and not hashed            # remembered with the tensor
        t[0, 0] = -t[0, 0] if t[0, 0] != 0 else 1                  # changed in place: hashed again
        c2 = cache.get(SMALL, t)
        assert hashed and c2 is not c1
        assert np.array_equal(Accelerator(SMALL, "sim", cache=cache).linear(np.ones((1, 32), dtype=np.int8), t),
                              torch_reference(np.ones((1, 32)), t).numpy())
