"""RTL throughput in Amaranth simulation: weight-bus utilization of decode, PE utilization of prefill.

Measured cycle by cycle on TernCore (hw/rtl/top.py, run by hw.backends.amaranth with the ideal
hw.timing.Timing: every stream always valid/ready), results checked bit-exactly against the numpy
int64 reference, and compared with the closed forms of docs/ARCHITECTURE.md. Prints one line per run; ``--json`` prints one JSON object.

    python bench/bench_rtl_throughput.py [--quick] [--json]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from hw.backends.amaranth import run_rtl
from hw.config import TernConfig
from hw.program import decode_program, prefill_program
from hw.timing import Timing
from sw.cli.common import bench_parser


def run(kind, cfg, n_mm, kw, tokens=1):
    prog = decode_program(cfg, n_mm, kw) if kind == "decode" else prefill_program(cfg, n_mm, kw, tokens)
    t0 = time.perf_counter()
    res = run_rtl(cfg, prog, Timing.ideal())
    wall = time.perf_counter() - t0
    exact = bool(np.array_equal(res.outputs, prog.expected))
    # docs/ARCHITECTURE.md, "Closed forms" (D = dispatch_latency, R = result_latency)
    ld, d, r = cfg.decoder_latency, cfg.dispatch_latency, cfg.result_latency
    bpw = cfg.beats_per_word
    if kind == "decode":
        closed = max(d + 1 + n_mm * kw * bpw + ld, d - 1 + kw + n_mm * kw) + r + 1
    else:
        closed = tokens * kw * (n_mm + 1) + d + r
    cycles = res.last_out_cycle + 1   # the closed forms count to the cycle after the last result
    c = res.counters
    beats = c["wgt_beats"]
    first_w, last_w = int(res.wgt_cycles[0]), int(res.wgt_cycles[-1])
    return {
        "kind": kind, "rows": cfg.rows, "lanes": cfg.lanes, "format": cfg.weight_format,
        "bus_bytes": cfg.bus_bytes, "beats_per_word": bpw, "matmuls": n_mm, "k_words": kw,
        "tokens": tokens, "cycles": cycles, "closed_form_cycles": closed,
        "bit_exact": exact,
        # weight stream: beats accepted / all cycles of the program, and within its busy window
        "bus_utilization": beats / cycles,
        "bus_utilization_window": beats / (last_w - first_w + 1),
        # PE: issue cycles / all cycles of the program
        "pe_utilization": c["busy"] / cycles,
        "stall_weight": c["stall_weight"], "stall_out": c["stall_out"], "stall_act": c["stall_act"],
        "sim_seconds": round(wall, 2),
    }


def main(argv=None):
    args = bench_parser(__doc__.splitlines()[0], quick_help="smaller programs").parse_args(argv)
    scale = 1 if args.quick else 4
    a = TernConfig(rows=4, lanes=16, acc_width=24, bus_bytes=4, act_depth=1024, wgt_depth=32,
                   out_depth=8)                                   # 2bit, 4 beats per word
    b = TernConfig(rows=8, lanes=16, acc_width=24, bus_bytes=16, act_depth=1024, wgt_depth=32,
                   out_depth=8, weight_format="base3")            # 2 beats per word
    c = TernConfig(rows=4, lanes=8, acc_width=24, bus_bytes=8, act_depth=1024, wgt_depth=32,
                   out_depth=8)                                   # 1 beat per word
    runs = [
        run("decode", a, 8 * scale, 16),
        run("decode", b, 8 * scale, 32),
        run("decode", c, 16 * scale, 32),
        run("prefill", a, 8 * scale, 8, 16),
        run("prefill", b, 8 * scale, 8, 16),
        run("prefill", c, 8 * scale, 4, 32),
    ]
    ok = all(r["bit_exact"] and r["cycles"] == r["closed_form_cycles"] for r in runs)
    if args.json:
        print(json.dumps({"runs": runs, "ok": ok}))
    else:
        for r in runs:
            fig = (f"bus {100 * r['bus_utilization']:.2f}% (window {100 * r['bus_utilization_window']:.2f}%)"
                   if r["kind"] == "decode" else f"PE {100 * r['pe_utilization']:.2f}%")
            print(f"{r['kind']:7s} R={r['rows']:<2} L={r['lanes']:<2} {r['format']:5s} B={r['bus_bytes']:<2} "
                  f"bpw={r['beats_per_word']} n={r['matmuls']:<3} kw={r['k_words']:<2} T={r['tokens']:<2} "
                  f"cycles={r['cycles']:<6} closed-form={r['closed_form_cycles']:<6} "
                  f"exact={r['bit_exact']}  {fig}  [{r['sim_seconds']} s]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
