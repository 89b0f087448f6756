"""TernCore (hw/rtl/top.py) on Verilator (hw.backends.verilator) vs the PyTorch/numpy reference vs the
cycle-accurate simulator (hw.sim).

* The embedded demo model (sw/model/demo) runs a prompt with every BitLinear's integer core computed
  by the Verilated RTL (all 14 projections, real activations quantized by the reference quantizer, real
  ternary weights, compiled with hw.program.linear_program): every D is bit-identical to
  ``q @ T.T``, every BitLinear output and the final logits are ``torch.equal`` to the reference model.
* Corner cases: extreme activations (-128, -127, 127) with all +1 / all -1 weights (including the
  accumulator wrap at ``acc_width``), all-zero weights, K not a multiple of lanes, N not a multiple of
  rows, one token and one output feature.
* Reset in the middle of a program (during LOAD_ACT, weight streaming, compute and output
  backpressure): the next program runs exactly as from power-up.
* Random differential programs (hw.verify.differential.run_verify with the "verilator" backend).

Every run is compared field by field with hw.sim.simulate for the same hw.timing.Timing: result
vectors, cycle count, all performance counters, error flags and the cycle of every stream transfer.
Failures name the seed (replay with ``TERN_SEED=<seed>``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from hw.config import TernConfig
from hw.isa import Instr, Op
from hw.program import linear_program, outputs_to_matrix, wrap_signed
from hw.backends.common import HarnessError
from hw.backends.verilator import VerilatorCase, run_verilator, run_verilator_batch
from hw.verify.differential import run_verify
from helpers import assert_same_as_sim, core_timings, reset_cut_case
from tbutil import replay_hint, seed

#: Real layers: K = 128 and 256 are not multiples of 24 lanes, N = 64/128/256 not multiples of 12 rows.
CFG_REAL = TernConfig(rows=12, lanes=24, weight_format="base3", bus_bytes=8, act_depth=256, wgt_depth=16,
                      out_depth=8, tree_reg_every=2, acc_width=32)
#: Small: 2bit, 3 beats per word, 3 output credits, a 14-bit accumulator that wraps at K = 64.
CFG_SMALL = TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=3, act_depth=64, wgt_depth=8,
                       out_depth=3, tree_reg_every=1, acc_width=14)

DEMO = Path(__file__).resolve().parents[2] / "sw" / "model" / "demo"


# -- the demo model, every projection on the Verilated core ------------------------------------------

def test_demo_model_logits_bit_exact_with_every_bitlinear_on_verilator(request):
    from sw.model.checkpoint import load_checkpoint
    from sw.model.tokenizer import CharTokenizer

    model = load_checkpoint(DEMO)
    tok = CharTokenizer.from_file(DEMO / "tokenizer.json")
    ids = torch.tensor([tok.encode("417+385=")])
    calls = []

    def recording_core(q, t, linear):
        calls.append((q.clone(), t.clone(), linear.name))
        return torch.from_numpy(q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T).to(torch.int32)

    ref_logits = model(ids)
    rec_logits = model(ids, core=recording_core)
    assert torch.equal(ref_logits, rec_logits)
    assert len(calls) == 7 * model.config.num_hidden_layers

    s = seed(11)
    timings = core_timings(s)
    progs, cases = [], []
    for n, (q, t, _) in enumerate(calls):
        prog = linear_program(CFG_REAL, q.numpy(), t.numpy())
        progs.append(prog)
        cases.append((prog, timings[n % len(timings)]))
    results = run_verilator_batch(CFG_REAL, cases)

    replay = []
    for (q, t, name), prog, (_, timing), res in zip(calls, progs, cases, results):
        hint = f"layer {name}, " + replay_hint(s, request.node.nodeid)
        assert not isinstance(res, Exception), f"{res}; {hint}"
        d = outputs_to_matrix(CFG_REAL, res.outputs, q.shape[0], t.shape[0])
        ref = torch.matmul(q.to(torch.float64), t.to(torch.float64).T).to(torch.int64).numpy()
        assert np.array_equal(d, ref), f"D differs from q @ T.T; {hint}"
        assert res.error == 0 and res.counters["busy"] == prog.n_matmul_steps, hint
        assert_same_as_sim(CFG_REAL, prog, timing, res, hint)
        replay.append(torch.from_numpy(d).to(torch.int32))

    it = iter(replay)
    rtl_logits = model(ids, core=lambda q, t, linear: next(it))
    assert torch.equal(rtl_logits, ref_logits), "logits with the Verilated core differ from the reference"

    # one projection's float output through the reference epilogue equals the reference BitLinear's
    from sw.model.bitlinear import BitLinear
    from sw.model.quant import act_quant, epilogue
    lin = next(m for m in model.modules() if isinstance(m, BitLinear) and m.name.endswith("down_proj"))
    x = torch.randn(5, lin.in_features, generator=torch.Generator().manual_seed(s))
    q, s_x = act_quant(x)
    prog = linear_program(CFG_REAL, q.numpy(), lin.T.numpy())
    res = run_verilator(CFG_REAL, prog, timings[1])
    d = torch.from_numpy(outputs_to_matrix(CFG_REAL, res.outputs, 5, lin.out_features)).to(torch.int32)
    assert torch.equal(epilogue(d, s_x, lin.w_scale), lin(x))


# -- corner cases ---------------------------------------------------------------------------------

def _corner_problems(rng):
    K = 64   # 8 words of 8 lanes: |D| reaches 128 * 64 = 8192 = 2**13, the 14-bit accumulator's edge
    out = []
    for a in (-128, -127, 127):
        for w in (1, -1):
            out.append((f"act={a} w={w:+d}", np.full((3, K), a), np.full((5, K), w)))
    out.append(("zero weights", rng.integers(-128, 128, (4, K)), np.zeros((6, K), dtype=np.int64)))
    out.append(("K=61 N=7", rng.choice([-128, 127, -127], (5, 61)), rng.integers(-1, 2, (7, 61))))
    out.append(("K=3 N=1 T=1", np.array([[-128, 127, -1]]), np.array([[-1, -1, 1]])))
    out.append(("K=9 N=13 T=7", rng.integers(-128, 128, (7, 9)), rng.integers(-1, 2, (13, 9))))
    out.append(("mixed extremes", rng.choice([-128, 127], (6, 40)), rng.choice([-1, 1], (9, 40))))
    return out


def test_corner_cases_bit_exact_and_cycle_exact(request):
    s = seed(21)
    rng = np.random.default_rng(s)
    problems = _corner_problems(rng)
    timings = core_timings(s)
    cases, meta = [], []
    for name, q, w in problems:
        prog = linear_program(CFG_SMALL, q, w)
        for timing in timings:
            cases.append((prog, timing))
            meta.append((name, q, w, prog, timing))
    results = run_verilator_batch(CFG_SMALL, cases)
    wraps = 0
    for (name, q, w, prog, timing), res in zip(meta, results):
        hint = f"{name}, " + replay_hint(s, request.node.nodeid)
        assert not isinstance(res, Exception), f"{res}; {hint}"
        full = q.astype(np.int64) @ w.astype(np.int64).T
        exp = wrap_signed(full, CFG_SMALL.acc_width)
        wraps += int((exp != full).any())
        d = outputs_to_matrix(CFG_SMALL, res.outputs, q.shape[0], w.shape[0])
        assert np.array_equal(d, exp), f"D differs: got {d[0].tolist()}..., expected {exp[0].tolist()}...; {hint}"
        assert_same_as_sim(CFG_SMALL, prog, timing, res, hint)
    assert wraps > 0   # act=-128 with all -1 weights: +8192 wraps to -8192 in 14 bits


# -- reset in the middle of a program ---------------------------------------------------------------

def test_reset_in_the_middle_of_a_program(request):
    s = seed(31)
    hint = replay_hint(s, request.node.nodeid)
    cfg, a, ta, b, tb, cuts = reset_cut_case(s)
    assert cfg == CFG_SMALL
    cases = [VerilatorCase(b, tb, interrupt=(a, ta, c)) for c in cuts]
    cases.append(VerilatorCase(b, tb))   # b from the power-up state, for comparison
    results = run_verilator_batch(CFG_SMALL, cases)
    ref = results[-1]
    assert_same_as_sim(CFG_SMALL, b, tb, ref, hint)
    assert np.array_equal(ref.outputs, b.expected), hint
    for c, res in zip(cuts, results[:-1]):
        assert not isinstance(res, Exception), f"cut at {c}: {res}; {hint}"
        assert_same_as_sim(CFG_SMALL, b, tb, res, f"reset after {c} cycles of another program; {hint}")
        assert not res.compare(ref)


def test_harness_error_when_streams_are_short():
    # LOAD_ACT of 4 beats with only 2 beats on the stream can never finish
    words = [Instr(Op.LOAD_ACT, 0, 4).word]
    with pytest.raises(HarnessError, match="did not finish within 200 cycles"):
        run_verilator(CFG_SMALL, words=words, act_beats=np.zeros((2, CFG_SMALL.lanes), dtype=np.int8),
                      max_cycles=200)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="timing"):
        run_verilator(CFG_SMALL, linear_program(CFG_SMALL, np.ones((1, 8)), np.ones((4, 8))), timing="fast")
    with pytest.raises(TypeError, match="config"):
        run_verilator_batch("small", [])


# -- random differential programs -------------------------------------------------------------------

def test_run_verify_random_programs_fixed_config():
    s = seed(41)
    r = run_verify("verilator", 300, s, CFG_SMALL)
    assert r["programs"] == 300 and r["cycles"] > 0
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, (
        f"{r['first_failure']} (replay: tern verify --backend verilator --seed {s} --start "
        f"{r['first_failure']['index']} --programs 1 with the config above)")


def test_run_verify_random_configs_matches_amaranth_backend():
    """Two random configurations (two builds): the Verilator results equal the Amaranth-sim harness'
    field by field, and both equal hw.sim and the reference (via run_verify)."""
    from hw.backends.amaranth import run_rtl
    from hw.verify.generate import random_case

    s = seed(5)
    r = run_verify("verilator", 2, s)
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, r["first_failure"]
    for i in range(2):
        case = random_case(s, i)
        v = run_verilator(case.config, case.program, case.timing)
        a = run_rtl(case.config, case.program, case.timing)
        assert not v.compare(a), f"{case.describe()}: {v.compare(a)}"


@pytest.mark.slow
def test_bitnet_2b4t_projections_full_k(request):
    """Slices of real-size BitNet b1.58 2B4T projections (sw.model.presets.random_layer: q_proj with
    K = 2560, down_proj with K = 6912; the first 20 output features, not a multiple of 8 rows) on
    activations quantized by the reference, with outliers."""
    from sw.model.presets import random_layer
    from sw.model.quant import act_quant, epilogue

    cfg = TernConfig(rows=8, lanes=64, weight_format="base3", bus_bytes=16, act_depth=512, wgt_depth=128,
                     out_depth=8, tree_reg_every=2, acc_width=32)
    s = seed(61)
    layer = random_layer("2b4t", 0, seed=s)
    g = torch.Generator().manual_seed(s)
    cases, meta = [], []
    for lin in (layer.self_attn.q_proj, layer.mlp.down_proj):
        x = torch.randn(4, lin.in_features, generator=g)
        x[:, :: 97] *= 30.0   # outlier features, as in real activations
        q, s_x = act_quant(x)
        t = lin.T[:20]
        prog = linear_program(cfg, q.numpy(), t.numpy())
        for timing in core_timings(s)[:2]:
            cases.append((prog, timing))
            meta.append((lin, x, q, s_x, t, prog, timing))
    for (lin, x, q, s_x, t, prog, timing), res in zip(meta, run_verilator_batch(cfg, cases)):
        hint = f"{lin.name}, " + replay_hint(s, request.node.nodeid)
        assert not isinstance(res, Exception), f"{res}; {hint}"
        d = outputs_to_matrix(cfg, res.outputs, 4, 20)
        ref = q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T
        assert np.array_equal(d, ref), hint
        y = epilogue(torch.from_numpy(d).to(torch.int32), s_x, lin.w_scale)
        assert torch.equal(y, lin(x)[:, :20]), hint
        assert_same_as_sim(cfg, prog, timing, res, hint)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [CFG_SMALL, CFG_REAL,
                                 TernConfig(rows=16, lanes=64, weight_format="2bit", bus_bytes=16,
                                            act_depth=64, wgt_depth=8, out_depth=4, tree_reg_every=2,
                                            acc_width=19)],
                         ids=["small", "real", "wide"])
def test_long_regression_fixed_configs(cfg):
    s = seed(2024)
    r = run_verify("verilator", 3000, s, cfg, max_instr=30)
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, (r["first_failure"], f"seed={s}")


@pytest.mark.slow
def test_long_regression_random_configs():
    s = seed(2025)
    r = run_verify("verilator", 40, s, max_instr=30)
    assert r["mismatches"] == 0 and r["cycle_mismatches"] == 0, (r["first_failure"], f"seed={s}")
