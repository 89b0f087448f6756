"""hw.rtl.pll: PLL settings of each family, checked against the PLL's own frequency equations and
limits (written here from the families' documentation) and, where the synth extra is installed,
against the vendors' open calculators (icestorm's icepll, Trellis's ecppll, Apicula's gowin_pll);
every board's core clock is a frequency its PLL produces exactly."""

import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from hw.flows.boards import BOARDS, board_pll
from hw.rtl.pll import ecp5_pll, gowin_rpll, ice40_pll, solve_pll

# (f_in, target) pairs per family; the oscillators of the boards and a spread of targets
CASES = {
    "ice40": [(12, 16.5), (12, 18), (12, 24), (12, 30), (12, 48), (12, 50), (12, 100)],
    "ecp5": [(25, 45), (25, 48), (25, 50), (25, 62.5), (25, 75), (25, 125), (25, 133)],
    "gowin": [(27, 49.5), (27, 50), (27, 60), (27, 75), (27, 99), (27, 108)],
}


def _f_out(family, f_in, p):
    """The output frequency from the family's equation, exact (Fraction)."""
    f_in = Fraction(f_in)
    if family == "ice40":   # SIMPLE feedback
        return f_in * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"])
    if family == "ecp5":    # CLKOP feedback
        return f_in * p["CLKFB_DIV"] / p["CLKI_DIV"]
    return f_in * (p["FBDIV_SEL"] + 1) / (p["IDIV_SEL"] + 1)


def _check_limits(family, f_in, s):
    p = s.params
    if family == "ice40":
        pfd = Fraction(f_in) / (p["DIVR"] + 1)
        vco = pfd * (p["DIVF"] + 1)
        assert 10 <= pfd <= 133 and 533 <= vco <= 1066 and 16 <= s.f_out_mhz <= 275
        assert 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6
        # loop filter from the PFD (iCE40 sysCLOCK PLL table)
        assert p["FILTER_RANGE"] == (1 if pfd < 17 else 2 if pfd < 26 else 3 if pfd < 44 else
                                     4 if pfd < 66 else 5 if pfd < 101 else 6)
    elif family == "ecp5":
        pfd = Fraction(f_in) / p["CLKI_DIV"]
        vco = _f_out(family, f_in, p) * p["CLKOP_DIV"]
        assert 3.125 <= pfd <= 400 and 400 <= vco <= 800
        assert 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80 and 1 <= p["CLKOP_DIV"] <= 128
    else:
        pfd = Fraction(f_in) / (p["IDIV_SEL"] + 1)
        vco = _f_out(family, f_in, p) * p["ODIV_SEL"]
        assert 3 <= pfd <= 500 and 500 < vco < 1250
        assert p["ODIV_SEL"] in (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)
        assert 0 <= p["IDIV_SEL"] <= 63 and 0 <= p["FBDIV_SEL"] <= 63
    assert float(pfd) == pytest.approx(s.f_pfd_mhz) and float(vco) == pytest.approx(s.f_vco_mhz)


@pytest.mark.parametrize("family, f_in, target",
                         [(f, i, t) for f, cases in CASES.items() for i, t in cases])
def test_setting_obeys_the_pll_equations(family, f_in, target):
    s = solve_pll(family, f_in, target)
    assert s.family == family
    assert float(_f_out(family, f_in, s.params)) == pytest.approx(s.f_out_mhz, abs=1e-9)
    assert s.f_out_mhz <= target + 1e-9  # never above the timing budget
    _check_limits(family, f_in, s)


def test_nearest_below_is_found():
    # ECP5 from 25 MHz cannot make 48 MHz (PFD >= 3.125 MHz): 25 * 15 / 8 = 46.875 is the nearest below
    assert ecp5_pll(25, 48).f_out_mhz == pytest.approx(46.875)
    # the GW2A rPLL makes 27 * 11 / 6 = 49.5 MHz below 50
    assert gowin_rpll(27, 50).f_out_mhz == pytest.approx(49.5)
    assert ice40_pll(12, 16.5).params == {"DIVR": 0, "DIVF": 87, "DIVQ": 6, "FILTER_RANGE": 1}


@pytest.mark.parametrize("bad", [0, -5, "50", None, True])
def test_bad_target(bad):
    with pytest.raises(ValueError, match="must be a positive number of MHz"):
        ice40_pll(12, bad)


def test_unreachable_target():
    with pytest.raises(ValueError, match="no setting reaches 10 MHz or less"):
        ice40_pll(12, 10)  # the iCE40 PLL's output starts at 16 MHz
    with pytest.raises(ValueError, match="no PLL solver for family 'xilinx'"):
        solve_pll("xilinx", 100, 50)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_core_clock_is_exact(board):
    b = BOARDS[board]
    s = board_pll(board)
    assert s.family == b.family
    assert s.f_out_mhz == pytest.approx(b.core_clock_mhz, abs=1e-9)


# -- the vendors' calculators (synth extra) ---------------------------------------------------------

def _tool(name):
    local = Path(sys.executable).parent / name
    exe = str(local) if local.exists() else shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (pip install 'tern[synth]')")
    return exe


def _achieved(family, f_in, target, tmp_path):
    if family == "ice40":
        out = subprocess.run([_tool("yowasp-icepll"), "-i", str(f_in), "-o", str(target)],
                             capture_output=True, text=True, timeout=600).stdout
        return float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", out).group(1))
    if family == "ecp5":
        subprocess.run([_tool("yowasp-ecppll"), "-i", str(f_in), "-o", str(target), "-f", "pll.v"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
        return float(re.search(r'FREQUENCY_PIN_CLKOP="([\d.]+)"', (tmp_path / "pll.v").read_text()).group(1))
    subprocess.run([_tool("gowin_pll"), "-i", str(f_in), "-o", str(target), "-d", "GW2A-LV18PG256C8/I7",
                    "-f", str(tmp_path / "pll.v")], capture_output=True, text=True, timeout=600)
    return float(re.search(r"Achieved output frequency:\s+([\d.]+) MHz",
                           (tmp_path / "pll.v").read_text()).group(1))


@pytest.mark.parametrize("family, f_in, target",
                         [(f, i, t) for f, cases in CASES.items() for i, t in cases])
def test_matches_vendor_calculator_when_exact(family, f_in, target, tmp_path):
    """Where the target is exactly reachable, the calculator reaches it too (and vice versa)."""
    s = solve_pll(family, f_in, target)
    achieved = _achieved(family, f_in, target, tmp_path)
    if abs(s.f_out_mhz - target) < 1e-9:
        assert achieved == pytest.approx(target, abs=1e-3)
    else:
        assert abs(achieved - target) > 1e-3


def test_reset_sequencer_holds_reset_after_lock_and_on_loss_of_lock():
    """The design's reset: high until the PLL has been locked for RESET_CYCLES cycles (plus the two
    synchronizer flops and the ``ready`` flop), and high again after lock is lost."""
    from amaranth.sim import Simulator
    from hw.rtl.pll import RESET_CYCLES, ResetSequencer
    dut = ResetSequencer()
    seen = {}

    async def bench(ctx):
        for _ in range(20):                        # not locked: in reset
            await ctx.tick()
            assert ctx.get(dut.rst) == 1
        ctx.set(dut.locked, 1)
        n = 0
        while ctx.get(dut.rst):
            await ctx.tick()
            n += 1
            assert n < 2 * RESET_CYCLES
        seen["release"] = n
        for _ in range(50):                        # stays out of reset while locked
            await ctx.tick()
            assert ctx.get(dut.rst) == 0
        ctx.set(dut.locked, 0)
        n = 0
        while not ctx.get(dut.rst):
            await ctx.tick()
            n += 1
            assert n < 10
        seen["loss"] = n
        ctx.set(dut.locked, 1)                     # a second lock counts afresh
        n = 0
        while ctx.get(dut.rst):
            await ctx.tick()
            n += 1
        seen["relock"] = n

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # lock seen after 2 synchronizer edges, RESET_CYCLES counts, 1 more edge for the ready flop
    assert seen == {"release": RESET_CYCLES + 3, "loss": 3, "relock": RESET_CYCLES + 3}
