"""Helpers shared by the RTL backends (:mod:`hw.backends.amaranth`, :mod:`hw.backends.verilator`):
checked run inputs, the cycle limit, and packing of stream payloads into integers."""

from __future__ import annotations

import numpy as np

from hw.config import TernConfig
from hw.isa import Op, decode
from hw.program import instr_is_valid
from hw.result import as_streams
from hw.timing import Timing

__all__ = ["HarnessError", "default_max_cycles", "prepare_run", "pack_rows", "unpack_rows"]


class HarnessError(RuntimeError):
    """The RTL did not finish the program within the cycle limit."""


def pack_rows(rows, bits: int) -> list[int]:
    """Each row of small integers -> one int with ``bits``-bit two's-complement fields (field 0
    lowest): the payload of a stream beat with an ``ArrayLayout`` of ``bits``-bit elements."""
    mask = (1 << bits) - 1
    out = []
    for row in np.asarray(rows, dtype=np.int64).tolist():
        v = 0
        for i, x in enumerate(row):
            v |= (x & mask) << (bits * i)
        out.append(v)
    return out


def unpack_rows(values, bits: int, n: int) -> np.ndarray:
    """The inverse of :func:`pack_rows` for signed fields: ``(len(values), n)`` int64."""
    out = np.zeros((len(values), n), dtype=np.int64)
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    for j, v in enumerate(values):
        v = int(v)
        for i in range(n):
            x = (v >> (bits * i)) & mask
            out[j, i] = x - (1 << bits) if x & sign else x
    return out


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


def default_max_cycles(config: TernConfig, streams, timing: Timing) -> int:
    """A generous bound on the cycles a program can take (work plus every gap, with margin)."""
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
    return 1000 + 4 * (sum(n.values()) + steps + slack)
