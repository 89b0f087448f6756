"""Verilator (cocotb-driven, hw.backends.verilator) vs the cycle-accurate simulator (hw.sim): simulated
cycles per second on the same program and timing.

Both runs are checked before any figure is printed: the Verilator result vectors must equal the numpy
int64 reference, and its whole RunResult (cycles, counters, every transfer cycle) must equal hw.sim's.
The Verilator figure counts the cocotb drive loop only (``RunResult.wall_s``); the one-off build and
the simulator start-up (embedded Python, imports) are printed separately. The design's evaluation code
is compiled with ``$TERN_VERILATOR_OPT`` (default ``-O1``; try ``-O0`` to see the build/speed trade).

    python bench/bench_verilator.py [--quick] [--config small|real|default] [--tokens T] [--stalls] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TERN_VERILATOR_OPT", "-O1")   # the default of hw.flows.cocotb, made explicit

from hw.config import TernConfig  # noqa: E402
from hw.program import linear_program  # noqa: E402
from hw.backends.verilator import build_core, run_verilator  # noqa: E402
from hw.sim import simulate  # noqa: E402
from hw.timing import Timing  # noqa: E402
from sw.cli.common import bench_parser  # noqa: E402

CONFIGS = {
    "small": TernConfig(rows=4, lanes=8, weight_format="2bit", bus_bytes=4, act_depth=256, wgt_depth=32,
                        out_depth=8),
    "real": TernConfig(rows=12, lanes=24, weight_format="base3", bus_bytes=8, act_depth=512, wgt_depth=16,
                       out_depth=8),
    "default": TernConfig(act_depth=1024, wgt_depth=64),
}


def run(name: str, tokens: int, stalls: bool, tiles: int = 32) -> dict:
    cfg = CONFIGS[name]
    kw = min(cfg.wgt_depth, cfg.act_depth // tokens)
    K, N = kw * cfg.lanes, tiles * cfg.rows
    rng = np.random.default_rng(0)
    prog = linear_program(cfg, rng.integers(-128, 128, (tokens, K)), rng.integers(-1, 2, (N, K)))
    timing = Timing.random(1, p_instr=0.2, p_act=0.2, p_wgt=0.3, p_out=0.3) if stalls else Timing()

    t0 = time.perf_counter()
    b = build_core(cfg)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    v = run_verilator(cfg, prog, timing)
    v_total = time.perf_counter() - t0
    s_wall = float("inf")
    for _ in range(3):   # best of 3: the first call also warms hw.sim's caches
        t0 = time.perf_counter()
        s = simulate(cfg, prog, timing)
        s_wall = min(s_wall, time.perf_counter() - t0)
    diffs = v.compare(s)
    if not np.array_equal(v.outputs, prog.expected):
        diffs.insert(0, "outputs differ from the integer reference")
    return {
        "config": name, "opt": os.environ["TERN_VERILATOR_OPT"], "rows": cfg.rows, "lanes": cfg.lanes, "T": tokens, "K": K, "N": N,
        "timing": "stalls" if stalls else "ideal", "cycles": v.cycles,
        "bit_exact": bool(np.array_equal(v.outputs, prog.expected)), "cycle_exact": not v.compare(s),
        "differences": diffs,
        "build_s": round(build_s, 2), "build_cached": not b.rebuilt,
        "verilator_loop_s": round(v.wall_s, 4), "verilator_total_s": round(v_total, 3),
        "verilator_cycles_per_s": round(v.cycles / v.wall_s), "sim_s": round(s_wall, 5),
        "sim_cycles_per_s": round(v.cycles / s_wall),
        "sim_over_verilator": round((v.cycles / s_wall) / (v.cycles / v.wall_s), 1),
    }


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
        for out in runs:
            print(f"{out['config']} {out['rows']}x{out['lanes']} T={out['T']} K={out['K']} N={out['N']} "
                  f"{out['timing']}: {out['cycles']} cycles, bit-exact={out['bit_exact']}, "
                  f"cycle-exact={out['cycle_exact']}")
            print(f"  build ({out['opt']})      {out['build_s']:8.2f} s{' (cached)' if out['build_cached'] else ''}")
            print(f"  Verilator+cocotb {out['verilator_cycles_per_s']:>10,} cycles/s  (loop "
                  f"{out['verilator_loop_s']:.3f} s, with start-up {out['verilator_total_s']:.2f} s)")
            print(f"  hw.sim           {out['sim_cycles_per_s']:>10,} cycles/s  ({out['sim_s'] * 1e3:.2f} ms, "
                  f"best of 3)")
            print(f"  ratio hw.sim / Verilator: {out['sim_over_verilator']}x")
    bad = [r for r in runs if r["differences"]]
    for r in bad:
        print(f"MISMATCH ({r['config']}, {r['timing']}): " + "; ".join(r["differences"]), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
