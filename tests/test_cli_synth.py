"""``tern synth`` (sw/cli/synth.py, building through hw/flows/boards.py): bad input (fast) and real
place-and-route builds (slow)."""

import json
from pathlib import Path

import pytest

from hw.flows.boards import (PE_ARRAY_MODULE, BoardError, BuildError, _reseed, build_board,
                             default_config, pe_lut_count)
from hw.config import TernConfig
from helpers import run as _run


def test_list(capsys):
    rc, out, err = _run(capsys, "synth", "--list", "--json")
    assert rc == 0
    boards = json.loads(out)["boards"]
    assert set(boards) == {"icebreaker", "ulx3s-85f", "tang-primer-20k"}
    assert {b["family"] for b in boards.values()} == {"ice40", "ecp5", "gowin"}
    for name, b in boards.items():
        TernConfig(**b["default_config"])  # every default configuration is valid
        assert b["core_clock_mhz"] > 0
    rc, out, err = _run(capsys, "synth", "--list")
    assert rc == 0 and "icebreaker" in out and "ulx3s-85f" in out and "tang-primer-20k" in out


@pytest.mark.parametrize("argv, message", [
    (("--board", "de0-nano"), "unknown board 'de0-nano'"),
    ((), "--board is required"),
    (("--board", "icebreaker", "--lanes", "0"), "lanes must be between"),
    (("--board", "icebreaker", "--acc-width", "8"), "acc_width must be between"),
    (("--board", "icebreaker", "--baud", "20000000"), "baud rate 20000000 is too high"),
    (("--board", "icebreaker", "--baud", "0"), "baud rate must be positive"),
    (("--board", "icebreaker", "--seeds", "0"), "seeds must be an integer between 1 and 50"),
    (("--board", "icebreaker", "--timeout", "0"), "--timeout must be a positive number"),
    (("--board", "tang-primer-20k", "--seed", "-1"), "seed must be an integer between 0"),
    # 115200 baud from the 37.5 MHz PLL clock: 326 cycles per bit; 12 MHz would need 3.1, and
    # 9 MHz rounds to 4 cycles per bit (9.375 MHz, 4 % off)
    (("--board", "icebreaker", "--baud", "12000000"), "baud rate 12000000 is too high for a 37.5 MHz"),
    (("--board", "icebreaker", "--baud", "9000000"), "baud rate 9000000 cannot be made from a 37.5 MHz"),
])
def test_bad_input_exit_2_one_line(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "out"
    rc, out, err = _run(capsys, "synth", *argv, "--output", str(out_dir), "--json")
    assert rc == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_output_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = _run(capsys, "synth", "--board", "icebreaker", "--output", str(f))
    assert rc == 2 and "is not a folder" in err
    assert f.read_text() == "x"


def test_pe_lut_count():
    """LUT4s of the PE array's own module, in each family's cell types (CCU2C = 2 LUT4s, ALU = 1)."""
    def netlist(cells, name=PE_ARRAY_MODULE):
        return {"modules": {"top": {"cells": {"x": {"type": "SB_LUT4"}}},
                            name: {"cells": {f"c{i}": {"type": t} for i, t in enumerate(cells)}}}}
    assert pe_lut_count(netlist(["SB_LUT4", "SB_LUT4", "SB_CARRY", "SB_DFF"]), "ice40") == 2
    assert pe_lut_count(netlist(["LUT4", "CCU2C", "TRELLIS_FF", "PFUMX"]), "ecp5") == 3
    assert pe_lut_count(netlist(["LUT1", "LUT3", "ALU", "MUX2_LUT5", "DFFR"]), "gowin") == 3
    with pytest.raises(BuildError, match="has no module 'top.board.core.pe'"):
        pe_lut_count(netlist(["SB_LUT4"], name="top.core.pe"), "ice40")


def test_reseed_line():
    line = ('"$NEXTPNR_ICE40" --quiet --report report.json --timing-allow-fail --seed 1 --log top.tim '
            '--up5k --package sg48 --json top.json --pcf top.pcf --asc top.asc')
    assert _reseed(line, 3) == (
        '"$NEXTPNR_ICE40" --quiet --report report_seed3.json --timing-allow-fail --seed 3 '
        '--log top_seed3.tim --up5k --package sg48 --json top.json --pcf top.pcf')
    assert "--write" not in _reseed('"$NEXTPNR_HIMBAECHEL" --seed 1 --json a --write top.pnr.json', 2)


def test_tool_failure_is_exit_1_one_message(capsys, tmp_path, monkeypatch):
    """A toolchain failure (here: a Yosys that exits 1) is exit 1 with the message on stderr, no
    traceback, and nothing left behind."""
    fake = tmp_path / "fake-yosys"
    fake.write_text("#!/bin/sh\necho 'ERROR: simulated failure' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    for var in ("NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.setenv(var, "true")
    out_dir = tmp_path / "out" / "ice"
    rc, out, err = _run(capsys, "synth", "--board", "icebreaker", "--output", str(out_dir))
    assert rc == 1 and out == ""
    assert err.startswith("tern synth: the icebreaker build failed (exit code 1)")
    assert "simulated failure" in err and "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []


def test_timeout_ends_the_tools(tmp_path, monkeypatch):
    """A build past its timeout: BuildError, and the tool it started is ended with it (its own
    process group), the temporary folder removed."""
    pidfile = tmp_path / "pid"
    fake = tmp_path / "slow-yosys"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    # the place-and-route and packing tools are never reached (and need not be installed)
    for var in ("NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.setenv(var, "false")
    with pytest.raises(BuildError, match="did not finish within 20 s"):
        build_board("icebreaker", TernConfig(rows=1, lanes=4, acc_width=13, bus_bytes=1,
                                             act_depth=16, wgt_depth=4, out_depth=2),
                    tmp_path / "out" / "x", timeout=20)
    status = Path(f"/proc/{int(pidfile.read_text())}/status")
    # gone, or a zombie waiting for its parent (a container's init may not reap it at once)
    assert not status.exists() or "State:\tZ" in status.read_text()
    assert list((tmp_path / "out").iterdir()) == []


def test_unknown_board_api():
    with pytest.raises(BoardError, match="unknown board"):
        build_board("nexys", TernConfig())
    with pytest.raises(BoardError, match="unknown board"):
        default_config("nexys")


def _check_result(r, board, luts_available, clock_mhz, *, rows, lanes):
    for key in ("board", "luts", "ffs", "brams", "dsps", "fmax_mhz", "bitstream", "pe_luts",
                "luts_per_lane", "clock_mhz", "timing_met", "pll"):
        assert key in r
    assert r["board"] == board
    assert r["dsps"] == 0  # a multiplier-free core: no DSP cells
    assert 0 < r["luts"] <= r["luts_available"] == luts_available
    assert 0 < r["pe_luts"] < r["luts"]
    assert r["luts_per_lane"] == round(r["pe_luts"] / (rows * lanes), 2)
    assert r["ffs"] > 0
    assert r["fmax_mhz"] > 0
    assert r["clock_mhz"] == clock_mhz == r["pll"]["f_out_mhz"]
    assert r["timing_met"] == (r["fmax_mhz"] >= clock_mhz)


TINY = ("--rows", "2", "--lanes", "8", "--acc-width", "16", "--bus-bytes", "2", "--act-depth", "64",
        "--wgt-depth", "8", "--out-depth", "4")


@pytest.mark.slow
def test_gowin_tiny_build(tmp_path, capsys):
    """A real Tang Primer 20K (GW2A-18C) build: Yosys synth_gowin, nextpnr-himbaechel-gowin,
    Apicula's gowin_pack; two placement seeds."""
    out_dir = tmp_path / "gw"
    rc, out, err = _run(capsys, "synth", "--board", "tang-primer-20k", *TINY, "--seeds", "2",
                        "--output", str(out_dir), "--json")
    r = json.loads(out)
    assert rc == (0 if r["timing_met"] else 1), err
    _check_result(r, "tang-primer-20k", 20736, 150.0, rows=2, lanes=8)
    assert len(r["fmax_seeds_mhz"]) == 2 and r["fmax_seeds_mhz"][0] == r["fmax_mhz"]
    assert r["fmax_min_mhz"] <= r["fmax_median_mhz"] <= r["fmax_max_mhz"]
    bit = Path(r["bitstream"])
    assert bit.parent == out_dir and bit.name == "top.fs" and bit.stat().st_size > 100_000
    assert json.loads((out_dir / "synth.json").read_text()) == r
    assert [p.name for p in tmp_path.iterdir()] == ["gw"]


@pytest.mark.slow
def test_icebreaker_tiny_build(tmp_path, capsys):
    """A real iCE40 UP5K build of a tiny configuration: Yosys, nextpnr-ice40, icepack."""
    out_dir = tmp_path / "ice"
    rc, out, err = _run(capsys, "synth", "--board", "icebreaker", "--rows", "2", "--lanes", "8",
                        "--acc-width", "16", "--bus-bytes", "2", "--act-depth", "64",
                        "--wgt-depth", "8", "--out-depth", "4", "--output", str(out_dir), "--json")
    assert rc == 0, err
    r = json.loads(out)
    _check_result(r, "icebreaker", 5280, 37.5, rows=2, lanes=8)
    bit = Path(r["bitstream"])
    assert bit.parent == out_dir and bit.is_file()
    assert bit.stat().st_size > 100_000  # a full UP5K bitstream (~104 kB)
    assert json.loads((out_dir / "synth.json").read_text()) == r
    assert [p.name for p in tmp_path.iterdir()] == ["ice"]  # no temporary folder left behind


@pytest.mark.slow
def test_icebreaker_does_not_fit(tmp_path):
    """A configuration too large for the UP5K: a one-line "does not fit" error from nextpnr's
    utilisation, and nothing left in the output's parent folder."""
    cfg = TernConfig(rows=8, lanes=32, acc_width=16, bus_bytes=4, act_depth=64, wgt_depth=8,
                     out_depth=4)
    with pytest.raises(BoardError, match=r"does not fit: needs \d+ LUTs, the device has 5280"):
        build_board("icebreaker", cfg, tmp_path / "big")
    assert list(tmp_path.iterdir()) == []
