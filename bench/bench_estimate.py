"""Energy per token, tokens/s and area of the BitNet b1.58 shape presets on the default configuration.

Each row simulates one decoder layer's seven BitLinear projections with hw.sim (real shapes, random
ternary weights), prices the events with hw.estimate and adds the host's parts (LM head, KV cache and
attention at a 1024-position context, norms, ...), every byte at the memory's energy per bit and static
power x time (docs/ESTIMATE.md): decode (T=1) on the default memory (LPDDR4X) at 7 nm and 45 nm,
2b4t decode on every memory at 7 nm, 2b4t decode at 800 MHz on LPDDR4X (memory-bound), and (full
run only) a 128-token prefill of 2b4t. The core's streams are timed by the DRAM model (hw.dram):
"bus eff" is the weight stream's share of the memory's peak, "stream eff" its share of
min(core bus rate, the memory's sustainable bandwidth). The
"projections" column is the core's dynamic energy alone (what the estimator reported before it
counted the whole token).

    python bench/bench_estimate.py [--quick] [--json] [configuration flags, e.g. --rows 32]
"""

from __future__ import annotations

import sys
import time

from hw.estimate import MEMORIES, estimate
from sw.cli.common import add_config_flags, bench_parser, config_from_args, print_json
from sw.cli.estimate import model_shape

PRESETS = ("2b4t", "700m", "1.3b", "3b")


def main(argv=None) -> int:
    ap = bench_parser(__doc__.splitlines()[0], quick_help="7 nm decode only")
    add_config_flags(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    cases = [(m, node, 1, "lpddr4x", 200.0) for node in (("7nm",) if args.quick else ("7nm", "45nm"))
             for m in PRESETS]
    cases += [("2b4t", "7nm", 1, mem, 200.0) for mem in MEMORIES if mem != "lpddr4x"]
    cases.append(("2b4t", "7nm", 1, "lpddr4x", 800.0))
    if not args.quick:
        cases.append(("2b4t", "7nm", 128, "lpddr4x", 200.0))
    rows = []
    for model, node, T, mem, clock in cases:
        t0 = time.perf_counter()
        r = estimate(model_shape(model), cfg, node=node, tokens=T, memory=mem, clock_mhz=clock)
        rows.append({"model": model, "node": node, "tokens": T, "memory": mem, "clock_mhz": clock,
                     "bus_efficiency": r["bus_efficiency"],
                     "weight_stream_efficiency": r["weight_stream_efficiency"],
                     "energy_per_token_j": r["energy_per_token_j"],
                     "projections_j": r["parts"]["projections (core, dynamic)"],
                     "lm_head_j": r["breakdown"]["lm_head"],
                     "static_j": r["breakdown"]["static_core"] + r["breakdown"]["static_memory"],
                     "memory_fraction": r["memory_fraction"], "tokens_per_s": r["tokens_per_s"],
                     "core_tokens_per_s": r["core_tokens_per_s"],
                     "mb_per_token": r["bytes_per_token"]["total"] / 1e6,
                     "cycles_per_token": r["cycles_per_token"], "area_mm2": r["area_mm2"],
                     "average_power_w": r["average_power_w"],
                     "wall_s": round(time.perf_counter() - t0, 2)})
    if args.json:
        print_json({"config": cfg.to_dict(), "rows": rows})
        return 0
    print(f"tern estimate on {cfg.rows}x{cfg.lanes} {cfg.weight_format}, {cfg.bus_bytes}-byte bus, "
          f"one memory channel/stack, context 1024 (the whole token)")
    hdr = f"{'model':6} {'node':5} {'T':>4} {'memory':8} {'MHz':>4} {'bus eff':>7} {'strm eff':>8} {'mJ/token':>9} {'proj. mJ':>9} {'LM head':>8} " \
          f"{'static':>7} {'mem %':>6} {'tokens/s':>9} {'core t/s':>9} {'MB/tok':>8} {'area mm2':>9} " \
          f"{'power W':>8} {'wall s':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:6} {r['node']:5} {r['tokens']:>4} {r['memory']:8} {r['clock_mhz']:>4.0f} "
              f"{r['bus_efficiency']:>7.4f} {r['weight_stream_efficiency']:>8.4f} {1e3 * r['energy_per_token_j']:>9.3f} "
              f"{1e3 * r['projections_j']:>9.3f} {1e3 * r['lm_head_j']:>8.3f} {1e3 * r['static_j']:>7.3f} "
              f"{100 * r['memory_fraction']:>6.2f} {r['tokens_per_s']:>9.3f} {r['core_tokens_per_s']:>9.3f} "
              f"{r['mb_per_token']:>8.1f} {r['area_mm2']:>9.4f} {r['average_power_w']:>8.3f} {r['wall_s']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
