"""Area of a tern core configuration: datapath logic in gate equivalents (GE) and SRAM macros.

Logic is counted in cells whose sizes are given in GE (1 GE = the area of a 2-input NAND), from the
structure of ``hw/rtl/dot.py`` and the accumulators:

* per lane of every row, the conditional negation ``Mux(c == 2, a, Mux(c == 0, -a, 0))``: a 9-bit
  negator (9 inverters + 9 half adders) and two 9-bit 2:1 multiplexers;
* the adder tree: one full adder per bit of every adder (``TernConfig.tree_adder_widths``);
* the tree's pipeline registers: one flip-flop per bit of every node after every
  ``tree_reg_every`` adder levels (``TernConfig.tree_register_bits``, ``hw.rtl.dot``'s placement);
* per row, the accumulator: an ``acc_width``-bit adder and an ``acc_width``-bit register.

The count is that of the ``mux`` dot unit whatever ``config.dot_variant`` is (the other variants
fold the negation into the tree and are smaller on FPGAs: ``bench/bench_dot_area.py``).

Not counted (limitations, see docs/ESTIMATE.md): the controller, instruction queues, weight decoder,
stream interfaces and wiring; standard-cell placement overhead (the figure is raw cell area).

GE sizes of the cells are the cell areas of the NanGate 45 nm Open Cell Library divided by its
NAND2_X1 area (0.798 um^2): INV_X1 0.532 (0.67 GE), HA_X1 2.660 (3.33 GE), FA_X1 4.256 (5.33 GE),
MUX2_X1 1.862 (2.33 GE), DFF_X1 4.522 (5.67 GE). Area per GE: 0.798 um^2 at 45 nm (NanGate45
NAND2_X1); 0.0437 um^2 at 7 nm (the ASAP7 7.5-track NAND2xp33: 0.27 um cell height x 3 contacted
poly pitches of 54 nm).

SRAM: bits x 6T bitcell area / array efficiency. Bitcells: 0.346 um^2 at 45 nm (Intel 45 nm, Mistry
et al., IEDM 2007), 0.027 um^2 at 7 nm (TSMC N7 high-density cell, Wu et al., IEDM 2016). Array
efficiency (bitcells / macro area, the rest is periphery: decoders, sense amplifiers, I/O): 0.7, an
assumption typical of large compiled macros (small macros are less efficient).
"""

from __future__ import annotations

from hw.config import TernConfig
from hw.estimate.energy import NODES, buffer_bits

__all__ = ["CELL_GE", "NODE_AREA", "area_estimate", "logic_ge"]

#: Cell sizes in gate equivalents (NanGate 45 nm cell area / NAND2_X1 area).
CELL_GE = {"inv": 0.532 / 0.798, "ha": 2.660 / 0.798, "fa": 4.256 / 0.798, "mux2": 1.862 / 0.798,
           "dff": 4.522 / 0.798}

#: Per node: um^2 per GE, um^2 per SRAM bitcell, SRAM array efficiency.
NODE_AREA = {
    "45nm": {"um2_per_ge": 0.798, "bitcell_um2": 0.346, "array_efficiency": 0.7},
    "7nm": {"um2_per_ge": 0.27 * 3 * 0.054, "bitcell_um2": 0.027, "array_efficiency": 0.7},
}

def logic_ge(config: TernConfig) -> dict:
    """Gate equivalents of the datapath components (whole array)."""
    R, L, A = config.rows, config.lanes, config.acc_width
    g = CELL_GE
    lane_bits = config.lane_term_width
    lane = lane_bits * (g["inv"] + g["ha"]) + 2 * lane_bits * g["mux2"]
    tree_fa_bits = sum(w * n for w, n in config.tree_adder_widths.items())
    return {
        "lane_negation": R * L * lane,
        "adder_tree": R * tree_fa_bits * g["fa"],
        "tree_registers": R * config.tree_register_bits * g["dff"],
        "accumulators": R * A * (g["fa"] + g["dff"]),
    }


def area_estimate(config: TernConfig, node: str = "7nm") -> dict:
    """``{"area_mm2", "breakdown_mm2", "gate_equivalents", "sram_bits", "node"}`` of a configuration."""
    if not isinstance(config, TernConfig):
        raise TypeError(f"config must be a hw.config.TernConfig, not {config!r}")
    if node not in NODE_AREA:
        raise ValueError(f"unknown process node {node!r} (choose from {', '.join(NODES)})")
    p = NODE_AREA[node]
    ge = logic_ge(config)
    mm2 = {k: v * p["um2_per_ge"] * 1e-6 for k, v in ge.items()}
    bits = buffer_bits(config)
    for buf, b in bits.items():
        mm2[f"sram_{buf}"] = b * p["bitcell_um2"] / p["array_efficiency"] * 1e-6
    return {"node": node, "area_mm2": sum(mm2.values()), "breakdown_mm2": mm2,
            "gate_equivalents": ge, "sram_bits": bits}
