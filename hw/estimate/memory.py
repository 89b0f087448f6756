"""Off-chip memory technologies: energy per bit, bandwidth per channel or stack, sustainable efficiency.

One table (:data:`MEMORIES`), every number with its source and its kind:

* ``primary``: a JEDEC standard or a manufacturer's document states it (bandwidths: data rate x
  interface width, both set by the standard);
* ``secondary``: a paper or a tool's table quotes or models it;
* ``derived``: computed here from other numbers, the formula given;
* ``assumption``: no source was checked for it; the value and the range are stated so a reader can
  replace it (``tern estimate --dram-pj-per-bit``, ``--memory``).

Where sources disagree the entry gives a range (``pj_per_bit_range``) and the value used. The values
marked secondary were not re-read from the papers in the session that wrote this table; the
citations say where they are published.

``sustainable_efficiency`` is the fraction of the peak bandwidth a long sequential read stream
reaches after refresh, row activations and bus turnarounds, **derived** from the DRAM model of
:mod:`hw.dram` (:func:`hw.dram.sequential_efficiency`; that module's table gives each technology's
timings and their sources). The core's own streams are not bounded by it: the estimator runs them
through the same DRAM model, cycle by cycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Memory", "MEMORIES", "DEFAULT_MEMORY", "get_memory", "MEMORY_SOURCES", "markdown_table"]

MEMORY_SOURCES = {
    "Hor14": "M. Horowitz, \"Computing's energy problem (and what we can do about it)\", ISSCC 2014: "
             "one 64-bit DRAM access 1.3-2.6 nJ",
    "OConnor17": "M. O'Connor et al., \"Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth "
                 "Systems\", MICRO 2017: HBM2 3.9 pJ/bit",
    "Accelergy": "Y. N. Wu, J. S. Emer, V. Sze, \"Accelergy: An Architecture-Level Energy Estimation "
                 "Methodology for Accelerator Designs\", ICCAD 2019, and its hwcomponents DRAM table "
                 "(LPDDR4 about 8 pJ/bit)",
    "JESD79-3": "JEDEC JESD79-3, DDR3 SDRAM standard (DDR3-1600: 1600 MT/s on a 64-bit channel)",
    "JESD79-4": "JEDEC JESD79-4, DDR4 SDRAM standard (DDR4-3200: 3200 MT/s on a 64-bit channel)",
    "JESD209-4": "JEDEC JESD209-4, LPDDR4/LPDDR4X standard (4266 MT/s, 16-bit channels)",
    "JESD209-5": "JEDEC JESD209-5, LPDDR5 standard (6400 MT/s, 16-bit channels)",
    "JESD235": "JEDEC JESD235A, HBM2 standard (1024-bit stack, 2.0 Gb/s per pin)",
    "JESD238": "JEDEC JESD238, HBM3 standard (1024-bit stack, 6.4 Gb/s per pin)",
}


@dataclass(frozen=True)
class Memory:
    """One memory technology. ``bandwidth_gb_s`` is the peak of one ``unit`` (a channel or a stack);
    ``pj_per_bit`` is the energy of one bit read or written (device + interface, activations
    amortized over a sequential stream); ``background_mw`` is the power one unit draws while powered
    and idle (refresh + standby), charged for the whole token time."""
    name: str
    unit: str
    bandwidth_gb_s: float
    bandwidth_source: str
    bandwidth_kind: str
    pj_per_bit: float
    pj_per_bit_range: tuple
    pj_per_bit_source: str
    pj_per_bit_kind: str
    background_mw: float
    background_range_mw: tuple
    note: str

    @property
    def sustainable_efficiency(self) -> float:
        """The DRAM model's sequential-read efficiency (derived: :func:`hw.dram.sequential_efficiency`)."""
        from hw.dram import sequential_efficiency
        return sequential_efficiency(self.name)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["pj_per_bit_range"] = list(self.pj_per_bit_range)
        d["background_range_mw"] = list(self.background_range_mw)
        d["sustainable_efficiency"] = self.sustainable_efficiency
        d["efficiency_kind"] = "derived"
        d["efficiency_source"] = "hw.dram sequential read stream (timings: hw.dram.DRAMS)"
        d["background_kind"] = "assumption"
        return d


MEMORIES: dict[str, Memory] = {
    "ddr3": Memory(
        "ddr3", "64-bit channel, DDR3-1600", 1600e6 * 8 / 1e9, "JESD79-3: 1600 MT/s x 8 bytes", "derived",
        1300 / 64, (1300 / 64, 2600 / 64), "Hor14: 1.3-2.6 nJ per 64-bit access (low end used)",
        "secondary", 500.0, (300.0, 1000.0),
        "the figure tern used before --memory existed; DDR3-era"),
    "ddr4": Memory(
        "ddr4", "64-bit channel, DDR4-3200", 3200e6 * 8 / 1e9, "JESD79-4: 3200 MT/s x 8 bytes", "derived",
        15.0, (13.0, 20.0), "assumption: between DDR3 [Hor14] and LPDDR4 [Accelergy]; no DDR4 figure "
        "was checked", "assumption", 400.0, (200.0, 800.0), "desktop / server / FPGA-board memory"),
    "lpddr4x": Memory(
        "lpddr4x", "16-bit channel, LPDDR4X-4266", 4266e6 * 2 / 1e9, "JESD209-4: 4266 MT/s x 2 bytes",
        "derived", 8.0, (4.0, 8.0), "Accelergy (LPDDR4 about 8 pJ/bit, used for LPDDR4X: conservative, "
        "LPDDR4X lowers the I/O voltage from 1.1 V to 0.6 V); the 4 pJ/bit low end is an assumption",
        "secondary", 20.0, (10.0, 50.0), "edge SoCs and boards; the default"),
    "lpddr5": Memory(
        "lpddr5", "16-bit channel, LPDDR5-6400", 6400e6 * 2 / 1e9, "JESD209-5: 6400 MT/s x 2 bytes",
        "derived", 5.0, (4.0, 8.0), "assumption: at or below LPDDR4X [Accelergy]; no LPDDR5 figure "
        "was checked", "assumption", 20.0, (10.0, 50.0), "current phones and edge modules"),
    "hbm2": Memory(
        "hbm2", "1024-bit stack, HBM2 2.0 Gb/s", 1024 * 2.0 / 8, "JESD235A: 1024 pins x 2.0 Gb/s", "derived",
        3.9, (3.9, 3.9), "OConnor17: 3.9 pJ/bit", "secondary", 1000.0, (500.0, 2000.0),
        "datacenter accelerators"),
    "hbm3": Memory(
        "hbm3", "1024-bit stack, HBM3 6.4 Gb/s", 1024 * 6.4 / 8, "JESD238: 1024 pins x 6.4 Gb/s", "derived",
        3.0, (2.0, 3.9), "assumption: below HBM2 [OConnor17]; no HBM3 figure was checked", "assumption",
        1500.0, (700.0, 3000.0), "datacenter accelerators"),
}

#: LPDDR4X: the memory of current edge SoCs and boards, the class of system a core of this size sits
#: in, and the technology whose per-bit figure accelerator papers quote (so tern's figures compare).
DEFAULT_MEMORY = "lpddr4x"


def get_memory(name: str) -> Memory:
    """The :class:`Memory` called ``name`` (one of :data:`MEMORIES`); :class:`ValueError` otherwise."""
    if not isinstance(name, str) or name.lower() not in MEMORIES:
        raise ValueError(f"unknown memory {name!r} (choose from {', '.join(MEMORIES)})")
    return MEMORIES[name.lower()]


def markdown_table() -> str:
    """The table and its sources as Markdown: what ``docs/ESTIMATE.md`` shows (a test keeps them equal)."""
    rows = ["| memory | unit | peak GB/s (kind: source) | pJ/bit used | pJ/bit range | pJ/bit kind: source "
            "| sustainable efficiency | background mW (range) |", "|---|---|---|---|---|---|---|---|"]
    for m in MEMORIES.values():
        rows.append(
            f"| `{m.name}` | {m.unit} | {m.bandwidth_gb_s:.3f} ({m.bandwidth_kind}: {m.bandwidth_source}) "
            f"| {m.pj_per_bit:.2f} | {m.pj_per_bit_range[0]:.2f}-{m.pj_per_bit_range[1]:.2f} "
            f"| {m.pj_per_bit_kind}: {m.pj_per_bit_source} | {m.sustainable_efficiency:.4f} (derived: "
            f"hw.dram) | {m.background_mw:g} "
            f"({m.background_range_mw[0]:g}-{m.background_range_mw[1]:g}, assumption) |")
    sources = "\n".join(f"* **[{k}]** {v}." for k, v in MEMORY_SOURCES.items())
    return "\n".join(rows) + "\n\n" + sources + "\n"
