"""PLL clock generation for the board tops: the divider settings of each FPGA family's PLL, computed
from the board's oscillator and a target core clock, and the ``sync`` domain driven by the PLL.

Solvers (pure Python, no Amaranth objects; each returns a :class:`PLLSetting` whose ``f_out_mhz`` is a
frequency the PLL really produces, or raises ``ValueError``):

* :func:`ice40_pll` -- iCE40 ``SB_PLL40_PAD`` in SIMPLE feedback mode:
  ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``; PFD 10..133 MHz, VCO 533..1066 MHz,
  output 16..275 MHz (the limits of the iCE40 sysCLOCK PLL and of icestorm's ``icepll``).
* :func:`ecp5_pll` -- ECP5 ``EHXPLLL`` with CLKOP feedback:
  ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, ``f_vco = f_out * CLKOP_DIV``; PFD 3.125..400 MHz,
  VCO 400..800 MHz, output 3.125..400 MHz (Trellis's ``ecppll``).
* :func:`gowin_rpll` -- Gowin GW2A ``rPLL``: ``f_out = f_in * (FBDIV_SEL + 1) / (IDIV_SEL + 1)``,
  ``f_vco = f_out * ODIV_SEL``; PFD 3..500 MHz, VCO 500..1250 MHz, output 3.90625..625 MHz
  (GW2A-18 C8/I7, as Apicula's ``gowin_pll``).

Each picks the setting whose output is closest to the target without exceeding it (the target is a
timing budget: a clock above it could fail timing), and among those the one with the highest PFD
(the least jitter).

:class:`ClockGen` is the one separable piece that makes the clock: it requests the board's
oscillator, instantiates the family's PLL and drives the ``sync`` domain with the PLL output, held in
reset until the PLL has locked (and :data:`RESET_CYCLES` cycles after). A simulation of the board
top leaves it out (``BoardTop(..., pll=False)`` runs the core at the board oscillator through the
platform's default clock; :class:`hw.rtl.board.TernBoard` needs no platform at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import (ClockDomain, ClockSignal, Const, DomainRenamer, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["PLLSetting", "ice40_pll", "ecp5_pll", "gowin_rpll", "PLL_SOLVERS", "solve_pll",
           "ClockGen", "ResetSequencer", "RESET_CYCLES"]

#: Cycles of the PLL clock that the core stays in reset after the PLL reports lock (iCE40 block RAMs
#: read as zero for about 3 us after configuration; 1024 cycles cover that up to 340 MHz).
RESET_CYCLES = 1024

_EPS = 1e-9


def _hz(mhz: float) -> float:
    return mhz * 1e6


@dataclass(frozen=True)
class PLLSetting:
    """One PLL configuration: the family, frequencies in MHz and the family's divider values."""
    family: str
    f_in_mhz: float
    f_out_mhz: float
    f_pfd_mhz: float
    f_vco_mhz: float
    params: dict = field(default_factory=dict)

    @property
    def f_out_hz(self) -> float:
        return _hz(self.f_out_mhz)

    def to_dict(self) -> dict:
        return {"family": self.family, "f_in_mhz": self.f_in_mhz, "f_out_mhz": self.f_out_mhz,
                "f_pfd_mhz": self.f_pfd_mhz, "f_vco_mhz": self.f_vco_mhz, "params": dict(self.params)}


def _check_freqs(name, f_in, f_out):
    for what, f in (("input", f_in), ("target", f_out)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0:
            raise ValueError(f"{name}: the {what} frequency must be a positive number of MHz, "
                             f"not {f!r}")


def _best(name, f_in, target, candidates, limits):
    """The candidate ``(f_out, f_pfd, f_vco, params)`` closest to ``target`` from below, ties
    broken by the higher PFD; ValueError naming the range when none is at or below the target."""
    below = [c for c in candidates if c[0] <= target + _EPS]
    if not below:
        raise ValueError(f"{name}: no setting reaches {target:g} MHz or less from {f_in:g} MHz "
                         f"({limits})")
    f_out, pfd, vco, params = max(below, key=lambda c: (round(c[0], 9), c[1], -c[2]))
    return f_out, pfd, vco, params


def _ice40_filter_range(f_pfd: float) -> int:
    """The loop filter setting of the iCE40 PLL for a PFD frequency (the sysCLOCK table)."""
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd < limit:
            return value
    return 6


def ice40_pll(f_in_mhz: float, target_mhz: float) -> PLLSetting:
    """Settings of an iCE40 ``SB_PLL40_*`` in SIMPLE feedback for ``target_mhz`` (module docstring)."""
    _check_freqs("ice40_pll", f_in_mhz, target_mhz)
    cands = []
    for divr in range(16):
        pfd = f_in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                f_out = vco / 2 ** divq
                if 16 <= f_out <= 275:
                    cands.append((f_out, pfd, vco, {"DIVR": divr, "DIVF": divf, "DIVQ": divq}))
    f_out, pfd, vco, p = _best("ice40_pll", f_in_mhz, target_mhz, cands,
                               "iCE40 PLL: output 16..275 MHz, PFD 10..133 MHz, VCO 533..1066 MHz")
    p["FILTER_RANGE"] = _ice40_filter_range(pfd)
    return PLLSetting("ice40", f_in_mhz, f_out, pfd, vco, p)


def ecp5_pll(f_in_mhz: float, target_mhz: float) -> PLLSetting:
    """Settings of an ECP5 ``EHXPLLL`` with CLKOP feedback for ``target_mhz`` (module docstring)."""
    _check_freqs("ecp5_pll", f_in_mhz, target_mhz)
    cands = []
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            f_out = pfd * clkfb
            if not 3.125 <= f_out <= 400:
                continue
            # the CLKOP divider that puts the VCO nearest the middle of its range
            divs = [d for d in range(1, 129) if 400 <= f_out * d <= 800]
            if divs:
                d = min(divs, key=lambda d: abs(f_out * d - 600))
                cands.append((f_out, pfd, f_out * d, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb,
                                                      "CLKOP_DIV": d}))
    f_out, pfd, vco, p = _best("ecp5_pll", f_in_mhz, target_mhz, cands,
                               "ECP5 PLL: output 3.125..400 MHz, PFD 3.125..400 MHz, VCO 400..800 MHz")
    return PLLSetting("ecp5", f_in_mhz, f_out, pfd, vco, p)


_GOWIN_ODIV = (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)


def gowin_rpll(f_in_mhz: float, target_mhz: float) -> PLLSetting:
    """Settings of a Gowin GW2A ``rPLL`` for ``target_mhz`` (module docstring)."""
    _check_freqs("gowin_rpll", f_in_mhz, target_mhz)
    cands = []
    for idiv in range(64):
        pfd = f_in_mhz / (idiv + 1)
        if not 3 <= pfd <= 500:
            continue
        for fbdiv in range(64):
            f_out = pfd * (fbdiv + 1)
            if not 3.90625 < f_out < 625:
                continue
            odivs = [o for o in _GOWIN_ODIV if 500 < f_out * o < 1250]
            if odivs:
                o = min(odivs, key=lambda o: abs(f_out * o - 875))
                cands.append((f_out, pfd, f_out * o, {"IDIV_SEL": idiv, "FBDIV_SEL": fbdiv,
                                                      "ODIV_SEL": o}))
    f_out, pfd, vco, p = _best("gowin_rpll", f_in_mhz, target_mhz, cands,
                               "GW2A rPLL: output 3.9..625 MHz, PFD 3..500 MHz, VCO 500..1250 MHz")
    return PLLSetting("gowin", f_in_mhz, f_out, pfd, vco, p)


#: family -> solver
PLL_SOLVERS = {"ice40": ice40_pll, "ecp5": ecp5_pll, "gowin": gowin_rpll}


def solve_pll(family: str, f_in_mhz: float, target_mhz: float) -> PLLSetting:
    if family not in PLL_SOLVERS:
        raise ValueError(f"no PLL solver for family {family!r} (known: {', '.join(PLL_SOLVERS)})")
    return PLL_SOLVERS[family](f_in_mhz, target_mhz)


class ClockGen(Elaboratable):
    """Drives the ``sync`` domain (defined by the parent, the board top) with the family's PLL,
    fed by the board oscillator.

    ``setting`` is a :class:`PLLSetting` (from :func:`solve_pll`); ``clock`` names the oscillator's
    platform resource (the platform's ``default_clk``). The domain is reset until the PLL has locked
    and for :data:`RESET_CYCLES` cycles after; the PLL output is constrained to ``f_out_mhz`` so
    that the place-and-route tool reports the core clock's Fmax against it."""

    def __init__(self, setting: PLLSetting, clock: str):
        if not isinstance(setting, PLLSetting):
            raise TypeError(f"ClockGen: setting must be a PLLSetting, not {setting!r}")
        self.setting = setting
        self.clock = clock
        self.locked = Signal(name="pll_locked")

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("ClockGen needs a platform (a simulation bypasses the PLL)")
        m = Module()
        s = self.setting
        clk_out = Signal(name="pll_clk")
        pad = platform.request(self.clock, 0, dir="-")
        if s.family == "ice40":
            p = s.params
            # SB_PLL40_PAD takes the oscillator straight from its package pin
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=Const(p["DIVR"], 4), p_DIVF=Const(p["DIVF"], 7), p_DIVQ=Const(p["DIVQ"], 3),
                p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
                i_PACKAGEPIN=pad.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clk_out, o_LOCK=self.locked)
        else:
            m.submodules.clk_in_buf = clk_buf = io.Buffer("i", pad)
            if s.family == "ecp5":
                p = s.params
                m.submodules.pll = Instance(
                    "EHXPLLL",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                    p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                    p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                    p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                    a_FREQUENCY_PIN_CLKI=f"{s.f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{s.f_out_mhz:g}",
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                    a_MFG_GMCREF_SEL="2",
                    i_CLKI=clk_buf.i, i_CLKFB=clk_out, i_RST=Const(0), i_STDBY=Const(0),
                    i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                    i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                    i_ENCLKOP=Const(0),
                    o_CLKOP=clk_out, o_LOCK=self.locked)
            elif s.family == "gowin":
                p = s.params
                m.submodules.pll = Instance(
                    "rPLL",
                    p_FCLKIN=f"{s.f_in_mhz:g}", p_DEVICE=platform.family,
                    p_IDIV_SEL=p["IDIV_SEL"], p_FBDIV_SEL=p["FBDIV_SEL"], p_ODIV_SEL=p["ODIV_SEL"],
                    p_DYN_IDIV_SEL="false", p_DYN_FBDIV_SEL="false", p_DYN_ODIV_SEL="false",
                    p_DYN_SDIV_SEL=2, p_CLKFB_SEL="internal", p_CLKOUT_BYPASS="false",
                    p_CLKOUTP_BYPASS="false", p_CLKOUTD_BYPASS="false", p_CLKOUTD_SRC="CLKOUT",
                    p_CLKOUTD3_SRC="CLKOUT", p_PSDA_SEL="0000", p_DUTYDA_SEL="1000",
                    i_CLKIN=clk_buf.i, i_CLKFB=Const(0), i_RESET=Const(0), i_RESET_P=Const(0),
                    i_FBDSEL=Const(0, 6), i_IDSEL=Const(0, 6), i_ODSEL=Const(0, 6),
                    i_PSDA=Const(0, 4), i_DUTYDA=Const(0, 4), i_FDLY=Const(0, 4),
                    o_CLKOUT=clk_out, o_LOCK=self.locked)
            else:
                raise ValueError(f"ClockGen: no PLL for family {s.family!r}")

        m.d.comb += ClockSignal("sync").eq(clk_out)
        platform.add_clock_constraint(clk_out, s.f_out_hz)
        # reset: until lock (synchronized), then RESET_CYCLES more cycles
        m.domains.pll_por = ClockDomain("pll_por", reset_less=True, local=True)
        m.d.comb += ClockSignal("pll_por").eq(clk_out)
        m.submodules.por = por = DomainRenamer("pll_por")(ResetSequencer())
        m.d.comb += [por.locked.eq(self.locked), ResetSignal("sync").eq(por.rst)]
        return m


class ResetSequencer(Elaboratable):
    """The reset of the design clocked by a PLL: ``rst`` is high until ``locked`` (asynchronous,
    synchronized here by two flops) has been high for :data:`RESET_CYCLES` cycles, and again from
    the cycle after lock is lost. Runs in a reset-less ``sync`` domain (:class:`ClockGen` renames it
    to its power-on domain).

    ``rst`` is a flip-flop's output (not the timer's comparison): the reset that fans out to every
    flop of the design starts at a flop, with no logic in front of it.

    Ports: ``locked`` : in, 1 bit (the PLL's lock output); ``rst`` : out, 1 bit. ``rst`` falls
    ``RESET_CYCLES + 3`` cycles after the edge at which ``locked`` rises (two synchronizer flops,
    the count, the ``ready`` flop)."""

    def __init__(self):
        self.locked = Signal(name="pll_locked")
        self.rst = Signal(name="pll_reset")

    def elaborate(self, platform):
        m = Module()
        locked = Signal(name="pll_locked_sync")
        m.submodules.lock_sync = FFSynchronizer(self.locked, locked)
        timer = Signal(range(RESET_CYCLES + 1), name="pll_reset_timer")
        ready = Signal(name="pll_ready")
        with m.If(~locked):
            m.d.sync += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer != RESET_CYCLES):
            m.d.sync += timer.eq(timer + 1)
        with m.Else():
            m.d.sync += ready.eq(1)
        m.d.comb += self.rst.eq(~ready)
        return m
