"""Simulator speed: hw.sim against Amaranth's simulator of the RTL on the same programs.

For each workload the same program and the same input timing run on both; the results and cycle
counts are checked equal (a speed figure of a wrong answer is worthless), and the simulated cycles
per second of each are printed side by side with the ratio. Then the seven BitLinear projections of a
microsoft/bitnet-b1.58-2B-4T decoder layer (hidden 2560, intermediate 6912) run on hw.sim alone at
T=1 (decode) and T=128 (prefill) on the default configuration, with weight-bus and PE utilization.
(Amaranth sim would need hours for those: millions of cycles at a few thousand cycles per second.)

    python bench/bench_sim.py [--quick] [--json]
"""

from __future__ import annotations

import json
import sys
import time
from fractions import Fraction

import numpy as np

from hw.config import TernConfig
from hw.program import linear_program
from hw.backends.amaranth import run_rtl
from hw.sim import simulate
from hw.workloads import layer_streams
from hw.timing import StreamTiming, Timing
from sw.model.presets import layer_shapes

#: The seven BitLinear projections of a microsoft/bitnet-b1.58-2B-4T decoder layer, (name, N, K).
LAYER_2B4T = layer_shapes("2b4t")


def _timed(fn, *args, repeat=1):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn(*args)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return r, best


def compare_workloads(quick: bool):
    rng = np.random.default_rng(1)
    small = TernConfig(rows=4, lanes=16, bus_bytes=4, act_depth=256, wgt_depth=64, out_depth=8)
    default = TernConfig()
    cases = [
        ("decode  R4 L16  T=1  N=64  K=512", small, 1, 64, 512, Timing()),
        ("prefill R4 L16  T=8  N=32  K=256", small, 8, 32, 256, Timing()),
        ("stalls  R4 L16  T=4  N=32  K=256", small, 4, 32, 256,
         Timing(StreamTiming(p_stall=0.2), StreamTiming(p_stall=0.2), StreamTiming(p_stall=0.3),
                StreamTiming(p_stall=0.1), seed=5)),
        ("bus 1/2 R16 L64 T=2  N=64  K=1024", default, 2, 64, 1024,
         Timing(wgt=StreamTiming(rate=Fraction(1, 2), latency=8))),
    ]
    if quick:
        cases = cases[:2]
    rows = []
    for name, cfg, T, N, K, timing in cases:
        q = rng.integers(-128, 128, (T, K))
        w = rng.integers(-1, 2, (N, K))
        prog = linear_program(cfg, q, w)
        sim, t_sim = _timed(simulate, cfg, prog, timing, repeat=3)
        rtl, t_rtl = _timed(run_rtl, cfg, prog, timing)
        diffs = sim.compare(rtl)
        exact = not diffs and np.array_equal(sim.outputs, prog.expected)
        rows.append({"workload": name, "cycles": rtl.cycles, "equal": exact,
                     "sim_s": t_sim, "amaranth_s": t_rtl,
                     "sim_cycles_per_s": rtl.cycles / t_sim, "amaranth_cycles_per_s": rtl.cycles / t_rtl,
                     "speedup": t_rtl / t_sim})
    return rows


def layer_2b4t(quick: bool):
    cfg = TernConfig()
    out = []
    for T in ((1,) if quick else (1, 128)):
        st, n_out = layer_streams(cfg, T, LAYER_2B4T, np.random.default_rng(T))
        t0 = time.perf_counter()
        res = simulate(cfg, words=st.words, act_beats=st.act_beats, wgt_beats=st.wgt_beats)
        t = time.perf_counter() - t0
        c = res.counters
        assert len(res.outputs) == n_out
        out.append({"T": T, "cycles": res.cycles, "seconds": t, "cycles_per_s": res.cycles / t,
                    "bus_utilization": c["wgt_beats"] / c["cycles"],
                    "pe_utilization": c["busy"] / c["cycles"]})
    return out


def per_projection(quick: bool):
    """Per 2B4T projection shape, the two utilization targets: decode (T=1) weight-bus utilization
    and prefill (T=128) PE utilization."""
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
    args = bench_parser(__doc__.splitlines()[0], quick_help="two small workloads and T=1 only").parse_args(argv)
    rows = compare_workloads(args.quick)
    layers = layer_2b4t(args.quick)
    shapes = per_projection(args.quick)
    if args.json:
        print(json.dumps({"compare": rows, "layer_2b4t": layers, "projections_2b4t": shapes}))
    else:
        print(f"{'workload':36} {'cycles':>8} {'equal':>5} {'hw.sim cyc/s':>14} {'Amaranth cyc/s':>15} "
              f"{'ratio':>8}")
        for r in rows:
            print(f"{r['workload']:36} {r['cycles']:8d} {str(r['equal']):>5} "
                  f"{r['sim_cycles_per_s']:14.3g} {r['amaranth_cycles_per_s']:15.3g} "
                  f"{r['speedup']:7.0f}x")
        print("\n2B4T decoder layer (7 projections, default config R16 L64 2bit B16) on hw.sim:")
        for r in layers:
            print(f"  T={r['T']:<4d} {r['cycles']:>10d} cycles in {r['seconds']:.2f} s "
                  f"({r['cycles_per_s']:.3g} cycles/s); weight bus {100 * r['bus_utilization']:.3f}%, "
                  f"PE {100 * r['pe_utilization']:.3f}%")
        print("\nPer 2B4T projection (targets: decode weight bus >= 97%, prefill PE >= 95%):")
        print(f"  {'proj':5} {'N':>5} {'K':>5} {'T=1 cycles':>11} {'bus':>8} {'T=128 cycles':>13} {'PE':>8}")
        for r in shapes:
            d, p = r["decode"], r["prefill"]
            print(f"  {r['projection']:5} {r['N']:5d} {r['K']:5d} {d['cycles']:11d} "
                  f"{100 * d['bus_utilization']:7.3f}% {p['cycles']:13d} {100 * p['pe_utilization']:7.3f}%")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
