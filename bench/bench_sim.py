"""Simulator speed, every baseline in one run: hw.sim, the plain C++ Verilator harness, the Verilator
backend, Amaranth's simulator and the functional floor, on the same programs.

Baselines (each figure is the wall time of one call, best of ``--repeat``; a figure of a wrong answer
is worthless, so every result and cycle count is checked equal in the same run):

* ``hw.sim``: :func:`hw.sim.simulate` (results, counters, the cycle of every transfer);
* ``harness``: the plain C++ Verilator harness (:mod:`hw.flows.verilator_harness`) built from the
  Verilog ``tern rtl`` writes, only its ports public, -O2, the stream driver in C++; one case on a
  simulator process that is already running (streams sent, whole program run, results read back);
* ``verilator``: the Verilator backend, :func:`hw.backends.verilator.run_verilator` (a fresh harness
  process per call, build cached);
* ``amaranth``: :func:`hw.backends.amaranth.run_rtl` (Amaranth's Python simulator of the RTL; small
  programs only: it runs a few thousand cycles per second);
* ``floor``: the same products by plain numpy or torch from int8 activations and ternary weights
  already unpacked in memory, the fastest of three (all printed): numpy float32 BLAS ``x @ W.T``
  (exact at these sizes) on float32 matrices; torch's int8 x int8 -> int32 ``torch._int_mm`` on int8
  matrices (what hw.sim multiplies with on CPUs with int8 dot-product instructions:
  :func:`hw.sim.results.product_kind`); and numpy float32 BLAS on int8 matrices converted a
  cache-sized block of rows at a time (:func:`hw.sim.results._product_float`, what hw.sim multiplies
  with elsewhere: a quarter of float32's memory traffic).

hw.sim keeps the timing of a program it has run (:data:`hw.sim.machine.TIMINGS`) and decoded weights
(:data:`hw.sim.results.DECODED`): ``hw.sim`` in part 1 is a fresh call (both cleared before it, the
whole timing model run), ``hw.sim known`` a call of the same program again with the caches warm.

Part 1, small programs: ratios of each baseline's time over hw.sim's. Part 2, the seven BitLinear
projections of a microsoft/bitnet-b1.58-2B-4T decoder layer (hidden 2560, intermediate 6912) on the
default configuration (R16 L64) through the driver (:class:`sw.driver.runtime.Accelerator`: compiled
once, then called again on the same compiled weights, as in generation): hw.sim's device time on the
first call in the process (nothing cached) and on repeated calls, against the floor, at T=1 (decode)
and T=128 (prefill); the plain harness runs the T=1 layer once (``--no-harness-layer`` skips it: its
build of R16 L64 takes minutes) with every projection's result and counters checked equal to hw.sim's.
Part 3, the whole 30-layer 2B4T model with random preset weights through
:func:`sw.driver.models.generate` (what ``tern run --model 2b4t`` runs): host wall and CPU seconds of
each generation step, the last one a warm decode token (``--no-model`` skips it).

``--quick`` (two small programs, T=1, the first two projection shapes, no model) leaves the
Verilator baselines out (no builds).

    python bench/bench_sim.py [--quick] [--json] [--repeat N] [--no-harness-layer] [--no-model]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hw.backends.amaranth import run_rtl
from hw.backends.verilator import VerilatorSession, core_verilog, run_verilator
from hw.config import TernConfig
from hw.flows.export import write_verilog
from hw.program import linear_program
from hw.sim import machine, results, simulate
from hw.timing import StreamTiming, Timing
from sw.model.presets import layer_shapes

#: The seven BitLinear projections of a microsoft/bitnet-b1.58-2B-4T decoder layer, (name, N, K).
LAYER_2B4T = layer_shapes("2b4t")

SMALL = TernConfig(rows=4, lanes=16, bus_bytes=4, act_depth=256, wgt_depth=64, out_depth=8)


def _best(fn, repeat: int):
    best, r = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return r, best


def check_rtl_text(cfg: TernConfig) -> None:
    """The harness is built from exactly the Verilog ``tern rtl`` writes for ``cfg``."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tern_core.v"
        write_verilog(cfg, path)
        if path.read_text() != core_verilog(cfg):
            raise SystemExit("bench_sim: the harness Verilog differs from tern rtl's")


def floor_product(q: np.ndarray, w32: np.ndarray) -> np.ndarray:
    """The functional floor in numpy: one product from int8 activations and float32-unpacked ternary
    weights."""
    return q.astype(np.float32) @ w32.T


def floor_int8(q: torch.Tensor, w8: torch.Tensor) -> torch.Tensor:
    """The functional floor in torch: one int8 x int8 -> int32 product from int8 activations and
    int8-unpacked ternary weights."""
    return torch._int_mm(q, w8.T)


def _fresh_simulate(*args):
    """:func:`simulate` with nothing cached: the whole timing model and the weight decode run."""
    machine.TIMINGS.clear()
    results.DECODED.clear()
    return simulate(*args)


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    """(wall, CPU) seconds since ``t = _clock()``."""
    w, c = _clock()
    return w - t[0], c - t[1]


def floor_blocked(q: np.ndarray, w8: np.ndarray) -> np.ndarray:
    """The functional floor in numpy from int8 weights: float32 BLAS on blocks of rows converted into
    a cache-resident buffer (:func:`hw.sim.results._product_float`, the product hw.sim computes with
    on CPUs without int8 dot-product instructions: one byte per weight read from memory)."""
    return results._product_float(q, w8)


def _floors(qs, w32, w8, cpu: bool = False):
    """Best-of seconds (wall, or CPU with ``cpu``) of the numpy float32, the torch int8 and the
    numpy int8-blocked floors over the products of ``qs`` (a list of draws, each one activation
    matrix per weight matrix), and the last draw's products of each."""
    f32, i8, b8 = [], [], []
    k = 1 if cpu else 0
    w8n = [w.numpy() for w in w8]
    for qs_ in qs:
        t = _clock()
        d32 = [floor_product(q, w) for q, w in zip(qs_, w32)]
        f32.append(_since(t)[k])
        qt = [torch.from_numpy(q) for q in qs_]
        t = _clock()
        d8 = [floor_int8(q, w) for q, w in zip(qt, w8)]
        i8.append(_since(t)[k])
        t = _clock()
        db = [floor_blocked(q, w) for q, w in zip(qs_, w8n)]
        b8.append(_since(t)[k])
    return min(f32), min(i8), min(b8), d32, d8, db


def compare_small(quick: bool, repeat: int, verilator: bool) -> list:
    rng = np.random.default_rng(1)
    cases = [
        ("decode  R4 L16  T=1  N=64  K=512", SMALL, 1, 64, 512, Timing()),
        ("prefill R4 L16  T=8  N=32  K=256", SMALL, 8, 32, 256, Timing()),
        ("stalls  R4 L16  T=4  N=32  K=256", SMALL, 4, 32, 256,
         Timing(StreamTiming(p_stall=0.2), StreamTiming(p_stall=0.2), StreamTiming(p_stall=0.3),
                StreamTiming(p_stall=0.1), seed=5)),
        ("bus 1/2 R16 L64 T=2  N=64  K=1024", TernConfig(), 2, 64, 1024,
         Timing(wgt=StreamTiming(rate=Fraction(1, 2), latency=8))),
    ]
    if quick:
        cases = cases[:2]
    rows = []
    sessions: dict = {}
    try:
        for name, cfg, T, N, K, timing in cases:
            q = rng.integers(-128, 128, (T, K))
            w = rng.integers(-1, 2, (N, K))
            prog = linear_program(cfg, q, w)
            sim, t_sim = _best(lambda: _fresh_simulate(cfg, prog, timing), repeat)
            known, t_known = _best(lambda: simulate(cfg, prog, timing), repeat)
            t, others = {"hw.sim": t_sim, "hw.sim known": t_known}, [known]
            if verilator:
                if cfg not in sessions:
                    check_rtl_text(cfg)
                    sessions[cfg] = VerilatorSession(cfg, driver="harness").start()
                runs = [sessions[cfg].run(prog, timing) for _ in range(repeat)]
                t["harness"] = min(r.wall_s for r in runs)
                backend, t["verilator"] = _best(lambda: run_verilator(cfg, prog, timing), max(1, repeat // 2))
                others += [runs[-1], backend]
            rtl, t_rtl = _best(lambda: run_rtl(cfg, prog, timing), 1)
            f32, i8, b8, (d32,), (d8,), (db,) = _floors([[q.astype(np.int8)]] * repeat, [w.astype(np.float32)],
                                                        [torch.from_numpy(w.astype(np.int8))])
            t.update(amaranth=t_rtl, floor=min(f32, i8, b8))
            equal = (all(not sim.compare(r) for r in [*others, rtl]) and np.array_equal(sim.outputs, prog.expected)
                     and np.array_equal(d32.astype(np.int64), q @ w.T) and np.array_equal(d8.numpy(), q @ w.T)
                     and np.array_equal(db, q @ w.T))
            rows.append({"workload": name, "cycles": sim.cycles, "equal": bool(equal),
                         "seconds": t, "cycles_per_s": {k: sim.cycles / v for k, v in t.items() if k != "floor"},
                         "over_sim": {k: v / t_sim for k, v in t.items()}, "speedup": t_rtl / t_sim})
    finally:
        for s in sessions.values():
            s.close()
    return rows


def _layer_problem(T: int, seed: int):
    rng = np.random.default_rng(seed)
    ws = [rng.integers(-1, 2, (N, K), dtype=np.int8) for _, N, K in LAYER_2B4T]
    return ws


def _run_layer(acc, ws, qs):
    """The seven projections on ``acc``; returns (outputs, device wall seconds, host wall seconds,
    records, device CPU seconds)."""
    n0 = len(acc.records)
    t0 = time.perf_counter()
    outs = [acc.linear(q, w, name) for (name, _, _), q, w in zip(LAYER_2B4T, qs, ws)]
    host = time.perf_counter() - t0
    recs = acc.records[n0:]
    return outs, sum(r.wall_s for r in recs), host, recs, sum(r.cpu_s for r in recs)


def layer_2b4t(quick: bool, repeat: int, harness_layer: bool) -> list:
    from sw.driver.runtime import Accelerator

    cfg = TernConfig()
    ws = _layer_problem(1, 7)
    w32 = [w.astype(np.float32) for w in ws]
    w8 = [torch.from_numpy(w) for w in ws]
    rng = np.random.default_rng(8)
    out = []
    for T in ((1,) if quick else (1, 128)):
        draws = [[rng.integers(-128, 128, (T, K), dtype=np.int8) for _, _, K in LAYER_2B4T]
                 for _ in range(repeat + 1)]
        f32, i8, b8, d32, d8, db = _floors(draws, w32, w8)
        f32_cpu, i8_cpu, b8_cpu, *_ = _floors(draws, w32, w8, cpu=True)
        acc = Accelerator(cfg, "sim")
        machine.TIMINGS.clear()      # the first call: nothing cached in this process
        results.DECODED.clear()
        runs = [_run_layer(acc, ws, qs) for qs in draws]
        equal = all(np.array_equal(o, (q.astype(np.int64) @ w.T.astype(np.int64)))
                    for (outs, *_), qs in zip(runs, draws) for o, q, w in zip(outs, qs, ws))
        equal = equal and all(np.array_equal(a.astype(np.int64), o) and np.array_equal(b.numpy(), o)
                              and np.array_equal(c, o) for a, b, c, o in zip(d32, d8, db, runs[-1][0]))
        first, rep = runs[0], min(runs[1:], key=lambda r: r[1])
        t_floor = min(f32, i8, b8)
        tot = {k: sum(r.counters[k] for r in first[3]) for k in ("cycles", "wgt_beats", "busy")}
        row = {"T": T, "cycles": sum(r.cycles for r in first[3]), "equal": bool(equal),
               "bus_utilization": tot["wgt_beats"] / tot["cycles"], "pe_utilization": tot["busy"] / tot["cycles"],
               "floor_s": t_floor, "floor_f32_s": f32, "floor_int8_s": i8, "floor_blocked_s": b8,
               "sim_first_device_s": first[1], "sim_first_host_s": first[2],
               "sim_repeat_device_s": rep[1], "sim_repeat_host_s": rep[2],
               "first_over_floor": first[1] / t_floor, "repeat_over_floor": rep[1] / t_floor,
               "first_over_floor_f32": first[1] / f32, "repeat_over_floor_f32": rep[1] / f32,
               "floor_cpu_s": min(f32_cpu, i8_cpu, b8_cpu), "floor_f32_cpu_s": f32_cpu, "floor_int8_cpu_s": i8_cpu,
               "floor_blocked_cpu_s": b8_cpu,
               "sim_first_device_cpu_s": first[4], "sim_repeat_device_cpu_s": min(r[4] for r in runs[1:])}
        row.update(first_over_floor_cpu=first[4] / row["floor_cpu_s"],
                   repeat_over_floor_cpu=row["sim_repeat_device_cpu_s"] / row["floor_cpu_s"])
        if T == 1 and harness_layer:
            check_rtl_text(cfg)
            with Accelerator(cfg, "verilator") as vacc:
                vacc.linear(np.ones((1, 64), dtype=np.int8), np.ones((16, 64), dtype=np.int8))  # starts it
                outs, dev, host, recs, _ = _run_layer(vacc, ws, draws[-1])
            sim_recs = runs[-1][3]
            same = all(a.cycles == b.cycles and a.counters == b.counters for a, b in zip(recs, sim_recs))
            same = same and all(np.array_equal(a, b) for a, b in zip(outs, runs[-1][0]))
            row.update(harness_device_s=dev, harness_over_sim=dev / rep[1], harness_over_sim_first=dev / first[1],
                       harness_equal=bool(same), harness_cycles_per_s=row["cycles"] / dev)
            row["equal"] = row["equal"] and bool(same)
        out.append(row)
    return out


def model_2b4t(tokens: int) -> dict:
    """The 30-layer 2B4T model with random preset weights through the driver on hw.sim (the device
    pass of ``tern run --model 2b4t --prompt-ids 1,2``): host wall, CPU and device seconds of every
    generation step (step 0: the prompt; the last: a warm decode token), tokens checked equal to the
    reference's."""
    from sw.driver.models import generate, load_model
    from sw.driver.runtime import Accelerator

    t0 = time.perf_counter()
    lm = load_model("2b4t", seed=0)
    acc = Accelerator(TernConfig(), "sim")
    marks = [(time.perf_counter(), time.process_time())]
    toks = generate(lm.model, [[1, 2]], tokens, acc,
                    on_step=lambda s, nxt: marks.append((time.perf_counter(), time.process_time())))
    from sw.model.bitlinear import reference_core
    ref = lm.model.generate_greedy([[1, 2]], tokens, core=reference_core)
    steps = [{"step": s, "host_wall_s": marks[s + 1][0] - marks[s][0], "host_cpu_s": marks[s + 1][1] - marks[s][1],
              "device_wall_s": sum(r.wall_s for r in acc.records if r.step == s),
              "calls": sum(r.step == s for r in acc.records)} for s in range(tokens)]
    return {"tokens": tokens, "equal": bool(torch.equal(toks, ref)), "steps": steps, "warm": steps[-1],
            "total_wall_s": time.perf_counter() - t0, "layers": lm.config.num_hidden_layers}


def per_projection(quick: bool):
    """Per 2B4T projection shape, the two utilization targets: decode (T=1) weight-bus utilization
    and prefill (T=128) PE utilization (hw.sim)."""
    from hw.workloads import layer_streams
    cfg = TernConfig()
    out = []
    for name, N, K in LAYER_2B4T[:2] if quick else LAYER_2B4T:
        row = {"projection": name, "N": N, "K": K}
        for T, key in ((1, "decode"), (128, "prefill")):
            st, _ = layer_streams(cfg, T, [(name, N, K)], np.random.default_rng(T))
            c = simulate(cfg, words=st.words, act_beats=st.act_beats, wgt_beats=st.wgt_beats).counters
            row[key] = {"cycles": c["cycles"], "bus_utilization": c["wgt_beats"] / c["cycles"],
                        "pe_utilization": c["busy"] / c["cycles"]}
        out.append(row)
    return out


def main(argv=None) -> int:
    from sw.cli.common import bench_parser
    ap = bench_parser(__doc__.splitlines()[0], quick_help="two small workloads, T=1 only, no Verilator")
    ap.add_argument("--repeat", type=int, default=3, help="calls per figure (best of; default 3)")
    ap.add_argument("--no-harness-layer", action="store_true", help="skip the harness on the 2B4T layer")
    ap.add_argument("--no-model", action="store_true", help="skip the 30-layer 2B4T model")
    ap.add_argument("--model-tokens", type=int, default=3, help="tokens the model generates (default 3)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's and numpy's BLAS threads, hw.sim's and the floor's (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    with threadpool_limits(limits=max(1, args.threads), user_api="blas"):
        return _main(args)


def _main(args) -> int:
    rows = compare_small(args.quick, max(2, args.repeat), not args.quick)
    layers = layer_2b4t(args.quick, max(2, args.repeat), not (args.quick or args.no_harness_layer))
    shapes = per_projection(args.quick)
    model = None if (args.quick or args.no_model) else model_2b4t(max(2, args.model_tokens))
    ok = all(r["equal"] for r in rows) and all(r["equal"] for r in layers) and (model is None or model["equal"])
    if args.json:
        print(json.dumps({"compare": rows, "layer_2b4t": layers, "projections_2b4t": shapes, "model_2b4t": model,
                          "sim_product": results.product_kind(), "equal": ok}))
        return 0 if ok else 1
    print("Small programs: wall time per call (best of), and its ratio to hw.sim's; results, counters and "
          "every transfer cycle equal:")
    names = [n for n in ("hw.sim", "hw.sim known", "harness", "verilator", "amaranth", "floor")
             if n in rows[0]["seconds"]]
    print(f"  {'workload':34} {'cycles':>7} {'equal':>5} " + " ".join(f"{n:>16}" for n in names))
    for r in rows:
        cells = [f"{r['seconds'][n] * 1e3:8.2f}ms {r['over_sim'][n]:5.2g}x" for n in names]
        print(f"  {r['workload']:34} {r['cycles']:7d} {str(r['equal']):>5} " + " ".join(f"{c:>16}" for c in cells))
    print("\n2B4T decoder layer (7 projections, R16 L64) through the driver; device time of hw.sim vs the floor "
          f"(hw.sim's product: {results.product_kind()}; int8 dot-product instructions on this CPU: "
          f"{'yes' if results.int8_dot_cpu() else 'no'}):")
    for r in layers:
        print(f"  T={r['T']:<4d} {r['cycles']:>9d} cycles, equal {r['equal']}: floor {r['floor_s'] * 1e3:.1f} ms "
              f"(numpy float32 {r['floor_f32_s'] * 1e3:.1f} ms, torch int8 {r['floor_int8_s'] * 1e3:.1f} ms, "
              f"numpy int8 blocked {r['floor_blocked_s'] * 1e3:.1f} ms); "
              f"hw.sim first call {r['sim_first_device_s'] * 1e3:.0f} ms ({r['first_over_floor']:.1f}x floor, "
              f"{r['first_over_floor_f32']:.1f}x float32; host {r['sim_first_host_s']:.2f} s), "
              f"repeated {r['sim_repeat_device_s'] * 1e3:.0f} ms ({r['repeat_over_floor']:.1f}x floor, "
              f"{r['repeat_over_floor_f32']:.1f}x float32; host {r['sim_repeat_host_s']:.2f} s)")
        print(f"         CPU seconds: floor {r['floor_cpu_s'] * 1e3:.1f} ms (float32 {r['floor_f32_cpu_s'] * 1e3:.1f}, "
              f"int8 {r['floor_int8_cpu_s'] * 1e3:.1f}, blocked {r['floor_blocked_cpu_s'] * 1e3:.1f}); hw.sim first {r['sim_first_device_cpu_s'] * 1e3:.0f} ms "
              f"({r['first_over_floor_cpu']:.1f}x), repeated {r['sim_repeat_device_cpu_s'] * 1e3:.0f} ms "
              f"({r['repeat_over_floor_cpu']:.1f}x)")
        print(f"         weight bus {100 * r['bus_utilization']:.3f}%, PE {100 * r['pe_utilization']:.3f}%")
        if "harness_device_s" in r:
            print(f"         plain harness {r['harness_device_s']:.2f} s ({r['harness_cycles_per_s']:.3g} cycles/s): "
                  f"hw.sim is {r['harness_over_sim_first']:.1f}x faster on its first call, "
                  f"{r['harness_over_sim']:.1f}x repeated; equal {r['harness_equal']}")
    if model is not None:
        print(f"\n2B4T model ({model['layers']} layers, random preset weights) through the driver on hw.sim, "
              f"tokens equal to the reference's: {model['equal']}:")
        for st in model["steps"]:
            print(f"  step {st['step']}: host {st['host_wall_s']:.2f} s wall, {st['host_cpu_s']:.2f} s CPU; "
                  f"device {st['device_wall_s']:.2f} s; {st['calls']} calls")
    print("\nPer 2B4T projection (targets: decode weight bus >= 97%, prefill PE >= 95%):")
    print(f"  {'proj':5} {'N':>5} {'K':>5} {'T=1 cycles':>11} {'bus':>8} {'T=128 cycles':>13} {'PE':>8}")
    for r in shapes:
        d, p = r["decode"], r["prefill"]
        print(f"  {r['projection']:5} {r['N']:5d} {r['K']:5d} {d['cycles']:11d} "
              f"{100 * d['bus_utilization']:7.3f}% {p['cycles']:13d} {100 * p['pe_utilization']:7.3f}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
