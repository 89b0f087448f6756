"""What one run of a tern core program returns, whichever backend ran it.

:class:`RunResult` is returned by the cycle-accurate simulator (:func:`hw.sim.simulate`) and by the
RTL harness (:func:`hw.backends.amaranth.run_rtl`), so the two compare field by field
(:meth:`RunResult.compare`). :class:`Streams` is the input of a run: the instruction words and the raw
activation and weight beats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.config import PERF_COUNTERS, TernConfig

__all__ = ["RunResult", "Streams", "PERF_COUNTERS", "as_streams"]


@dataclass
class Streams:
    """The inputs of one run: ``words`` (64-bit instruction words), ``act_beats`` (n, lanes) int8,
    ``wgt_beats`` (m, bus_bytes) uint8."""
    words: list
    act_beats: np.ndarray
    wgt_beats: np.ndarray


def as_streams(config: TernConfig, program=None, *, words=None, act_beats=None,
               wgt_beats=None) -> Streams:
    """Normalise a :class:`hw.program.Program` (or explicit streams) to checked :class:`Streams`."""
    if not isinstance(config, TernConfig):
        raise TypeError(f"config must be a hw.config.TernConfig, not {config!r}")
    if program is not None:
        if getattr(program, "config", config) != config:
            raise ValueError("program was built for a different TernConfig than the one given")
        words = program.words if words is None else words
        act_beats = program.act_beats if act_beats is None else act_beats
        wgt_beats = program.wgt_beats if wgt_beats is None else wgt_beats
    words = [] if words is None else list(words)
    for i, w in enumerate(words):
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or not 0 <= int(w) < 1 << 64:
            raise ValueError(f"instruction word {i} must be an integer in 0..2**64-1, not {w!r}")
    words = [int(w) for w in words]
    L, B = config.lanes, config.bus_bytes
    act = np.zeros((0, L), dtype=np.int8) if act_beats is None else np.asarray(act_beats)
    if act.size == 0:
        act = act.reshape(0, L)
    if act.ndim != 2 or act.shape[1] != L:
        raise ValueError(f"act_beats must have shape (n, {L}) for lanes={L}, not {act.shape}")
    if act.size and (not np.issubdtype(act.dtype, np.integer) or act.min() < -128 or act.max() > 127):
        raise ValueError("act_beats must hold int8 values (-128..127)")
    wgt = np.zeros((0, B), dtype=np.uint8) if wgt_beats is None else np.asarray(wgt_beats)
    if wgt.size == 0:
        wgt = wgt.reshape(0, B)
    if wgt.ndim != 2 or wgt.shape[1] != B:
        raise ValueError(f"wgt_beats must have shape (n, {B}) for bus_bytes={B}, not {wgt.shape}")
    if wgt.size and (not np.issubdtype(wgt.dtype, np.integer) or wgt.min() < 0 or wgt.max() > 255):
        raise ValueError("wgt_beats must hold bytes (0..255)")
    return Streams(words, act.astype(np.int8), wgt.astype(np.uint8))


@dataclass
class RunResult:
    """One run. Cycles count from 0 = the first cycle after reset.

    ``cycles``: the first cycle ``c`` in which every instruction, activation beat and weight beat has
    been accepted and ``idle`` is high (so every result has left ``out``); modulo
    ``2**perf_width`` the ``cycles`` performance counter read in that cycle (it counts cycles
    ``0 .. c-1``). ``counters``: the
    performance counters the configuration has (``config.perf_counters``, each wrapped at
    ``perf_width`` bits) read in that cycle. ``error``: the error flags then.
    ``*_cycles``: the cycle of every transfer on each stream.
    ``events``: event counts for the energy estimator (simulator only; see docs/SIMULATOR.md).
    """
    backend: str
    config: TernConfig
    outputs: np.ndarray
    cycles: int
    counters: dict
    error: int
    instr_cycles: np.ndarray
    act_cycles: np.ndarray
    wgt_cycles: np.ndarray
    out_cycles: np.ndarray
    events: dict = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def last_out_cycle(self) -> int:
        """Cycle of the last ``out`` transfer (-1 without outputs)."""
        return int(self.out_cycles[-1]) if len(self.out_cycles) else -1

    @property
    def utilization(self) -> float | None:
        """PE utilization: issue cycles / cycles (``None`` when the configuration has no ``busy``
        counter)."""
        if "busy" not in self.counters:
            return None
        return self.counters["busy"] / self.cycles if self.cycles else 0.0

    def compare(self, other: "RunResult") -> list[str]:
        """Differences to ``other`` (empty if outputs, cycles, counters, error flags and the cycle of
        every transfer are identical); each a one-line description of the first difference."""
        diffs = []
        a, b = np.asarray(self.outputs), np.asarray(other.outputs)
        if a.shape != b.shape:
            diffs.append(f"outputs: shape {a.shape} ({self.backend}) != {b.shape} ({other.backend})")
        elif not np.array_equal(a, b):
            i = int(np.flatnonzero((a != b).any(axis=1))[0])
            diffs.append(f"outputs: first difference in vector {i}: {a[i].tolist()} ({self.backend}) "
                         f"!= {b[i].tolist()} ({other.backend})")
        if self.cycles != other.cycles:
            diffs.append(f"cycles: {self.cycles} ({self.backend}) != {other.cycles} ({other.backend})")
        for k in PERF_COUNTERS:
            if self.counters.get(k) != other.counters.get(k):
                diffs.append(f"counter {k}: {self.counters.get(k)} ({self.backend}) != "
                             f"{other.counters.get(k)} ({other.backend})")
        if self.error != other.error:
            diffs.append(f"error flags: {self.error} ({self.backend}) != {other.error} ({other.backend})")
        for name in ("instr_cycles", "act_cycles", "wgt_cycles", "out_cycles"):
            x, y = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if x.shape != y.shape:
                diffs.append(f"{name}: {len(x)} transfers ({self.backend}) != {len(y)} ({other.backend})")
            elif not np.array_equal(x, y):
                i = int(np.flatnonzero(x != y)[0])
                diffs.append(f"{name}: transfer {i} in cycle {int(x[i])} ({self.backend}) != "
                             f"{int(y[i])} ({other.backend})")
        return diffs

    def summary(self) -> dict:
        """JSON-friendly summary (no per-transfer arrays)."""
        return {"backend": self.backend, "cycles": self.cycles, "outputs": int(len(self.outputs)),
                "counters": dict(self.counters), "error": self.error,
                "utilization": self.utilization, "wall_s": self.wall_s, "events": self.events}
