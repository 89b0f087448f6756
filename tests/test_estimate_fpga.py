"""hw.estimate.fpga: the LUT / block-RAM model against the builds this repository measured
(docs/FPGA.md's table of tern synth builds, docs/ARCHITECTURE.md's LUT4 per lane of bench_dot_area)."""

import re
from pathlib import Path

import pytest

from hw.config import DOT_VARIANTS, TernConfig
from hw.estimate.energy import buffer_bits
from hw.estimate.fpga import (FPGA_DEVICES, PE_LUT4_PER_LANE, REST_LUTS, REST_SHAPE, FpgaError,
                              fpga_estimate, get_device, rest_luts)
from hw.flows.boards import BOARDS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _builds():
    """docs/FPGA.md's measured builds: (board, rows, lanes, acc, bus, device LUTs, available, brams,
    available, PE array LUT4)."""
    out = []
    for line in (DOCS / "FPGA.md").read_text().splitlines():
        m = re.match(r"\| `([\w-]+)` \| (?:default: )?(\d+) x (\d+), acc (\d+), bus (\d+) B \| \d+ \| (\d+) / (\d+) \| "
                     r"\d+ \| (\d+) / (\d+) \w+ \| \d+ \| (\d+) \|", line)
        if m:
            b, *nums = m.groups()
            out.append((b, *map(int, nums)))
    return out


def _config(rows, lanes, acc, bus):
    return TernConfig(rows=rows, lanes=lanes, acc_width=acc, bus_bytes=bus, act_depth=256, wgt_depth=16,
                      out_depth=8, tree_reg_every=2, dot_variant="slot_odd")


BUILDS = _builds()


def test_the_measured_builds_are_read():
    assert {b[0] for b in BUILDS} == set(BOARDS) and len(BUILDS) == len(ROLE)
    assert {(b[0], b[1]) for b in BUILDS} == set(ROLE)


def test_device_sizes_are_the_builds_reports():
    for b, _, _, _, _, _, luts_avail, _, brams_avail, _ in BUILDS:
        assert (FPGA_DEVICES[b].luts, FPGA_DEVICES[b].brams) == (luts_avail, brams_avail), b


def test_pe_lut4_per_lane_is_the_bench_table():
    text = (DOCS / "ARCHITECTURE.md").read_text()
    for variant in DOT_VARIANTS:
        m = re.search(rf"^\| `{variant}`(?: \(default\))? \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", text, re.M)
        ice16, ice64, ecp16, ecp64 = map(float, m.groups())
        assert PE_LUT4_PER_LANE["ice40"][variant] == (ice16, ice64)
        assert PE_LUT4_PER_LANE["ecp5"][variant] == (ecp16, ecp64)


#: Per build (board, rows): does it calibrate the rest of the board top (a family's 4 x 16 build, or one
#: of the ULX3S builds that give the rest its shape) or check the model, and the error of the modelled
#: LUTs docs/SWEEP.md states (on iCE40 and ECP5 the PE array is bench_dot_area's figure, so a
#: calibration build's error is the PE array's alone).
ROLE = {("icebreaker", 2): ("check", -0.1054), ("icebreaker", 4): ("calibration", -0.0004),
        ("ulx3s-85f", 2): ("calibration", 0.0029), ("ulx3s-85f", 4): ("calibration", 0.0242),
        ("ulx3s-85f", 16): ("calibration", 0.0162),
        ("tang-primer-20k", 2): ("check", -0.0009), ("tang-primer-20k", 4): ("calibration", 0.0)}


@pytest.mark.parametrize("build", BUILDS, ids=lambda b: f"{b[0]}-{b[1]}x{b[2]}")
def test_model_against_each_measured_build(build):
    board, rows, lanes, acc, bus, luts, _, _, _, pe = build
    r = fpga_estimate(_config(rows, lanes, acc, bus), board)
    role, err = ROLE[board, rows]
    if role == "calibration":
        assert r["rest_luts"] == pytest.approx(luts - pe, abs=1e-6)
    assert r["luts"] / luts - 1 == pytest.approx(err, abs=0.001)
    if board == "tang-primer-20k":      # the Gowin PE array is calibrated on these builds
        assert r["pe_luts"] == pytest.approx(pe, abs=1e-6)
    assert r["fits"] and r["luts"] < r["luts_available"] == get_device(board).luts


def test_rest_follows_the_shape():
    """The rest of a family at rows x lanes is its 4 x 16 figure scaled by the ULX3S builds' shape:
    piecewise linear through 16, 64 and 1024 ternary lanes, along the end segments outside."""
    (n0, r0), (n1, r1), (n2, r2) = REST_SHAPE
    assert (n0, n1, n2) == (16, 64, 1024)
    for family, at64 in REST_LUTS.items():
        assert rest_luts(family, 64) == at64
        assert rest_luts(family, 16) == pytest.approx(at64 * r0 / r1)
        assert rest_luts(family, 1024) == pytest.approx(at64 * r2 / r1)
        assert rest_luts(family, 40) == pytest.approx(at64 * (r0 + 24 * (r1 - r0) / 48) / r1)
        assert rest_luts(family, 2048) == pytest.approx(at64 * (r2 + 1024 * (r2 - r1) / 960) / r1)
    a = fpga_estimate(_config(4, 16, 24, 4), "icebreaker")
    assert a["rest_luts"] == REST_LUTS["ice40"] and a["luts"] == a["pe_luts"] + a["rest_luts"]


def test_fits_and_block_ram():
    big = TernConfig(**BOARDS["ulx3s-85f"].default_config)
    r = fpga_estimate(big, "icebreaker")
    assert not r["fits"] and r["luts"] > 5280 and r["fit_margin"] > 0
    # block RAM: the buffers' bits against the device's (30 EBR of 4 kbit on the UP5K)
    deep = TernConfig(rows=4, lanes=16, act_depth=4096, wgt_depth=16, out_depth=8)
    r = fpga_estimate(deep, "icebreaker")
    assert r["bram_bits"] == sum(buffer_bits(deep).values()) == 4096 * 16 * 8 + 2 * 16 * 64 * 2 + 8 * 4 * 32
    assert r["bram_bits_available"] == 30 * 4096 and not r["fits"] and r["luts"] < 5280
    for variant in DOT_VARIANTS:    # every board's default configuration fits its board, any variant
        for b, board in BOARDS.items():
            assert fpga_estimate(TernConfig(**board.default_config | {"dot_variant": variant}), b)["fits"]


def test_unknown_board():
    with pytest.raises(FpgaError, match="unknown FPGA board 'de10' \\(choose from icebreaker"):
        fpga_estimate(TernConfig(), "de10")
