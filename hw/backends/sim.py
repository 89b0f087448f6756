"""The ``sim`` backend: the cycle-accurate Python simulator (:func:`hw.sim.simulate`)."""

from __future__ import annotations

from hw.sim import simulate

__all__ = ["run"]


def run(config, program=None, timing=None, *, words=None, act_beats=None, wgt_beats=None,
        max_cycles=None):
    """:func:`hw.sim.simulate` with the backend signature (``max_cycles`` is not needed: the
    simulator rejects a program that cannot finish before it runs)."""
    return simulate(config, program, timing, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
