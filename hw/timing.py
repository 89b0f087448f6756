"""Input timing of the tern core's streams, shared by the RTL testbenches and the Python simulator.

One :class:`Timing` says, for each of the four streams of :class:`hw.rtl.top.TernCore`, in which cycle
the environment is willing to make each transfer. The same object, replayed exactly, drives the RTL
under Amaranth simulation and Verilator (the drive policy of :mod:`hw.backends.drive`) and the
cycle-accurate simulator (:mod:`hw.sim`), so their cycle counts can be compared for equality.

Model (identical for every stream; cycles count from 0 = the first cycle after reset)
-------------------------------------------------------------------------------------
Let ``x_i`` be the cycle in which transfer ``i`` of a stream happens (``x_{-1} = -1``). The environment
side of the stream (``valid`` of ``instr``/``act``/``wgt``, ``ready`` of ``out``) rises for transfer ``i``
in cycle::

    avail_i = max(x_{i-1} + 1 + gap_i,  latency + floor(i / rate),  at_i)

and then stays high until the transfer happens, except in the cycles the stream *withdraws* it
(below), where

* ``gap_i >= 0`` idle cycles are inserted after the previous transfer: explicit (``gaps``) or drawn
  from a seeded geometric distribution (``p_stall`` = probability of each further idle cycle). The
  draw is a pure function of ``(Timing.seed, stream, i)``, so any prefix replays identically;
* ``latency + floor(i / rate)`` is a bus model: a source that has beat ``i`` ready at that cycle at
  the earliest (first-beat latency ``latency``, sustained bandwidth ``rate <= 1`` beats per cycle,
  e.g. ``rate = Fraction(1, 3)`` is one beat every 3 cycles). A consumer that stalls lets the source
  run ahead (the beats queue up), which is what a prefetching DMA does.
* ``at_i`` (optional, 0 beyond its end) is an explicit earliest cycle per transfer: a precomputed
  schedule, e.g. the cycle a memory model (:mod:`hw.dram`) has beat ``i`` in its prefetch FIFO.

Withdrawal: with ``p_withdraw > 0`` the environment side is low in every cycle ``c`` of a seeded
random set (each cycle independently with probability ``p_withdraw``, a pure function of
``(Timing.seed, stream, c)``: :meth:`Timing.withdrawn`), even after it rose for transfer ``i``: a
source that takes ``valid`` back before the transfer, a sink that takes ``ready`` back. With
``garbage`` a source drives a seeded random payload in every cycle its ``valid`` is low (the
payload of transfer ``i`` is on the bus whenever ``valid`` is high).

The transfer happens in the first cycle ``>= avail_i`` that is not withdrawn and in which the core's
side is also ready/valid (:meth:`Timing.next_on` gives the first cycle ``>= c`` not withdrawn).
The default, :meth:`Timing.ideal`, is every stream always valid and ``out`` always ready
(``gap = 0``, ``latency = 0``, ``rate = 1``: ``avail_i = x_{i-1} + 1``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["StreamTiming", "Timing", "TimingError", "STREAMS"]

#: The streams of TernCore, in the order used for seeding.
STREAMS = ("instr", "act", "wgt", "out")
_BLOCK = 4096  # gaps are drawn in blocks of this many transfers, each block seeded on its own


class TimingError(ValueError):
    """An invalid timing description; the message names the stream, the field and the bad value."""


def _as_rate(value, where) -> Fraction:
    if isinstance(value, bool):
        raise TimingError(f"{where}: rate must be a number in (0, 1], not {value!r}")
    try:
        r = Fraction(value) if not isinstance(value, float) else Fraction(value).limit_denominator(1 << 20)
    except (TypeError, ValueError):
        raise TimingError(f"{where}: rate must be a number in (0, 1], not {value!r}") from None
    if not 0 < r <= 1:
        raise TimingError(f"{where}: rate must be in (0, 1] beats per cycle, not {value!r}")
    return r


@dataclass(frozen=True)
class StreamTiming:
    """When the environment offers transfer ``i`` of one stream (see the module docstring).

    Parameters
    ----------
    p_stall : float
        Probability in ``[0, 1)`` of each further idle cycle before a transfer (geometric gaps).
    latency : int
        Transfer 0 is not offered before this cycle (bus first-beat latency). ``>= 0``.
    rate : Fraction | float | int
        Sustained bandwidth in transfers per cycle, ``0 < rate <= 1``: transfer ``i`` is not offered
        before ``latency + floor(i / rate)``.
    gaps : tuple of int, optional
        Explicit idle cycles before each transfer (overrides ``p_stall``); 0 beyond its end.
    p_withdraw : float
        Probability in ``[0, 1)`` that the environment side is low in a cycle, whatever the transfer
        it offers (withdrawn ``valid`` / ``ready``).
    garbage : bool
        A source drives a random payload while its ``valid`` is low (no effect on timing).
    """

    p_stall: float = 0.0
    latency: int = 0
    rate: Fraction = Fraction(1)
    gaps: tuple | None = None
    p_withdraw: float = 0.0
    garbage: bool = False
    at: tuple | None = None     #: explicit earliest cycle of each transfer (``at_i``; 0 beyond its end)

    def __post_init__(self):
        p = self.p_stall
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise TimingError(f"p_stall must be a probability in [0, 1), not {p!r}")
        p = self.p_withdraw
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise TimingError(f"p_withdraw must be a probability in [0, 1), not {p!r}")
        if not isinstance(self.garbage, bool):
            raise TimingError(f"garbage must be true or false, not {self.garbage!r}")
        if isinstance(self.latency, bool) or not isinstance(self.latency, (int, np.integer)) \
                or self.latency < 0:
            raise TimingError(f"latency must be a non-negative integer, not {self.latency!r}")
        object.__setattr__(self, "latency", int(self.latency))
        object.__setattr__(self, "rate", _as_rate(self.rate, "StreamTiming"))
        if self.gaps is not None:
            g = np.asarray(self.gaps)
            if g.ndim != 1 or (g.size and (not np.issubdtype(g.dtype, np.integer) or g.min() < 0)):
                raise TimingError(f"gaps must be a sequence of non-negative integers, not {self.gaps!r}")
            object.__setattr__(self, "gaps", tuple(int(x) for x in g))
        if self.at is not None:
            a = np.asarray(self.at)
            if a.ndim != 1 or (a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0)):
                raise TimingError(f"at must be a sequence of non-negative integers, not {self.at!r}")
            object.__setattr__(self, "at", tuple(a.astype(np.int64).tolist()))
        object.__setattr__(self, "_at", None if self.at is None else np.asarray(self.at, dtype=np.int64))

    def at_cycles(self, start: int, n: int) -> np.ndarray | None:
        """``at_i`` for ``i = start .. start+n-1`` (0 beyond its end); None without a schedule."""
        if self._at is None:
            return None
        out = np.zeros(n, dtype=np.int64)
        src = self._at[start:start + n]
        out[:len(src)] = src
        return out

    @property
    def is_ideal(self) -> bool:
        """Always offered (no gaps, no latency, full rate)."""
        return (self.p_stall == 0.0 and self.latency == 0 and self.rate == 1
                and (self.gaps is None or not any(self.gaps)) and self.p_withdraw == 0.0
                and not self.garbage
                and (self.at is None or not np.any(self._at > np.arange(len(self._at)))))

    def replace(self, **changes) -> "StreamTiming":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {"p_stall": self.p_stall, "latency": self.latency,
                "rate": [self.rate.numerator, self.rate.denominator],
                "gaps": list(self.gaps) if self.gaps is not None else None,
                "p_withdraw": self.p_withdraw, "garbage": self.garbage} \
            | ({} if self.at is None else {"at": list(self.at)})

    @classmethod
    def from_dict(cls, d: dict) -> "StreamTiming":
        rate = d.get("rate", 1)
        if isinstance(rate, (list, tuple)):
            rate = Fraction(int(rate[0]), int(rate[1]))
        return cls(p_stall=d.get("p_stall", 0.0), latency=d.get("latency", 0), rate=rate,
                   gaps=d.get("gaps"), p_withdraw=d.get("p_withdraw", 0.0), garbage=d.get("garbage", False),
                   at=d.get("at"))


def _stream(v, name) -> StreamTiming:
    if v is None:
        return StreamTiming()
    if isinstance(v, StreamTiming):
        return v
    if isinstance(v, dict):
        return StreamTiming.from_dict(v)
    raise TimingError(f"Timing.{name} must be a StreamTiming, not {v!r}")


@dataclass(frozen=True)
class Timing:
    """The input timing of all four streams plus the seed of their random gaps.

    Build one with :meth:`ideal` (the default), :meth:`random` (seeded stalls and backpressure) or
    :meth:`bus` (bandwidth-limited weight stream), or directly from :class:`StreamTiming` s.
    :meth:`gaps` and :meth:`not_before` give the per-transfer parameters of the model as arrays.
    """

    instr: StreamTiming = field(default_factory=StreamTiming)
    act: StreamTiming = field(default_factory=StreamTiming)
    wgt: StreamTiming = field(default_factory=StreamTiming)
    out: StreamTiming = field(default_factory=StreamTiming)
    seed: int = 0

    def __post_init__(self):
        for name in STREAMS:
            object.__setattr__(self, name, _stream(getattr(self, name), name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise TimingError(f"Timing.seed must be a non-negative integer, not {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "_cache", {})

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def ideal(cls) -> "Timing":
        """Every input always valid, ``out`` always ready."""
        return cls()

    @classmethod
    def random(cls, seed: int, *, p_instr: float = 0.0, p_act: float = 0.0, p_wgt: float = 0.0,
               p_out: float = 0.0) -> "Timing":
        """Seeded geometric stalls on every stream (``p_out`` stalls ``out.ready``: backpressure)."""
        return cls(StreamTiming(p_instr), StreamTiming(p_act), StreamTiming(p_wgt), StreamTiming(p_out),
                   seed=seed)

    @classmethod
    def bus(cls, *, rate=Fraction(1), latency: int = 0, act_rate=Fraction(1), act_latency: int = 0,
            seed: int = 0) -> "Timing":
        """Bandwidth-limited weight (and activation) stream: ``rate`` beats per cycle after a
        first-beat ``latency``."""
        return cls(wgt=StreamTiming(latency=latency, rate=rate),
                   act=StreamTiming(latency=act_latency, rate=act_rate), seed=seed)

    def replace(self, **changes) -> "Timing":
        d = {n: getattr(self, n) for n in STREAMS + ("seed",)}
        d.update(changes)
        return Timing(**d)

    # -- the model's parameters ---------------------------------------------------------------------

    @property
    def is_ideal(self) -> bool:
        return all(getattr(self, n).is_ideal for n in STREAMS)

    def stream(self, name: str) -> StreamTiming:
        if name not in STREAMS:
            raise TimingError(f"unknown stream {name!r} (streams: {', '.join(STREAMS)})")
        return getattr(self, name)

    def _block(self, name: str, k: int) -> np.ndarray:
        key = (name, k)
        blk = self._cache.get(key)
        if blk is None:
            st = self.stream(name)
            if st.gaps is not None:
                g = np.zeros(_BLOCK, dtype=np.int64)
                src = st.gaps[k * _BLOCK:(k + 1) * _BLOCK]
                g[:len(src)] = src
                blk = g
            elif st.p_stall == 0.0:
                blk = np.zeros(_BLOCK, dtype=np.int64)
            else:
                rng = np.random.default_rng([self.seed, STREAMS.index(name), k])
                blk = rng.geometric(1.0 - st.p_stall, _BLOCK).astype(np.int64) - 1
            if len(self._cache) < 4096:
                self._cache[key] = blk
        return blk

    def gaps(self, name: str, n: int, start: int = 0) -> np.ndarray:
        """``gap_i`` for transfers ``i = start .. start+n-1`` of stream ``name`` (int64 array)."""
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        st = self.stream(name)
        if st.gaps is None and st.p_stall == 0.0:
            return np.zeros(n, dtype=np.int64)
        k0, k1 = start // _BLOCK, (start + n - 1) // _BLOCK
        g = np.concatenate([self._block(name, k) for k in range(k0, k1 + 1)])
        off = start - k0 * _BLOCK
        return g[off:off + n]

    def gap(self, name: str, i: int) -> int:
        """``gap_i`` of one transfer."""
        return int(self._block(name, i // _BLOCK)[i % _BLOCK]) if self._nonzero_gaps(name) else 0

    def _nonzero_gaps(self, name):
        st = self.stream(name)
        return st.gaps is not None or st.p_stall != 0.0

    def not_before(self, name: str, n: int, start: int = 0) -> np.ndarray:
        """``max(latency + floor(i / rate), at_i)`` for ``i = start .. start+n-1`` (int64 array)."""
        st = self.stream(name)
        i = np.arange(start, start + n, dtype=np.int64)
        r = st.rate
        nb = st.latency + (i * r.denominator) // r.numerator
        at = st.at_cycles(start, max(n, 0))
        return nb if at is None else np.maximum(nb, at)

    def not_before_one(self, name: str, i: int) -> int:
        st = self.stream(name)
        nb = st.latency + (i * st.rate.denominator) // st.rate.numerator
        if st.at is not None and i < len(st.at):
            nb = max(nb, st.at[i])
        return nb

    def withdraws(self, name: str) -> bool:
        """Whether stream ``name`` withdraws its environment side in some cycles (``p_withdraw``)."""
        return self.stream(name).p_withdraw != 0.0

    def _off_block(self, name: str, k: int) -> np.ndarray:
        key = ("off", name, k)
        blk = self._cache.get(key)
        if blk is None:
            rng = np.random.default_rng([self.seed, STREAMS.index(name), k, 1])
            blk = rng.random(_BLOCK) < self.stream(name).p_withdraw
            if len(self._cache) < 4096:
                self._cache[key] = blk
        return blk

    def withdrawn(self, name: str, c: int) -> bool:
        """Whether the environment side of stream ``name`` is low in cycle ``c`` whatever it offers."""
        if not self.withdraws(name) or c < 0:
            return False
        return bool(self._off_block(name, c // _BLOCK)[c % _BLOCK])

    def next_on(self, name: str, c: int) -> int:
        """The first cycle ``>= c`` in which stream ``name`` is not withdrawn."""
        if not self.withdraws(name) or c < 0:
            return c
        while True:
            k, j = divmod(c, _BLOCK)
            on = np.flatnonzero(~self._off_block(name, k)[j:])
            if len(on):
                return c + int(on[0])
            c = (k + 1) * _BLOCK

    def garbage_rng(self, name: str):
        """The seeded generator of stream ``name``'s garbage payloads (None without ``garbage``)."""
        import random
        return random.Random(self.seed * len(STREAMS) + STREAMS.index(name)) if self.stream(name).garbage \
            else None

    def avail(self, name: str, i: int, prev: int) -> int:
        """The cycle in which the environment offers transfer ``i`` when transfer ``i-1`` happened in
        cycle ``prev`` (``-1`` for ``i = 0``)."""
        return max(prev + 1 + self.gap(name, i), self.not_before_one(name, i))

    # -- serialization --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {n: getattr(self, n).to_dict() for n in STREAMS}
        d["seed"] = self.seed
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Timing":
        if not isinstance(d, dict):
            raise TimingError(f"timing: expected a table, not {type(d).__name__}")
        unknown = sorted(set(d) - set(STREAMS) - {"seed"})
        if unknown:
            raise TimingError(f"timing: unknown key {unknown[0]!r}")
        return cls(**{n: StreamTiming.from_dict(d[n]) for n in STREAMS if n in d},
                   seed=d.get("seed", 0))

    def __repr__(self):
        parts = [f"{n}={getattr(self, n)!r}" for n in STREAMS if not getattr(self, n).is_ideal]
        return f"Timing({', '.join(parts + [f'seed={self.seed}'])})"

    def __eq__(self, other):
        return isinstance(other, Timing) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.to_json())
