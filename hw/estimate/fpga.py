"""Does a configuration fit an FPGA board? A LUT and block-RAM model calibrated on this repository's
own builds (``docs/FPGA.md``, ``docs/ARCHITECTURE.md``; the derivation and its error against every
measured build are in ``docs/SWEEP.md``).

LUTs = the PE array + the rest of the board top:

* **PE array** (dot units and accumulators): ``rows x lanes x`` LUT4 per ternary lane of the dot
  variant on the family, measured by ``bench/bench_dot_area.py`` at 16 and 64 lanes (iCE40, ECP5;
  ``acc_width`` 24, ``tree_reg_every`` 2): linear in ``log2(lanes)`` between the two, the nearer one
  outside. Gowin: the PE array's LUTs of the two Tang Primer 20K builds (``slot_odd``, 8 and 16
  lanes); the other variants scaled by their iCE40 ratio to ``slot_odd`` (an assumption: not built
  on Gowin).
* **the rest** (controller, weight decoder, buffers' address logic, the UART link and its FIFOs): the
  device LUTs minus the PE array LUTs of the family's 4 x 16 build, scaled with the array by one
  shape for every family (the same logic mapped to each family's LUT4s): the ULX3S builds' rest at
  2 x 8, 4 x 16 and 16 x 64, piecewise linear in the ternary lanes (``rows x lanes``) between them
  and along the end segments outside. The decoder, the frame registers and the result path grow
  with the array, the controller does not; the 2 x 8 builds of the other families check the shape.

Block RAM: the buffers' bits (activation buffer, both weight banks, output FIFO:
:func:`hw.estimate.energy.buffer_bits`) against the device's block RAM bits, a necessary condition
only (a memory takes whole blocks of a fixed aspect ratio, so a build uses more bits than it stores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.config import DOT_VARIANTS, TernConfig
from hw.estimate.energy import buffer_bits

__all__ = ["FpgaDevice", "FPGA_DEVICES", "PE_LUT4_PER_LANE", "REST_LUTS", "REST_SHAPE", "rest_luts",
           "fpga_estimate", "FpgaError"]


class FpgaError(ValueError):
    """An unknown board (one line, names the choices)."""


@dataclass(frozen=True)
class FpgaDevice:
    board: str
    family: str
    device: str
    luts: int               # logic cells as nextpnr counts them (the utilisation report's total)
    brams: int              # block RAMs
    bram_bits: int          # bits per block RAM


#: The boards of ``tern synth`` (``hw.flows.boards.BOARDS``) and their devices' sizes, as nextpnr
#: reported them in the builds of docs/FPGA.md (``luts_available``, ``brams_available``); block sizes:
#: iCE40 EBR 4 kbit, ECP5 DP16KD 18 kbit, Gowin BSRAM 18 kbit.
FPGA_DEVICES = {
    "icebreaker": FpgaDevice("icebreaker", "ice40", "iCE40 UP5K-SG48", 5280, 30, 4096),
    "ulx3s-85f": FpgaDevice("ulx3s-85f", "ecp5", "ECP5 LFE5U-85F-CABGA381", 83640, 208, 18432),
    "tang-primer-20k": FpgaDevice("tang-primer-20k", "gowin", "Gowin GW2A-LV18PG256C8/I7", 20736, 46, 18432),
}

#: LUT4 per ternary lane of the PE array, per family and dot variant, at (16 lanes, 64 lanes):
#: bench/bench_dot_area.py (docs/ARCHITECTURE.md's table: iCE40 / ECP5 at 4x16 and 2x64).
PE_LUT4_PER_LANE = {
    "ice40": {"mux": (29.28, 33.17), "carry": (21.09, 19.50), "slot": (19.09, 18.31), "slot_odd": (19.41, 18.64)},
    "ecp5": {"mux": (32.14, 35.45), "carry": (21.77, 20.16), "slot": (22.67, 20.24), "slot_odd": (22.36, 19.91)},
}
#: Gowin, ``slot_odd``: the PE array LUTs of the Tang Primer 20K builds (docs/FPGA.md) per lane, at
#: (8 lanes: 2 x 8 build, 16 lanes: 4 x 16 build).
GOWIN_SLOT_ODD_PER_LANE = ((8, 351 / 16), (16, 1335 / 64))

#: The rest of the board top, LUTs: a build's device LUTs minus its PE array LUTs (docs/FPGA.md).
#: Per family, its 4 x 16 build (iCEBreaker, ULX3S, Tang Primer 20K).
REST_LUTS = {"ice40": 4254 - 1244, "ecp5": 3923 - 1336, "gowin": 4666 - 1335}
#: The shape of the rest against the ternary lanes: the ULX3S builds as (rows x lanes, LUTs):
#: 2 x 8, 4 x 16, 16 x 64.
REST_SHAPE = ((16, 1975 - 352), (64, 3923 - 1336), (1024, 28143 - 19932))


def rest_luts(family: str, ternary_lanes: int) -> float:
    """The rest of the board top for ``ternary_lanes`` (rows x lanes): the family's 4 x 16 figure
    times :data:`REST_SHAPE` at ``ternary_lanes`` over :data:`REST_SHAPE` at 64."""
    def shape(n):
        (n0, r0), (n1, r1), (n2, r2) = REST_SHAPE
        (a, ra), (b, rb) = ((n0, r0), (n1, r1)) if n <= n1 else ((n1, r1), (n2, r2))
        return ra + (n - a) * (rb - ra) / (b - a)
    return REST_LUTS[family] * shape(ternary_lanes) / shape(64)


def _interp(x: float, points) -> float:
    """Linear in log2(x) between the points ``((x0, y0), (x1, y1))``; the nearer one outside."""
    (x0, y0), (x1, y1) = points
    if x <= x0:
        return y0
    if x >= x1:
        return y1
    u = (math.log2(x) - math.log2(x0)) / (math.log2(x1) - math.log2(x0))
    return y0 + u * (y1 - y0)


def pe_lut4_per_lane(family: str, variant: str, lanes: int) -> float:
    if variant not in DOT_VARIANTS:
        raise ValueError(f"unknown dot variant {variant!r}")
    if family == "gowin":
        base = _interp(lanes, GOWIN_SLOT_ODD_PER_LANE)
        ice = PE_LUT4_PER_LANE["ice40"]
        ratio = _interp(lanes, ((16, ice[variant][0] / ice["slot_odd"][0]),
                                (64, ice[variant][1] / ice["slot_odd"][1])))
        return base * ratio
    lo, hi = PE_LUT4_PER_LANE[family][variant]
    return _interp(lanes, ((16, lo), (64, hi)))


def get_device(board: str) -> FpgaDevice:
    if not isinstance(board, str) or board not in FPGA_DEVICES:
        raise FpgaError(f"unknown FPGA board {board!r} (choose from {', '.join(FPGA_DEVICES)})")
    return FPGA_DEVICES[board]


def fpga_estimate(config: TernConfig, board: str) -> dict:
    """The modelled LUTs and block-RAM bits of ``config`` on ``board`` and whether it fits: ``luts``,
    ``pe_luts``, ``rest_luts``, ``luts_available``, ``bram_bits``, ``bram_bits_available``, ``fits``
    and ``fit_margin`` (the larger of the two used/available - 1 ratios: <= 0 when it fits)."""
    if not isinstance(config, TernConfig):
        raise TypeError(f"config must be a hw.config.TernConfig, not {config!r}")
    dev = get_device(board)
    pe = config.rows * config.lanes * pe_lut4_per_lane(dev.family, config.dot_variant, config.lanes)
    rest = rest_luts(dev.family, config.rows * config.lanes)
    luts = pe + rest
    bits = sum(buffer_bits(config).values())
    avail_bits = dev.brams * dev.bram_bits
    margin = max(luts / dev.luts - 1, bits / avail_bits - 1)
    return {"board": board, "device": dev.device, "family": dev.family, "luts": luts, "pe_luts": pe,
            "rest_luts": rest, "luts_available": dev.luts, "bram_bits": bits,
            "bram_bits_available": avail_bits, "fit_margin": margin, "fits": margin <= 0}
