"""Per-operation energy tables and the energy of a tern core run.

Sources (see ``docs/ESTIMATE.md`` for the full discussion):

* **[Hor14]** M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
  45 nm, 0.9 V: integer ADD 8b 0.03 pJ, 16b 0.05 pJ, 32b 0.1 pJ; integer MULT 8b 0.2 pJ, 32b 3.1 pJ;
  FP16 ADD 0.4 pJ, MULT 1.1 pJ; FP32 ADD 0.9 pJ, MULT 3.7 pJ; one 64-bit SRAM access 10 pJ (8 KB),
  20 pJ (32 KB), 100 pJ (1 MB); one 64-bit DRAM access 1.3-2.6 nJ.
* **[BitNet23]** H. Wang et al., "BitNet: Scaling 1-bit Transformers for Large Language Models",
  arXiv 2310.11453, Table 2 ("ADD and MUL energy consumption [Hor14, ZZL22] for different bit
  representations at 45nm and 7nm process nodes"), in pJ:

  ======  =========  ========  =========  ========
  Bits    ADD 45nm   ADD 7nm   MUL 45nm   MUL 7nm
  ======  =========  ========  =========  ========
  FP32    0.9        0.38      3.7        1.31
  FP16    0.4        0.16      1.1        0.34
  INT8    0.03       0.007     0.2        0.07
  ======  =========  ========  =========  ========

  The BitNet b1.58 paper (arXiv 2402.17764, "The Era of 1-bit LLMs") states its 71.4x
  arithmetic-energy saving at 7 nm "according to the energy model in [Hor14, Zha22g]" and prints no
  table of its own; the table it rests on is the one above (the BitNet b1.58 2B4T technical report,
  arXiv 2504.12285, Table 4, repeats the 7 nm rows: FP16 0.16/0.34, INT8 0.007/0.07 pJ).

Modelling choices (documented assumptions, not measurements):

* Integer adder energy is linear in the width ``w``, through the [Hor14] 8-bit and 32-bit points at
  45 nm (``E(w) = 0.03 + (w - 8) * 0.07 / 24`` pJ; the 16-bit point this predicts, 0.053 pJ, is
  within 6% of [Hor14]'s 0.05 pJ). At 7 nm the same line is scaled by the INT8 ADD ratio of
  [BitNet23] (0.007 / 0.03): no 7 nm figure for other integer widths is given there.
* SRAM energy per bit: [Hor14]'s 64-bit access energy divided by 64, interpolated log-log in the
  macro size between 8 KB, 32 KB and 1 MB (clamped to the 8 KB figure below 8 KB, extrapolated with
  the 32 KB-1 MB slope above 1 MB). At 7 nm the 45 nm figures are scaled by the same INT8 ADD ratio
  as the adders (an assumption: no 7 nm SRAM figure is given in [BitNet23]).
* DRAM: [Hor14]'s low figure, 1.3 nJ per 64-bit access (20.3 pJ/bit), at *both* nodes: DRAM access
  energy is set by the DRAM device and its interface, not by the accelerator's logic node. It is an
  older (DDR3-era) figure; ``dram_pj_per_bit`` overrides it. :func:`hw.estimate.estimate` always
  passes the chosen memory's figure (:mod:`hw.estimate.memory`, default LPDDR4X).
* Static (leakage) power is not part of the per-event energy; :func:`hw.estimate.estimate` adds it
  (static power x time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.config import TernConfig

__all__ = ["NODES", "EnergyTable", "energy_table", "add_energy_pj", "sram_pj_per_bit",
           "paper_matmul_energy_pj", "core_energy", "buffer_bits", "SOURCES"]

SOURCES = {
    "Hor14": "M. Horowitz, \"Computing's energy problem (and what we can do about it)\", ISSCC 2014 (45 nm)",
    "BitNet23": "H. Wang et al., \"BitNet: Scaling 1-bit Transformers for Large Language Models\", "
                "arXiv 2310.11453, Table 2 (45 nm and 7 nm ADD/MUL energy)",
    "BitNet158": "S. Ma et al., \"The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits\", "
                 "arXiv 2402.17764 (71.4x arithmetic-energy saving at 7 nm)",
}

NODES = ("45nm", "7nm")

# [Hor14], 45 nm, pJ per 64-bit SRAM access by macro size in bytes
_HOR14_SRAM_64B_PJ = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
# [Hor14], 45 nm, pJ per 64-bit DRAM access (low end of 1.3-2.6 nJ)
_HOR14_DRAM_64B_PJ = 1300.0


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation at one process node, in pJ."""
    node: str
    int8_add: float
    int8_mul: float
    fp16_add: float
    fp16_mul: float
    fp32_add: float
    fp32_mul: float
    int_add_by_width: dict      # width -> pJ, the points the linear adder model goes through
    sram_64b_pj: tuple          # ((macro bytes, pJ per 64-bit access), ...)
    dram_pj_per_bit: float
    sources: tuple

    def as_dict(self) -> dict:
        return {"node": self.node, "int8_add_pj": self.int8_add, "int8_mul_pj": self.int8_mul,
                "fp16_add_pj": self.fp16_add, "fp16_mul_pj": self.fp16_mul,
                "fp32_add_pj": self.fp32_add, "fp32_mul_pj": self.fp32_mul,
                "dram_pj_per_bit": self.dram_pj_per_bit, "sources": list(self.sources)}


_TABLES = {
    "45nm": EnergyTable(
        node="45nm", int8_add=0.03, int8_mul=0.2, fp16_add=0.4, fp16_mul=1.1, fp32_add=0.9,
        fp32_mul=3.7, int_add_by_width={8: 0.03, 16: 0.05, 32: 0.1},
        sram_64b_pj=_HOR14_SRAM_64B_PJ, dram_pj_per_bit=_HOR14_DRAM_64B_PJ / 64,
        sources=("Hor14", "BitNet23")),
    "7nm": EnergyTable(
        node="7nm", int8_add=0.007, int8_mul=0.07, fp16_add=0.16, fp16_mul=0.34, fp32_add=0.38,
        fp32_mul=1.31, int_add_by_width={8: 0.007},
        sram_64b_pj=tuple((b, e * 0.007 / 0.03) for b, e in _HOR14_SRAM_64B_PJ),
        dram_pj_per_bit=_HOR14_DRAM_64B_PJ / 64, sources=("BitNet23", "Hor14")),
}


def energy_table(node: str) -> EnergyTable:
    """The :class:`EnergyTable` of ``node`` (``"45nm"`` or ``"7nm"``)."""
    if node not in _TABLES:
        raise ValueError(f"unknown process node {node!r} (choose from {', '.join(NODES)})")
    return _TABLES[node]


def add_energy_pj(table: EnergyTable, width: int) -> float:
    """Energy of one ``width``-bit integer addition: linear in the width through [Hor14]'s 8-bit
    (0.03 pJ) and 32-bit (0.1 pJ) points, scaled by ``table.int8_add / 0.03`` (1 at 45 nm)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"adder width must be a positive integer, not {width!r}")
    e45 = 0.03 + (width - 8) * (0.1 - 0.03) / (32 - 8)
    return e45 * table.int8_add / 0.03


def sram_pj_per_bit(table: EnergyTable, macro_bits: int) -> float:
    """Energy per bit read or written in an SRAM macro of ``macro_bits`` bits (log-log interpolation
    of the 64-bit access energies of ``table.sram_64b_pj``; clamped below the smallest size)."""
    if macro_bits <= 0:
        raise ValueError(f"SRAM macro size must be positive, not {macro_bits!r}")
    pts = [(math.log(b * 8), math.log(e / 64)) for b, e in table.sram_64b_pj]
    x = math.log(macro_bits)
    if x <= pts[0][0]:
        return math.exp(pts[0][1])
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return math.exp(y0 + (x - x0) * (y1 - y0) / (x1 - x0))
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    return math.exp(y1 + (x - x1) * (y1 - y0) / (x1 - x0))


def paper_matmul_energy_pj(table: EnergyTable, m: int, n: int, p: int, kind: str) -> float:
    """Arithmetic energy of an ``(m x n) @ (n x p)`` matrix product as [BitNet23] (eqs. 16-17) and
    the BitNet b1.58 paper count it: ``kind="fp16"`` (LLaMA-style): ``m (n-1) p`` FP16 additions and
    ``m n p`` FP16 multiplications; ``kind="bitnet_b1.58"``: ``m (n-1) p`` INT8 additions only (the
    ternary weights turn every multiplication into an addition, a subtraction or nothing)."""
    adds, muls = m * (n - 1) * p, m * n * p
    if kind == "fp16":
        return adds * table.fp16_add + muls * table.fp16_mul
    if kind == "bitnet_b1.58":
        return adds * table.int8_add
    raise ValueError(f"unknown matmul kind {kind!r} (fp16 or bitnet_b1.58)")


def buffer_bits(config: TernConfig) -> dict:
    """Capacity in bits of each on-chip buffer: the activation buffer (``act_depth`` words of
    ``lanes`` int8), the two weight banks (``wgt_depth`` words of ``rows*lanes`` 2-bit codes each) and
    the output FIFO (``out_depth`` vectors of ``rows`` ``acc_width``-bit results)."""
    c = config
    return {"act_buffer": c.act_depth * c.lanes * 8,
            "weight_buffer": 2 * c.wgt_depth * c.word_trits * 2,
            "output_fifo": c.out_depth * c.rows * c.acc_width}


def core_energy(events: dict, config: TernConfig, table: EnergyTable, *,
                dram_pj_per_bit: float | None = None) -> dict:
    """Energy in joules of one run, per component, from :func:`hw.sim.simulate`'s ``res.events``:

    * ``lane_negation``: ``lane_terms`` conditional negations, each one 9-bit (``lane_term_width``) addition
      (``-a = ~a + 1``; the RTL computes it for every lane term every issue step);
    * ``adder_tree``: ``tree_adds_by_width[w]`` additions of ``w`` bits;
    * ``accumulators``: ``acc_updates`` additions of ``acc_width`` bits (loads priced as additions);
    * ``sram_<buffer>``: bits read + written, at the per-bit energy of a macro of that buffer's size;
    * ``weight_decoder``: one 8-bit addition per decoded byte (a small lookup per byte; assumption);
    * ``dram_weights``, ``dram_activations`` (``act`` in + ``out`` results back),
      ``dram_instructions``: bytes of each stream moved to or from off-chip DRAM.
    """
    dram = table.dram_pj_per_bit if dram_pj_per_bit is None else float(dram_pj_per_bit)
    if not math.isfinite(dram) or dram < 0:
        raise ValueError(f"DRAM energy per bit must be a non-negative number, not {dram_pj_per_bit!r}")
    pj = {
        "lane_negation": events["lane_terms"] * add_energy_pj(table, config.lane_term_width),
        "adder_tree": sum(int(n) * add_energy_pj(table, int(w))
                          for w, n in events["tree_adds_by_width"].items()),
        "accumulators": events["acc_updates"] * add_energy_pj(table, int(events["acc_width"])),
        "weight_decoder": events["weight_decoder_bytes"] * add_energy_pj(table, 8),
    }
    sizes = buffer_bits(config)
    for buf, rw in events["sram_bits"].items():
        pj[f"sram_{buf}"] = (rw["read"] + rw["write"]) * sram_pj_per_bit(table, sizes[buf])
    bus = events["bus_bytes"]
    pj["dram_weights"] = bus["wgt"] * 8 * dram
    pj["dram_activations"] = (bus["act"] + bus["out"]) * 8 * dram
    pj["dram_instructions"] = bus["instr"] * 8 * dram
    return {k: v * 1e-12 for k, v in pj.items()}
