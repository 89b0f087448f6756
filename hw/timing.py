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

    avail_i = max(x_{i-1} + 1 + gap_i,  latency + floor(i / rate))

and then stays high until the transfer happens (valid/ready are never withdrawn), where

* ``gap_i >= 0`` idle cycles are inserted after the previous transfer: explicit (``gaps``) or drawn
  from a seeded geometric distribution (``p_stall`` = probability of each further idle cycle). The
  draw is a pure function of ``(Timing.seed, stream, i)``, so any prefix replays identically;
* ``latency + floor(i / rate)`` is a bus model: a source that has beat ``i`` ready at that cycle at
  the earliest (first-beat latency ``latency``, sustained bandwidth ``rate <= 1`` beats per cycle,
  e.g. ``rate = Fraction(1, 3)`` is one beat every 3 cycles). A consumer that stalls lets the source
  run ahead (the beats queue up), which is what a prefetching DMA does.

The transfer happens in the first cycle ``>= avail_i`` in which the core's side is also ready/valid.
The default, :meth:`Timing.ideal`, is every stream always valid and ``out`` always ready
(``gap = 0``, ``latency = 0``, ``rate = 1``: ``avail_i = x_{i-1} + 1``).
"""

from __future__ import annotations

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
    """

    p_stall: float = 0.0
    latency: int = 0
    rate: Fraction = Fraction(1)
    gaps: tuple | None = None

    def __post_init__(self):
        p = self.p_stall
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise TimingError(f"p_stall must be a probability in [0, 1), not {p!r}")
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

    @property
    def is_ideal(self) -> bool:
        """Always offered (no gaps, no latency, full rate)."""
        return (self.p_stall == 0.0 and self.latency == 0 and self.rate == 1
                and (self.gaps is None or not any(self.gaps)))

    def to_dict(self) -> dict:
        return {"p_stall": self.p_stall, "latency": self.latency,
                "rate": [self.rate.numerator, self.rate.denominator],
                "gaps": list(self.gaps) if self.gaps is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamTiming":
        rate = d.get("rate", 1)
        if isinstance(rate, (list, tuple)):
            rate = Fraction(int(rate[0]), int(rate[1]))
        return cls(p_stall=d.get("p_stall", 0.0), latency=d.get("latency", 0), rate=rate,
                   gaps=d.get("gaps"))


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
        """``latency + floor(i / rate)`` for ``i = start .. start+n-1`` (int64 array)."""
        st = self.stream(name)
        i = np.arange(start, start + n, dtype=np.int64)
        r = st.rate
        return st.latency + (i * r.denominator) // r.numerator

    def not_before_one(self, name: str, i: int) -> int:
        st = self.stream(name)
        return st.latency + (i * st.rate.denominator) // st.rate.numerator

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
