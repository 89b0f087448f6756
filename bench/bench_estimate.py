"""Energy per token, tokens/s and area of the BitNet b1.58 shape presets on the default configuration.

Each row simulates one decoder layer's seven BitLinear projections with hw.sim (real shapes, random
ternary weights) and prices the events with hw.estimate (docs/ESTIMATE.md): decode (T=1) at 7 nm and
45 nm, and (full run only) a 128-token prefill of 2b4t. The LM head, attention and the other host-side
work are not included.

    python bench/bench_estimate.py [--quick] [--json] [configuration flags, e.g. --rows 32]
"""

from __future__ import annotations

import sys
import time

from hw.estimate import estimate
from sw.cli.common import add_config_flags, bench_parser, config_from_args, print_json
from sw.cli.estimate import model_shape

PRESETS = ("2b4t", "700m", "1.3b", "3b")


def main(argv=None) -> int:
    ap = bench_parser(__doc__.splitlines()[0], quick_help="7 nm decode only")
    add_config_flags(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    cases = [(m, node, 1) for node in (("7nm",) if args.quick else ("7nm", "45nm")) for m in PRESETS]
    if not args.quick:
        cases.append(("2b4t", "7nm", 128))
    rows = []
    for model, node, T in cases:
        t0 = time.perf_counter()
        r = estimate(model_shape(model), cfg, node=node, tokens=T)
        rows.append({"model": model, "node": node, "tokens": T,
                     "energy_per_token_j": r["energy_per_token_j"],
                     "core_energy_per_token_j": r["core_energy_per_token_j"],
                     "dram_fraction": r["dram_fraction"], "tokens_per_s": r["tokens_per_s"],
                     "cycles_per_token": r["cycles_per_token"], "area_mm2": r["area_mm2"],
                     "average_power_w": r["average_power_w"],
                     "wall_s": round(time.perf_counter() - t0, 2)})
    if args.json:
        print_json({"config": cfg.to_dict(), "clock_mhz": 200.0, "rows": rows})
        return 0
    print(f"tern estimate on {cfg.rows}x{cfg.lanes} {cfg.weight_format}, {cfg.bus_bytes}-byte bus, 200 MHz "
          f"(BitLinear projections only; host work excluded)")
    hdr = f"{'model':6} {'node':5} {'T':>4} {'mJ/token':>10} {'core mJ':>9} {'DRAM %':>7} " \
          f"{'tokens/s':>9} {'area mm2':>9} {'power W':>8} {'wall s':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:6} {r['node']:5} {r['tokens']:>4} {1e3 * r['energy_per_token_j']:>10.3f} "
              f"{1e3 * r['core_energy_per_token_j']:>9.3f} {100 * r['dram_fraction']:>7.2f} "
              f"{r['tokens_per_s']:>9.3f} {r['area_mm2']:>9.4f} {r['average_power_w']:>8.3f} {r['wall_s']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
