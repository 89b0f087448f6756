"""hw.estimate.memory: the memory table holds standard bandwidths (data rate x width, by hand), a source
and a kind for every number, ranges that contain the values used, and a modern default."""

from pathlib import Path

import pytest

from hw.estimate.memory import DEFAULT_MEMORY, MEMORIES, MEMORY_SOURCES, get_memory, markdown_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "ESTIMATE.md"

KINDS = {"primary", "secondary", "derived", "assumption"}


def test_the_six_technologies():
    assert list(MEMORIES) == ["ddr3", "ddr4", "lpddr4x", "lpddr5", "hbm2", "hbm3"]
    assert DEFAULT_MEMORY == "lpddr4x"


@pytest.mark.parametrize("name,gb_s", [
    ("ddr3", 1.6 * 8),            # DDR3-1600, 64-bit channel: 12.8 GB/s
    ("ddr4", 3.2 * 8),            # DDR4-3200: 25.6 GB/s
    ("lpddr4x", 4.266 * 2),       # LPDDR4X-4266, 16-bit channel: 8.532 GB/s
    ("lpddr5", 6.4 * 2),          # LPDDR5-6400, 16-bit channel: 12.8 GB/s
    ("hbm2", 256.0),              # 1024 pins x 2 Gb/s
    ("hbm3", 819.2),              # 1024 pins x 6.4 Gb/s
])
def test_bandwidth_per_channel_or_stack(name, gb_s):
    assert get_memory(name).bandwidth_gb_s == pytest.approx(gb_s, rel=1e-12)


def test_cited_energy_figures():
    assert get_memory("ddr3").pj_per_bit == 1300 / 64                 # Horowitz: 1.3 nJ / 64 bits
    assert get_memory("ddr3").pj_per_bit_range == (1300 / 64, 2600 / 64)
    assert get_memory("lpddr4x").pj_per_bit == 8.0
    assert get_memory("hbm2").pj_per_bit == 3.9                       # O'Connor et al., MICRO 2017


@pytest.mark.parametrize("name", list(MEMORIES))
def test_every_number_has_a_source_and_a_kind(name):
    m = get_memory(name)
    assert m.pj_per_bit_kind in KINDS and m.bandwidth_kind in KINDS
    assert m.pj_per_bit_source and m.bandwidth_source
    lo, hi = m.pj_per_bit_range
    assert lo <= m.pj_per_bit <= hi
    # derived from the DRAM model: below 1 by at least the refresh time per refresh interval
    from hw.dram import get_dram
    p = get_dram(name)
    assert 0.85 < m.sustainable_efficiency <= 1 - p.tRFC / p.tREFI
    lo, hi = m.background_range_mw
    assert lo <= m.background_mw <= hi
    # a secondary or primary figure names a source of MEMORY_SOURCES
    if m.pj_per_bit_kind in ("primary", "secondary"):
        assert any(key in m.pj_per_bit_source for key in MEMORY_SOURCES), m.pj_per_bit_source
    d = m.as_dict()
    assert d["efficiency_kind"] == "derived" and d["background_kind"] == "assumption"


def test_unknown_memory():
    with pytest.raises(ValueError, match="sram9"):
        get_memory("sram9")
    assert get_memory("HBM2") is MEMORIES["hbm2"]


def test_docs_render_the_table():
    assert markdown_table() in DOC.read_text(encoding="utf-8")
