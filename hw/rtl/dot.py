"""Ternary dot unit: ``sum_l t_l * a_l`` for ``lanes`` int8 activations and ternary weight codes,
computed with (folded) negation and a (pipelined) adder tree. There is no multiplier.

Weight codes (``docs/FORMATS.md``): ``c = t + 1``; code 2 selects ``+a``, code 0 selects ``-a``,
codes 1 and 3 select 0 (code 3 is invalid and is treated as a zero weight).

Micro-architectures (``hw.config.DOT_VARIANTS``; same exact sum, same latency, different area):

``mux``
    Lane terms ``Mux(c == 2, a, Mux(c == 0, -a, 0))`` (9 bits), a binary tree of exact sums.
``carry``
    The negation folded into the tree: lane terms ``x = c0 ? 0 : (c1 ? a : ~a)`` (8 bits, one LUT
    per bit) and ``neg = (c == 0)``, since ``-a = ~a + 1``; every adder of the tree takes one lane's
    ``neg`` as its carry-in, the one left over leaves on ``carry`` (the PE array's accumulator takes
    it as its carry-in) or is added at the root.
``slot``
    Complemented lane terms ``y = c0 ? -1 : (c1 ? ~a : a)`` (``y + (c0 | c1) = -t * a``); every adder
    is ``{x, c0} + {y, c1} + 1`` on one more low bit, so a lane's raw code bits carry its
    ``c0 | c1`` into the sum with no logic of their own; lane 0 is exact (``~(t * a)``: ``~a``,
    ``a - 1`` or -1), so the root, inverted, is the dot product with nothing left over.
``slot_odd``
    ``slot`` with the low slot only in the adders of odd width (where a carry chain of 2-bit cells,
    ECP5's ``CCU2C``, has a spare half) and ``c0 | c1`` as a plain carry-in in the others.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.data import ArrayLayout
from amaranth.lib.wiring import In, Out

from hw.config import DOT_VARIANTS, TernConfig

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

    def __new__(cls, lanes, tree_reg_every, *args, variant: str = "mux", carry_out: bool = False,
                name_prefix: str = "dot", **kwargs):
        _check_int(cls.__name__, "lanes", lanes, 1, 256)
        _check_int(cls.__name__, "tree_reg_every", tree_reg_every, 0, 16)
        if variant not in DOT_VARIANTS:
            raise ValueError(f"{cls.__name__}: variant must be one of {', '.join(DOT_VARIANTS)}, "
                             f"not {variant!r}")
        if not isinstance(name_prefix, str) or not name_prefix.isidentifier():
            raise ValueError(f"{cls.__name__}: name_prefix must be an identifier, not {name_prefix!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, lanes: int, tree_reg_every: int, *, variant: str = "mux",
                 carry_out: bool = False, name_prefix: str = "dot"):
        self.lanes = lanes
        self.tree_reg_every = tree_reg_every
        self.variant = variant
        #: The configuration facts of this tree (only ``lanes``, ``tree_reg_every`` and the variant
        #: matter).
        self.geometry = TernConfig(lanes=lanes, tree_reg_every=tree_reg_every, dot_variant=variant)
        self._prefix = name_prefix
        self._carry_out = bool(carry_out)
        ports = {
            "act": In(ArrayLayout(signed(8), lanes)),
            "codes": In(ArrayLayout(2, lanes)),
            "sum": Out(signed(self.geometry.dot_width)),
        }
        if self._carry_out:
            ports["carry"] = Out(1)
        super().__init__(ports)

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
        width = self.geometry.tree_node_width
        if self.variant == "mux":
            nodes, pending = self._mux_terms(m), []
        elif self.variant == "carry":
            nodes, pending = self._carry_terms(m)
        else:
            nodes, pending = self._slot_terms(m)

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
                node = Signal(signed(width(n, first=i == 0)), name=f"{p}_l{levels}_n{i // 2}")
                if len(pair) == 1:
                    domain += node.eq(pair[0][0])
                else:
                    domain += node.eq(self._add(m, pair[0][0], pair[1][0],
                                                pending.pop(0) if pending else None,
                                                root=len(nodes) == 2, node=node))
                nxt.append((node, n))
            nodes = nxt
            if registered:     # the lane carries not yet absorbed travel with the tree
                pending = self._delay(m, pending, f"{p}_cy_s{stages}")

        (root, _), = nodes
        leftover = int(self.variant == "carry")
        if (levels, stages, len(root), len(pending)) != \
                (self.tree_levels, self.latency, width(L, first=True), leftover):
            raise AssertionError(f"{p}: built {levels} levels, {stages} register stages, "
                                 f"{len(root)} bits, {len(pending)} pending carries; the "
                                 f"configuration says {self.tree_levels}, {self.latency}, "
                                 f"{width(L, first=True)}, {leftover}")
        if self.variant.startswith("slot") and L == 1:
            m.d.comb += self.sum.eq(~root)           # the single leaf is ~(t * a)
        elif self.variant == "carry" and self._carry_out:
            m.d.comb += [self.sum.eq(root), self.carry.eq(pending[0])]
        elif self.variant == "carry":
            m.d.comb += self.sum.eq(root + pending[0])
        else:
            m.d.comb += self.sum.eq(root)
        if self._carry_out and self.variant != "carry":
            m.d.comb += self.carry.eq(0)
        return m

    def _add(self, m, x, y, carry, *, root, node):
        """One adder of the tree: ``x + y`` (``mux``), ``x + y + carry`` (``carry``: a negative
        weight's +1 as carry-in), or for ``slot`` the upper bits of ``{x, c0} + {y, c1} + 1``: the
        lane's code bits in an extra low bit position carry ``c0 | c1`` into ``x + y`` (inverted at
        the root, which turns the complemented sum into the dot product); ``slot_odd`` does so only
        where the node is odd-width (a carry chain of 2-bit cells has a spare half there) and takes
        ``c0 | c1`` as a plain carry-in elsewhere."""
        if self.variant == "mux":
            return x + y
        if self.variant == "carry":
            return x + y + carry
        c0, c1 = carry
        if self.variant == "slot_odd" and not len(node) & 1:      # an even-width node
            total = x + y + (c0 | c1)
            return ~total if root else total
        full = Signal(signed(max(len(x), len(y)) + 2), name=f"{node.name}_slot")
        m.d.comb += full.eq(Cat(c0, x).as_signed() + Cat(c1, y).as_signed() + 1)
        return ~full[1:] if root else full[1:]

    def _mux_terms(self, m):
        """Lane terms of the ``mux`` variant: ``Mux(c == 2, a, Mux(c == 0, -a, 0))`` (9 bits)."""
        p = self._prefix
        nodes = []
        for l in range(self.lanes):
            a = self.act[l]
            c = self.codes[l]
            term = Signal(signed(9), name=f"{p}_term{l}")
            m.d.comb += term.eq(Mux(c == 2, a, Mux(c == 0, -a, Const(0, signed(9)))))
            nodes.append((term, 1))
        return nodes

    def _carry_terms(self, m):
        """Lane terms of the ``carry`` variant: ``x_l = nz_l ? a_l ^ neg_l : 0`` (8 bits, ``~a = -a - 1``)
        and the carry bits ``neg_l`` (``t_l * a_l = x_l + neg_l``)."""
        p = self._prefix
        nodes, carries = [], []
        for l in range(self.lanes):
            a = self.act[l]
            c = self.codes[l]
            neg = Signal(name=f"{p}_neg{l}")
            x = Signal(signed(8), name=f"{p}_x{l}")
            m.d.comb += [neg.eq(~c[0] & ~c[1]), x.eq(Mux(c[0], 0, Mux(c[1], a, ~a)))]
            nodes.append((x, 1))
            carries.append(neg)
        return nodes, carries

    def _slot_terms(self, m):
        """Lane terms of the ``slot`` variant, complemented: for lane ``l >= 1``
        ``y_l = ~x_l`` (``~a`` for +1, ``a`` for -1, -1 for 0; 8 bits) with ``y_l + (c0 | c1) =
        -t_l * a_l``, its code bits pending for an adder's low slot; lane 0 exact,
        ``y_0 = ~(t_0 * a_0)`` (``~a``, ``a - 1`` or -1; 9 bits). The root is then ``~D``."""
        p = self._prefix
        nodes, pending = [], []
        for l in range(self.lanes):
            a = self.act[l]
            c = self.codes[l]
            if l == 0:
                am1 = Signal(signed(9), name=f"{p}_am1")      # one per array after opt_merge
                y = Signal(signed(9), name=f"{p}_y{l}")
                m.d.comb += [am1.eq(a - 1), y.eq(Mux(c[0], -1, Mux(c[1], ~a, am1)))]
            else:
                y = Signal(signed(8), name=f"{p}_y{l}")
                m.d.comb += y.eq(Mux(c[0], -1, Mux(c[1], ~a, a)))
                pending.append((c[0], c[1]))
            nodes.append((y, 1))
        return nodes, pending

    @staticmethod
    def _delay(m, items, name):
        """Registers every pending carry (a bit or a tuple of bits) for one pipeline stage."""
        out = []
        for j, item in enumerate(items):
            bits = item if isinstance(item, tuple) else (item,)
            regs = tuple(Signal(name=f"{name}_{j}_{k}") for k in range(len(bits)))
            m.d.sync += [r.eq(b) for r, b in zip(regs, bits)]
            out.append(regs if isinstance(item, tuple) else regs[0])
        return out
