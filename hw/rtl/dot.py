"""Ternary dot unit: ``sum_l t_l * a_l`` for ``lanes`` int8 activations and ternary weight codes,
computed with conditional negation and a (pipelined) adder tree. There is no multiplier.

Weight codes (``docs/FORMATS.md``): ``c = t + 1``; code 2 selects ``+a``, code 0 selects ``-a``,
codes 1 and 3 select 0 (code 3 is invalid and is treated as a zero weight).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.data import ArrayLayout
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig, sum_width

__all__ = ["TernaryDotUnit"]


def _check_int(owner, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner}: {name} must be between {lo} and {hi}, not {value}")


class TernaryDotUnit(wiring.Component):
    """One ternary dot product of ``lanes`` int8 activations per cycle.

    Parameters
    ----------
    lanes : int
        Number of lanes ``L`` (1..256).
    tree_reg_every : int
        A pipeline register follows every ``tree_reg_every`` adder levels (0..16; 0 = purely
        combinational, latency 0).
    name_prefix : str
        Prefix of the internal signal names (useful when several units share a module).

    Ports (``sync`` domain; always enabled, no handshake)
    -----------------------------------------------------
    act : In(ArrayLayout(signed(8), L))
        Activation vector, sampled every cycle.
    codes : In(ArrayLayout(unsigned(2), L))
        Weight codes, ``codes[l]`` multiplies ``act[l]`` (2: +1, 0: -1, 1 or 3: 0).
    sum : Out(signed(dot_width))
        ``sum_l t_l * act[l]`` of the inputs presented :attr:`latency` cycles earlier (combinationally
        the current inputs when the latency is 0). ``dot_width = hw.config.sum_width(L)``; the value
        is exact (never wraps).

    Structure: lane terms ``Mux(code == 2, a, Mux(code == 0, -a, 0))`` (9-bit), then a binary adder
    tree of ``ceil(log2(L))`` levels (an odd node at a level passes through unchanged); each node is
    exactly as wide as its range needs (``hw.config.sum_width`` of the lanes it covers). After adder
    levels ``tree_reg_every``, ``2*tree_reg_every``, ... (up to and including the last level) all
    nodes of that level are registered. The tree's depth, width and register stages are those of
    :class:`hw.config.TernConfig` for these ``lanes`` and ``tree_reg_every`` (``tree_levels``,
    ``dot_width``, ``dot_latency``, available as :attr:`geometry`); elaboration checks that the tree
    it builds has them.
    """

    def __new__(cls, lanes, tree_reg_every, *args, name_prefix: str = "dot", **kwargs):
        _check_int(cls.__name__, "lanes", lanes, 1, 256)
        _check_int(cls.__name__, "tree_reg_every", tree_reg_every, 0, 16)
        if not isinstance(name_prefix, str) or not name_prefix.isidentifier():
            raise ValueError(f"{cls.__name__}: name_prefix must be an identifier, not {name_prefix!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, lanes: int, tree_reg_every: int, *, name_prefix: str = "dot"):
        self.lanes = lanes
        self.tree_reg_every = tree_reg_every
        #: The configuration facts of this tree (only ``lanes`` and ``tree_reg_every`` matter).
        self.geometry = TernConfig(lanes=lanes, tree_reg_every=tree_reg_every)
        self._prefix = name_prefix
        super().__init__({
            "act": In(ArrayLayout(signed(8), lanes)),
            "codes": In(ArrayLayout(2, lanes)),
            "sum": Out(signed(self.geometry.dot_width)),
        })

    @property
    def tree_levels(self) -> int:
        return self.geometry.tree_levels

    @property
    def width(self) -> int:
        """Signed width of :attr:`sum`."""
        return self.geometry.dot_width

    @property
    def latency(self) -> int:
        """Cycles from ``act``/``codes`` to the matching ``sum`` (``geometry.dot_latency``)."""
        return self.geometry.dot_latency

    def elaborate(self, platform):
        m = Module()
        p = self._prefix
        L = self.lanes

        # Level 0: conditional negation. Each node is (signal, number of lanes it covers).
        nodes = []
        for l in range(L):
            a = self.act[l]
            c = self.codes[l]
            term = Signal(signed(9), name=f"{p}_term{l}")
            m.d.comb += term.eq(Mux(c == 2, a, Mux(c == 0, -a, Const(0, signed(9)))))
            nodes.append((term, 1))

        levels = stages = 0
        while len(nodes) > 1:
            levels += 1
            registered = self.tree_reg_every and levels % self.tree_reg_every == 0
            stages += bool(registered)
            domain = m.d.sync if registered else m.d.comb
            nxt = []
            for i in range(0, len(nodes), 2):
                pair = nodes[i:i + 2]
                n = sum(k for _, k in pair)
                node = Signal(signed(sum_width(n)), name=f"{p}_l{levels}_n{i // 2}")
                if len(pair) == 2:
                    domain += node.eq(pair[0][0] + pair[1][0])
                else:
                    domain += node.eq(pair[0][0])
                nxt.append((node, n))
            nodes = nxt

        (root, _), = nodes
        if (levels, stages, len(root)) != (self.tree_levels, self.latency, self.width):
            raise AssertionError(f"{p}: built {levels} levels, {stages} register stages, "
                                 f"{len(root)} bits; the configuration says {self.tree_levels}, "
                                 f"{self.latency}, {self.width}")
        m.d.comb += self.sum.eq(root)
        return m
