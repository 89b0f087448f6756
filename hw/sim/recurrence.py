"""The closed form every stage of the simulator evaluates, and the stream transfer times it runs on.

Every event of every stage of the core obeys a recurrence ``t_i = max(t_{i-1} + d_i, E_i)``: the next
event happens ``d_i`` cycles after the previous one at the earliest, and not before its own constraint
``E_i`` (set by another stage or by the stream's timing). With ``S`` the prefix sum of ``d``, the
closed form is ``t_i = S_i + max(t_{-1} - S_{-1}, max_{i' <= i}(E_{i'} - S_{i'}))``: a cumulative
maximum in numpy (:func:`chain`).
"""

from __future__ import annotations

import numpy as np

from hw.timing import Timing

__all__ = ["NEG", "SimError", "prefix_sums", "chain", "StreamTimes"]

#: "Minus infinity" for cycle numbers: a constraint that never binds.
NEG = -(1 << 62)


class SimError(ValueError):
    """The program cannot run to completion with the given streams (the message says why)."""


def prefix_sums(d: np.ndarray) -> np.ndarray:
    """``S`` with ``S[0] = 0``, ``S[i+1] = d[0] + ... + d[i]``."""
    s = np.zeros(len(d) + 1, dtype=np.int64)
    np.cumsum(d, out=s[1:])
    return s


def chain(prev: int, s: np.ndarray, lo: int, e: np.ndarray) -> np.ndarray:
    """Events ``i = lo .. lo+len(e)-1`` of ``t_i = max(t_{i-1} + d_i, e_i)`` with ``t_{lo-1} = prev``,
    given the prefix sums ``s`` of ``d`` (``s[i+1] - s[i] = d_i``)."""
    n = len(e)
    if n == 1:                  # one event (a decode MATMUL's result): scalars are quicker
        return np.array([max(int(prev) + int(s[lo + 1] - s[lo]), int(e[0]))], dtype=np.int64)
    ss = s[lo + 1:lo + 1 + n]
    z = np.maximum.accumulate(e - ss)
    np.maximum(z, prev - s[lo], out=z)
    return ss + z


#: Streams of at most this many transfers keep their parameters (:func:`stream_params`).
PARAMS_MAX_N = 1 << 14
_PARAMS: dict = {}


def stream_params(timing: Timing, name: str, n: int) -> tuple:
    """``(d, s, not_before)`` of the first ``n`` transfers of stream ``name`` under ``timing``
    (read-only arrays). A :class:`Timing` is immutable, so those of short streams are kept (by the
    timing's ``id``; each entry holds its timing, so the id is not reused while it is there): a
    small program's run then builds none of them again."""
    key = (id(timing), name, n)
    item = _PARAMS.get(key)
    if item is not None and item[0] is timing:
        return item[1:]
    d = 1 + timing.gaps(name, n)
    s = prefix_sums(d)
    not_before = timing.not_before(name, n)
    for a in (d, s, not_before):
        a.flags.writeable = False
    if n <= PARAMS_MAX_N:
        if len(_PARAMS) >= 256:
            _PARAMS.clear()
        _PARAMS[key] = (timing, d, s, not_before)
    return d, s, not_before


class StreamTimes:
    """The transfers of one of the core's streams (``instr``, ``act``, ``wgt``, ``out``) under a
    :class:`~hw.timing.Timing`: the environment offers transfer ``i`` from
    ``max(t_{i-1} + 1 + gap_i, not_before_i)`` on, with ``not_before_i = latency + floor(i / rate)``,
    in every cycle the stream does not withdraw (``Timing.withdrawn``).

    ``d`` holds ``1 + gap_i``, ``s`` its prefix sums, ``not_before`` the bus bound; ``t`` is the cycle
    of every transfer, filled in by the stage that takes (or, for ``out``, gives) them, through
    :meth:`chain` (or :meth:`next_on` for one transfer at a time).

    Withdrawal: the core's side of every stream, once ready (valid) for a transfer, stays so until
    the transfer (the weight stream's gate aside, which :class:`hw.sim.loader.WeightLoader` handles),
    so a transfer whose constraints allow cycle ``c`` happens in ``next_on(c)``, the first cycle
    ``>= c`` the stream does not withdraw: ``t_i = next_on(max(t_{i-1} + d_i, E_i))``. That has no
    cumulative-maximum form, so :meth:`chain` evaluates it transfer by transfer when ``withdraws``."""

    __slots__ = ("n", "d", "s", "not_before", "t", "withdraws", "_timing", "_name")

    def __init__(self, timing: Timing, name: str, n: int):
        self.n = n
        self.d, self.s, self.not_before = stream_params(timing, name, n)
        self.t = np.zeros(n, dtype=np.int64)
        self.withdraws = timing.withdraws(name)
        self._timing, self._name = timing, name

    def next_on(self, c: int) -> int:
        """The first cycle ``>= c`` in which the stream does not withdraw its environment side."""
        return self._timing.next_on(self._name, c) if self.withdraws else c

    def chain(self, prev: int, lo: int, e: np.ndarray) -> np.ndarray:
        """Transfers ``lo .. lo+len(e)-1``: ``t_i = next_on(max(t_{i-1} + d_i, e_i))`` with
        ``t_{lo-1} = prev`` (:func:`chain` where nothing is withdrawn)."""
        if not self.withdraws:
            return chain(prev, self.s, lo, e)
        out = np.empty(len(e), dtype=np.int64)
        d, t = self.d, int(prev)
        for j, ej in enumerate(e.tolist()):
            t = self.next_on(max(t + int(d[lo + j]), ej))
            out[j] = t
        return out
