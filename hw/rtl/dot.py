"""Ternary dot unit: ``sum_l t_l * a_l`` for ``lanes`` int8 activations and ternary weight codes,
computed with conditional negation and a (pipelined) adder tree. There is no multiplier.

Weight codes (``docs/RTL_CONTRACT.md``): ``c = t + 1``; code 2 selects ``+a``, code 0 selects ``-a``,
codes 1 and 3 select 0 (code 3 is invalid and is treated as a zero weight).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.data import ArrayLayout
from amaranth.lib.wiring import In, Out

__all__ = ["TernaryDotUnit", "dot_latency", "dot_width"]


def _node_width(n_lanes: int) -> int:
    """Signed width that holds any sum of ``n_lanes`` terms in ``[-128, 128]``."""
    return (128 * n_lanes).bit_length() + 1


def dot_width(lanes: int) -> int:
    """Signed width of the dot product of ``lanes`` int8 values with ternary weights (equal to
    :attr:`hw.config.TernConfig.dot_width`)."""
    return _node_width(lanes)


def _tree_levels(lanes: int) -> int:
    return (lanes - 1).bit_length()  # ceil(log2(lanes)) for lanes >= 1


def dot_latency(lanes: int, tree_reg_every: int) -> int:
    """Register stages of a :class:`TernaryDotUnit`: one after every ``tree_reg_every`` adder levels
    of the ``ceil(log2(lanes))``-level tree (``0`` if ``tree_reg_every == 0``)."""
    if tree_reg_every == 0:
        return 0
    return _tree_levels(lanes) // tree_reg_every


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
        the current inputs when the latency is 0). ``dot_width = (128*L).bit_length() + 1``; the value
        is exact (never wraps).

    Structure: lane terms ``Mux(code == 2, a, Mux(code == 0, -a, 0))`` (9-bit), then a binary adder
    tree of ``ceil(log2(L))`` levels (an odd node at a level passes through unchanged); each node is
    exactly as wide as its range needs. After adder levels ``tree_reg_every``, ``2*tree_reg_every``,
    ... (up to and including the last level) all nodes of that level are registered.
    """

    def __init__(self, lanes: int, tree_reg_every: int, *, name_prefix: str = "dot"):
        try:
            _check_int("TernaryDotUnit", "lanes", lanes, 1, 256)
            _check_int("TernaryDotUnit", "tree_reg_every", tree_reg_every, 0, 16)
            if not isinstance(name_prefix, str) or not name_prefix.isidentifier():
                raise ValueError(f"TernaryDotUnit: name_prefix must be an identifier, "
                                 f"not {name_prefix!r}")
        except (TypeError, ValueError):
            self._MustUse__used = True  # never elaborated: no "created but never used" warning
            raise
        self._lanes = lanes
        self._tree_reg_every = tree_reg_every
        self._prefix = name_prefix
        super().__init__({
            "act": In(ArrayLayout(signed(8), lanes)),
            "codes": In(ArrayLayout(2, lanes)),
            "sum": Out(signed(dot_width(lanes))),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def tree_reg_every(self) -> int:
        return self._tree_reg_every

    @property
    def tree_levels(self) -> int:
        return _tree_levels(self._lanes)

    @property
    def width(self) -> int:
        """Signed width of :attr:`sum`."""
        return dot_width(self._lanes)

    @property
    def latency(self) -> int:
        """Cycles from ``act``/``codes`` to the matching ``sum`` (number of register stages)."""
        return dot_latency(self._lanes, self._tree_reg_every)

    def elaborate(self, platform):
        m = Module()
        p = self._prefix
        L = self._lanes

        # Level 0: conditional negation. Each node is (signal, number of lanes it covers).
        nodes = []
        for l in range(L):
            a = self.act[l]
            c = self.codes[l]
            term = Signal(signed(9), name=f"{p}_term{l}")
            m.d.comb += term.eq(Mux(c == 2, a, Mux(c == 0, -a, Const(0, signed(9)))))
            nodes.append((term, 1))

        for level in range(1, self.tree_levels + 1):
            registered = self._tree_reg_every and level % self._tree_reg_every == 0
            domain = m.d.sync if registered else m.d.comb
            nxt = []
            for i in range(0, len(nodes), 2):
                pair = nodes[i:i + 2]
                n = sum(k for _, k in pair)
                node = Signal(signed(_node_width(n)), name=f"{p}_l{level}_n{i // 2}")
                if len(pair) == 2:
                    domain += node.eq(pair[0][0] + pair[1][0])
                else:
                    domain += node.eq(pair[0][0])
                nxt.append((node, n))
            nodes = nxt

        (root, _), = nodes
        m.d.comb += self.sum.eq(root)
        return m
