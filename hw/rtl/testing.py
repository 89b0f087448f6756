"""Small helpers for Amaranth async testbenches: stream drivers and monitors with seeded stalls.

Used by the unit tests of every block and by the Amaranth-sim backend. A ``stall`` argument is either
``None`` (never stall) or a :class:`random.Random`-driven probability: before each transfer the driver
waits a geometric number of idle cycles, so every run is reproducible from its seed.
"""

from __future__ import annotations

import random

__all__ = ["stream_put", "stream_get", "Stalls"]


class Stalls:
    """Seeded stall generator: ``next()`` returns how many idle cycles to insert before a transfer."""

    def __init__(self, probability: float = 0.0, seed: int = 0):
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"stall probability must be in [0, 1), not {probability!r}")
        self.probability = probability
        self.seed = seed
        self._rng = random.Random(seed)

    def next(self) -> int:
        n = 0
        while self.probability and self._rng.random() < self.probability:
            n += 1
        return n


async def _idle(ctx, stalls):
    if stalls is not None:
        for _ in range(stalls.next()):
            await ctx.tick()


async def stream_put(ctx, stream, payload, *, stalls: Stalls | None = None):
    """Drive one transfer of ``payload`` into ``stream`` (an ``In(stream.Signature)`` port)."""
    await _idle(ctx, stalls)
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, stalls: Stalls | None = None):
    """Accept one transfer from ``stream`` (an ``Out(stream.Signature)`` port); returns the payload."""
    await _idle(ctx, stalls)
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
