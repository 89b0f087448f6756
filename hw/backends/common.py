"""Helpers shared by the RTL backends (:mod:`hw.backends.amaranth`, :mod:`hw.backends.verilator`):
checked run inputs and batches of runs (:class:`RunCase`, with reset in the middle of a program), the
cycle limit, the payload layouts of the core's streams, the one packing of payloads into the integers
a Verilog testbench needs (:func:`pack_payloads`/:func:`unpack_payloads`), and the
:class:`hw.result.RunResult` of a run. The drive policy itself is :mod:`hw.backends.drive`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import TernConfig
from hw.isa import Op, decode
from hw.program import instr_is_valid
from hw.result import RunResult, Streams, as_streams
from hw.timing import Timing

__all__ = ["HarnessError", "default_max_cycles", "prepare_run", "pack_payloads", "unpack_payloads",
           "payload_consts", "stream_layouts", "expected_outputs", "RunCase", "PlannedRun", "plan_runs", "run_result"]


class HarnessError(RuntimeError):
    """The RTL did not finish the program within the cycle limit."""


def _array_leaf(layout):
    """``(dims, width, signed)`` of an ``ArrayLayout`` (possibly nested) of plain integer shapes,
    else None."""
    from amaranth.hdl import Shape, ShapeCastable
    from amaranth.lib import data

    dims = []
    while isinstance(layout, data.ArrayLayout):
        dims.append(layout.length)
        layout = layout.elem_shape
    if not dims or (isinstance(layout, ShapeCastable) and not isinstance(layout, Shape)):
        return None
    s = Shape.cast(layout)
    return tuple(dims), s.width, s.signed


def pack_payloads(layout, values) -> list[int]:
    """The bit pattern (an int, field 0 in the lowest bits) of each value of ``layout``: the one
    packing of stream payloads and port values for testbenches (cocotb/Verilog needs integers).

    ``layout``: an :class:`amaranth.lib.data.Layout`. For an ``ArrayLayout`` (nested or not) of
    plain integer shapes, ``values`` is an array-like ``(n, *dims)`` of element values (signed or
    unsigned as the element shape; packed vectorised); otherwise each value is what
    ``layout.const`` takes (a sequence or mapping of fields) or an int that already is the bit
    pattern. :func:`unpack_payloads` is the inverse; :func:`payload_consts` gives the same values as
    Amaranth layout constants."""
    leaf = _array_leaf(layout)
    if leaf is None:
        return [int(v) if isinstance(v, (int, np.integer)) else layout.const(v).as_bits() for v in values]
    dims, w, _ = leaf
    count = int(np.prod(dims))
    arr = np.asarray(values, dtype=np.int64).reshape(-1, count)
    if not len(arr):
        return []
    bits = ((arr[:, :, None] >> np.arange(w, dtype=np.int64)) & 1).astype(np.uint8).reshape(len(arr), -1)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_payloads(layout, values) -> np.ndarray:
    """The element values of each bit pattern (an int or an :class:`amaranth.lib.data.Const`) of
    an ``ArrayLayout`` (of plain integer shapes, possibly nested): an int64 array ``(n, *dims)``,
    signed where the element shape is. The inverse of :func:`pack_payloads`."""
    from amaranth.lib import data

    leaf = _array_leaf(layout)
    if leaf is None:
        raise TypeError(f"unpack_payloads: {layout!r} is not an ArrayLayout of integer shapes")
    dims, w, signed = leaf
    count = int(np.prod(dims))
    nbytes = (count * w + 7) // 8
    ints = [v.as_bits() if isinstance(v, data.Const) else int(v) for v in values]
    if not ints:
        return np.zeros((0, *dims), dtype=np.int64)
    buf = np.frombuffer(b"".join(v.to_bytes(nbytes, "little") for v in ints), dtype=np.uint8)
    bits = np.unpackbits(buf.reshape(len(ints), nbytes), axis=1, bitorder="little")[:, :count * w]
    out = (bits.reshape(len(ints), count, w).astype(np.int64) << np.arange(w, dtype=np.int64)).sum(axis=2)
    if signed:
        out -= (out >> (w - 1)) << w
    return out.reshape(len(ints), *dims)


def payload_consts(layout, values) -> list:
    """The values of :func:`pack_payloads` as layout constants (``layout.from_bits``), for Amaranth
    testbenches: ``ctx.set(port.payload, value)``."""
    return [layout.from_bits(b) for b in pack_payloads(layout, values)]


def stream_layouts(config: TernConfig) -> dict:
    """The payload layout of each stream of :class:`hw.rtl.top.TernCore` (``instr``, ``act``,
    ``wgt``, ``out``)."""
    from hw.isa import INSTR_LAYOUT
    from hw.rtl.buffers import act_word_layout, result_layout
    from hw.rtl.top import wgt_beat_layout

    return {"instr": INSTR_LAYOUT, "act": act_word_layout(config), "wgt": wgt_beat_layout(config),
            "out": result_layout(config)}


@dataclass
class RunCase:
    """One run of a batch (:func:`hw.backends.amaranth.run_rtl_cases`,
    :func:`hw.backends.verilator.run_verilator_batch`): a program (or explicit streams), its
    :class:`Timing`, a cycle limit, and optionally an ``interrupt``: ``(program, timing, cycles)`` run
    first for ``cycles`` cycles and then cut short by the reset that starts the case (reset in the
    middle of a program; its outcome is discarded)."""
    program: object = None
    timing: Timing | None = None
    words: list | None = None
    act_beats: np.ndarray | None = None
    wgt_beats: np.ndarray | None = None
    max_cycles: int | None = None
    interrupt: tuple | None = None


@dataclass
class PlannedRun:
    """One checked run of a batch: its streams, timing, cycle limit, ``stop_at`` (the cycle an
    interrupted program is cut at) and whether its result is reported (``keep``)."""
    streams: Streams
    timing: Timing
    max_cycles: int
    stop_at: int | None = None
    keep: bool = True


def plan_runs(who: str, config: TernConfig, cases) -> list[PlannedRun]:
    """The runs of ``cases`` (:class:`RunCase` s or ``(program, timing)`` pairs) in order, each
    interrupt first; every run starts from a one-cycle reset (:func:`hw.backends.drive.run_core`)."""
    runs = []
    for c in cases:
        if not isinstance(c, RunCase):
            prog, tim = c
            c = RunCase(program=prog, timing=tim)
        if c.interrupt is not None:
            iprog, itim, icycles = c.interrupt
            t, st, mc = prepare_run(who, config, iprog, itim)
            runs.append(PlannedRun(st, t, mc, stop_at=int(icycles), keep=False))
        t, st, mc = prepare_run(who, config, c.program, c.timing, words=c.words, act_beats=c.act_beats,
                                wgt_beats=c.wgt_beats, max_cycles=c.max_cycles)
        runs.append(PlannedRun(st, t, int(mc)))
    return runs


def run_result(backend: str, config: TernConfig, r: dict, who: str) -> "RunResult | HarnessError":
    """The :class:`RunResult` of one run's observations (:func:`hw.backends.drive.run_core`; outputs
    as bit patterns or layout constants), or the :class:`HarnessError` of a run that timed out."""
    if r.get("timeout"):
        return HarnessError(f"{who}: {r['timeout']}")
    return RunResult(
        backend=backend, config=config,
        outputs=unpack_payloads(stream_layouts(config)["out"], r["outputs"]),
        cycles=int(r["cycles"]), counters={k: int(r["counters"][k]) for k in config.perf_counters},
        error=int(r["error"]),
        instr_cycles=np.array(r["instr_cycles"], dtype=np.int64),
        act_cycles=np.array(r["act_cycles"], dtype=np.int64),
        wgt_cycles=np.array(r["wgt_cycles"], dtype=np.int64),
        out_cycles=np.array(r["out_cycles"], dtype=np.int64),
        wall_s=float(r["wall_s"]))


def prepare_run(who: str, config: TernConfig, program, timing, *, words=None, act_beats=None,
                wgt_beats=None, max_cycles=None):
    """The checked inputs of one RTL run, shared by every RTL backend: ``(timing, streams,
    max_cycles)`` with the ideal timing and :func:`default_max_cycles` filled in."""
    timing = Timing() if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"{who}: timing must be a hw.timing.Timing, not {timing!r}")
    st = as_streams(config, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
    if max_cycles is None:
        max_cycles = default_max_cycles(config, st, timing)
    return timing, st, max_cycles


def expected_outputs(config: TernConfig, streams) -> int:
    """The ``out`` transfers of a program: one per result beat (``c``) of each valid MATMUL."""
    return sum(ins.c for ins in map(decode, streams.words) if ins.op == Op.MATMUL and instr_is_valid(config, ins))


def default_max_cycles(config: TernConfig, streams, timing: Timing) -> int:
    """A generous bound on the cycles a program can take (work plus every gap, with margin, times
    the expected stretch of the most withdrawn stream)."""
    steps = outs = 0
    for w in streams.words:
        ins = decode(w)
        if ins.op == Op.MATMUL and instr_is_valid(config, ins):
            steps += ins.b * ins.c
            outs += ins.c
    n = {"instr": len(streams.words), "act": len(streams.act_beats), "wgt": len(streams.wgt_beats),
         "out": outs}
    slack = 0
    for name, k in n.items():
        if k:
            slack += int(timing.gaps(name, k).sum()) + int(timing.not_before(name, 1, k - 1)[0])
    p = max(timing.stream(name).p_withdraw for name in n)
    return int((1000 + 4 * (sum(n.values()) + steps + slack)) * (1 + 2 * p / (1 - p)))
