"""The Verilator backend's two drivers side by side: the C++ harness (only the ports public, -O2, the
stream driver in C++: hw.flows.verilator_harness) against the cocotb testbench (--public-flat-rw,
OPT_FAST ``$TERN_VERILATOR_OPT``, default -O1, the drive loop in Python), with hw.sim for reference.

Every run is checked before a figure is printed: the result vectors must equal the numpy int64
reference and each driver's whole RunResult (cycles, counters, every transfer cycle) must equal
hw.sim's. The figures are the build time of each (0 when cached: see ``build_cached``) and the
simulated cycles per second of one run (``RunResult.wall_s``: the harness's figure includes sending
the streams and reading the results back; the cocotb figure is its drive loop only, without the
simulator's start-up).

    python bench/bench_verilator.py [--quick] [--config tiny|small|real|default] [--tokens T] [--stalls] [--json]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from hw.backends.verilator import build_core, build_harness_core, run_verilator
from hw.config import TernConfig
from hw.program import linear_program
from hw.sim import simulate
from hw.timing import Timing
from sw.cli.common import bench_parser

CONFIGS = {
    "tiny": TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=3, act_depth=64, wgt_depth=8,
                       out_depth=3, tree_reg_every=1, acc_width=14),   # the core of the RTL tests
    "small": TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=4, act_depth=256, wgt_depth=32,
                        out_depth=8),
    "real": TernConfig(rows=12, lanes=24, weight_format="base3", bus_bytes=8, act_depth=512, wgt_depth=16,
                       out_depth=8),
    "default": TernConfig(act_depth=1024, wgt_depth=64),
}


def _built(fn, cfg):
    t0 = time.perf_counter()
    b = fn(cfg)
    return b, (time.perf_counter() - t0) if b.rebuilt else 0.0


def run(name: str, tokens: int, stalls: bool, tiles: int = 32) -> dict:
    cfg = CONFIGS[name]
    kw = min(cfg.wgt_depth, cfg.act_depth // tokens)
    K, N = kw * cfg.lanes, tiles * cfg.rows
    rng = np.random.default_rng(0)
    prog = linear_program(cfg, rng.integers(-128, 128, (tokens, K)), rng.integers(-1, 2, (N, K)))
    timing = Timing.random(1, p_instr=0.2, p_act=0.2, p_wgt=0.3, p_out=0.3) if stalls else Timing()
    s_wall = float("inf")
    for _ in range(3):   # best of 3: the first call also warms hw.sim's caches
        t0 = time.perf_counter()
        s = simulate(cfg, prog, timing)
        s_wall = min(s_wall, time.perf_counter() - t0)
    out = {"config": name, "rows": cfg.rows, "lanes": cfg.lanes, "T": tokens, "K": K, "N": N,
           "timing": "stalls" if stalls else "ideal", "cycles": s.cycles, "differences": [],
           "sim_s": round(s_wall, 5), "sim_cycles_per_s": round(s.cycles / s_wall)}
    for driver, build in (("harness", build_harness_core), ("cocotb", build_core)):
        b, build_s = _built(build, cfg)
        v = run_verilator(cfg, prog, timing, driver=driver)
        if not np.array_equal(v.outputs, prog.expected):
            out["differences"].append(f"{driver}: outputs differ from the integer reference")
        out["differences"] += [f"{driver}: {d}" for d in v.compare(s)]
        out[driver] = {"build_s": round(build_s, 2), "build_cached": not b.rebuilt, "run_s": round(v.wall_s, 4),
                       "cycles_per_s": round(v.cycles / v.wall_s)}
    out["harness_over_cocotb"] = round(out["cocotb"]["run_s"] / out["harness"]["run_s"], 1)
    out["sim_over_harness"] = round(out["harness"]["run_s"] / s_wall, 2)
    return out


def main(argv=None) -> int:
    ap = bench_parser(__doc__.splitlines()[0], quick_help="the small configuration only")
    ap.add_argument("--config", choices=sorted(CONFIGS), help="one configuration (default: small and real)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--stalls", action="store_true", help="random stalls and backpressure on every stream")
    a = ap.parse_args(argv)
    if a.config:
        plan = [(a.config, a.stalls)]
    elif a.quick:
        plan = [("small", False)]
    else:
        plan = [("small", False), ("real", False), ("real", True)]
    runs = [run(name, a.tokens, stalls, 8 if a.quick else 32) for name, stalls in plan]
    if a.json:
        print(json.dumps({"runs": runs}))
    else:
        for r in runs:
            print(f"{r['config']} {r['rows']}x{r['lanes']} T={r['T']} K={r['K']} N={r['N']} {r['timing']}: "
                  f"{r['cycles']} cycles, equal to hw.sim and the reference: {not r['differences']}")
            for driver in ("harness", "cocotb"):
                d = r[driver]
                build = "cached" if d["build_cached"] else f"built in {d['build_s']:.1f} s"
                print(f"  Verilator {driver:8} {d['cycles_per_s']:>12,} cycles/s  ({d['run_s']:.3f} s; {build})")
            print(f"  hw.sim             {r['sim_cycles_per_s']:>12,} cycles/s  ({r['sim_s'] * 1e3:.2f} ms, best of 3)")
            print(f"  harness / cocotb: {r['harness_over_cocotb']}x faster; hw.sim / harness: "
                  f"{r['sim_over_harness']}x")
    bad = [r for r in runs if r["differences"]]
    for r in bad:
        print(f"MISMATCH ({r['config']}, {r['timing']}): " + "; ".join(r["differences"]), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
