"""``tern synth`` (sw/cli/synth.py, building through hw/flows/boards.py): bad input (fast) and real
place-and-route builds (slow)."""

import json
from pathlib import Path

import pytest

from hw.flows.boards import BoardError, build_board, default_config
from hw.config import TernConfig
from helpers import run as _run


def test_list(capsys):
    rc, out, err = _run(capsys, "synth", "--list", "--json")
    assert rc == 0
    boards = json.loads(out)["boards"]
    assert set(boards) == {"icebreaker", "ulx3s-85f"}
    for name, b in boards.items():
        TernConfig(**b["default_config"])  # every default configuration is valid
    rc, out, err = _run(capsys, "synth", "--list")
    assert rc == 0 and "icebreaker" in out and "ulx3s-85f" in out


@pytest.mark.parametrize("argv, message", [
    (("--board", "de0-nano"), "unknown board 'de0-nano'"),
    ((), "--board is required"),
    (("--board", "icebreaker", "--lanes", "0"), "lanes must be between"),
    (("--board", "icebreaker", "--acc-width", "8"), "acc_width must be between"),
    (("--board", "icebreaker", "--baud", "9000000"), "baud rate 9000000 is too high"),
    (("--board", "icebreaker", "--baud", "0"), "baud rate must be positive"),
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


def test_unknown_board_api():
    with pytest.raises(BoardError, match="unknown board"):
        build_board("nexys", TernConfig())
    with pytest.raises(BoardError, match="unknown board"):
        default_config("nexys")


@pytest.mark.slow
def test_icebreaker_tiny_build(tmp_path, capsys):
    """A real iCE40 UP5K build of a tiny configuration: Yosys, nextpnr-ice40, icepack."""
    out_dir = tmp_path / "ice"
    rc, out, err = _run(capsys, "synth", "--board", "icebreaker", "--rows", "2", "--lanes", "8",
                        "--acc-width", "16", "--bus-bytes", "2", "--act-depth", "64",
                        "--wgt-depth", "8", "--out-depth", "4", "--output", str(out_dir), "--json")
    assert rc == 0, err
    r = json.loads(out)
    for key in ("board", "luts", "ffs", "brams", "dsps", "fmax_mhz", "bitstream"):
        assert key in r
    assert r["board"] == "icebreaker"
    assert r["dsps"] == 0  # a multiplier-free core: no DSP cells
    assert 0 < r["luts"] <= r["luts_available"] == 5280
    assert r["ffs"] > 0
    assert r["fmax_mhz"] > 0
    assert r["timing_met"] == (r["fmax_mhz"] >= 12.0)
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
