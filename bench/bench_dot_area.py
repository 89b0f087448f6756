"""Area of the dot-unit variants side by side: LUT4 per ternary lane of the PE array (dot units and
accumulators) and of one dot unit alone, after Yosys's iCE40 and ECP5 mappings.

Per variant of ``hw.config.DOT_VARIANTS`` and configuration (rows x lanes, ``acc_width`` 24 and
``tree_reg_every`` 2 as on the boards): the PE array is synthesized flat with

* ``synth_ice40`` (LUT4 = ``SB_LUT4`` cells; ``SB_CARRY`` is the carry logic of the same cells),
* ``synth_ecp5`` up to LUT mapping, then ``abc -lut 4`` and the cell mapping (the ABC9 step of
  ``synth_ecp5`` fails under the WebAssembly Yosys on these designs); LUT4 counts ``LUT4`` cells plus
  two per ``CCU2C`` (a carry cell is two LUT4s of a slice),

and the flip-flops, the DSP/multiplier cells of both mapped netlists and of the coarse ``prep`` flow
(``hw.flows.yosys.multiplier_cells``; must be none) are reported. LUT4 per lane = LUT4 / (rows x
lanes). Every design is first checked against a numpy reference in simulation (random vectors
with extremes), so no figure is printed for a wrong design.

    python bench/bench_dot_area.py [--quick] [--json] [--configs 4x16,2x64,16x64] [--variants mux,carry,slot]

``--quick``: 4x16 only. The default is 4x16 and 2x64 (16x64 takes minutes per variant and flow on
a small machine; per row it is the same design as 2x64 with more rows sharing the activations).
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import numpy as np

from hw.config import DOT_VARIANTS, TernConfig
from hw.flows.yosys import design_rtlil, multiplier_cells, run_yosys
from hw.rtl.dot import TernaryDotUnit
from hw.rtl.pe_array import PEArray
from sw.cli.common import bench_parser

#: Yosys scripts of the two LUT4 families (design read as RTLIL, top module ``top``).
FAMILIES = {
    "ice40": "synth_ice40 -top top",
    "ecp5": ("synth_ecp5 -top top -run begin:map_luts; abc -lut 4; clean; "
             "synth_ecp5 -top top -run map_cells:"),
    "prep": "hierarchy -top top; proc; flatten; opt; wreduce; peepopt; opt_clean",
}

#: Anchor: Neumann-Labs/ternfpga's pipelined 8-lane ternary dot, 149 LUT6 on Artix-7.
ANCHOR = {"design": "Neumann-Labs/ternfpga 8-lane pipelined ternary dot (Artix-7)", "lut6": 149,
          "lut6_per_lane": 149 / 8}


def histograms(design) -> dict:
    lines = ["read_rtlil design.il", "hierarchy -top top", "design -save elaborated"]
    for name, script in FAMILIES.items():
        lines += ["design -load elaborated", script, f"tee -q -o stat_{name}.json stat -json"]
    work = run_yosys("\n".join(lines) + "\n", {"design.il": design_rtlil(design)}, timeout=3600)
    try:
        out = {}
        for name in FAMILIES:
            (mod,) = json.loads((work / f"stat_{name}.json").read_text())["modules"].values()
            out[name] = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def figures(hist: dict, lanes_total: int) -> dict:
    ice, ecp = hist["ice40"], hist["ecp5"]
    ice_lut = ice.get("SB_LUT4", 0)
    ecp_lut = ecp.get("LUT4", 0) + 2 * ecp.get("CCU2C", 0)
    mult = {f: multiplier_cells(h) for f, h in hist.items()}
    return {
        "ice40_lut4": ice_lut, "ice40_lut4_per_lane": round(ice_lut / lanes_total, 2),
        "ice40_carry": ice.get("SB_CARRY", 0),
        "ice40_ff": sum(n for c, n in ice.items() if c.startswith("SB_DFF")),
        "ecp5_lut4": ecp_lut, "ecp5_lut4_per_lane": round(ecp_lut / lanes_total, 2),
        "ecp5_lut4_cells": ecp.get("LUT4", 0), "ecp5_ccu2c": ecp.get("CCU2C", 0),
        "ecp5_ff": ecp.get("TRELLIS_FF", 0),
        "dsp_or_multiplier_cells": sum(sum(m.values()) for m in mult.values()),
    }


def _check_dot(lanes, variant):
    """Simulated against numpy before synthesis (random vectors, all -128 with +1 and -1)."""
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator
    rng = np.random.default_rng(lanes)
    acts = rng.integers(-128, 128, (24, lanes))
    codes = rng.integers(0, 4, (24, lanes))
    acts[:2], codes[0], codes[1] = -128, 0, 2
    dut = TernaryDotUnit(lanes, 2, variant=variant)
    seen = []

    async def tb(ctx):
        for i in range(len(acts) + dut.latency):
            if i < len(acts):
                ctx.set(dut.act, [int(x) for x in acts[i]])
                ctx.set(dut.codes, [int(x) for x in codes[i]])
            seen.append(ctx.get(dut.sum))
            await ctx.tick()

    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    exp = (acts * np.array([-1, 0, 1, 0])[codes]).sum(axis=1)
    if not np.array_equal(np.array(seen[dut.latency:]), exp):
        raise SystemExit(f"bench_dot_area: the {variant} dot unit of {lanes} lanes is wrong")


def main(argv=None) -> int:
    p = bench_parser(__doc__.splitlines()[0], "4x16 only")
    p.add_argument("--configs", default=None, help="rows x lanes list (default 4x16,2x64)")
    p.add_argument("--variants", default=",".join(DOT_VARIANTS),
                   help=f"dot-unit variants (default {','.join(DOT_VARIANTS)})")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    for v in variants:
        if v not in DOT_VARIANTS:
            print(f"bench_dot_area: unknown variant {v!r} (known: {', '.join(DOT_VARIANTS)})",
                  file=sys.stderr)
            return 2
    spec = args.configs or ("4x16" if args.quick else "4x16,2x64")
    try:
        shapes = [tuple(int(x) for x in s.split("x")) for s in spec.split(",")]
    except ValueError:
        print(f"bench_dot_area: --configs wants ROWSxLANES,... not {spec!r}", file=sys.stderr)
        return 2
    rows_out = []
    for rows, lanes in shapes:
        for v in variants:
            _check_dot(lanes, v)
            cfg = TernConfig(rows=rows, lanes=lanes, acc_width=24, tree_reg_every=2, dot_variant=v)
            t0 = time.monotonic()
            pe = figures(histograms(PEArray(cfg)), rows * lanes)
            dot = figures(histograms(TernaryDotUnit(lanes, 2, variant=v)), lanes)
            rows_out.append({"variant": v, "rows": rows, "lanes": lanes, "pe_array": pe,
                             "dot_unit": dot, "synth_s": round(time.monotonic() - t0, 1)})
            if not args.json:
                print(f"{v:6s} {rows:3d}x{lanes:<3d} PE array: iCE40 {pe['ice40_lut4']:6d} LUT4 "
                      f"{pe['ice40_lut4_per_lane']:6.2f}/lane {pe['ice40_ff']:5d} FF | ECP5 "
                      f"{pe['ecp5_lut4']:6d} LUT4 ({pe['ecp5_lut4_cells']} LUT4 + "
                      f"{pe['ecp5_ccu2c']} CCU2C) {pe['ecp5_lut4_per_lane']:6.2f}/lane "
                      f"{pe['ecp5_ff']:5d} FF | DSP/mul {pe['dsp_or_multiplier_cells']} || dot unit: "
                      f"iCE40 {dot['ice40_lut4_per_lane']:.2f}/lane, ECP5 "
                      f"{dot['ecp5_lut4_per_lane']:.2f}/lane ({rows_out[-1]['synth_s']} s)",
                      flush=True)
    if args.json:
        print(json.dumps({"results": rows_out, "anchor": ANCHOR}, indent=2))
    else:
        print(f"anchor: {ANCHOR['design']}: {ANCHOR['lut6']} LUT6, "
              f"{ANCHOR['lut6_per_lane']:.1f} LUT6/lane")
    return 0


if __name__ == "__main__":
    sys.exit(main())
