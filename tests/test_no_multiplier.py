"""No multiplier in the datapath (the ternary PE array adds and subtracts only).

1. Yosys (hw.flows.yosys): the PE array, the weight decoder (both formats) and the whole TernCore of
   several configurations, and the board top of every FPGA family (PLL, UART link and core, as
   ``tern synth`` elaborates it for the board's platform), have zero multiplier/divider/MAC/DSP cells
   in every flow (coarse cells before alumacc, generic synth, and the mapped netlists of
   synth_ice40 with DSP inference, synth_ecp5 and synth_gowin). A design that does multiply is
   flagged by the same check in every flow (so it can fail). CI checks small configurations; the
   slow suite adds more and the boards' default configurations.
2. Elaboration: no hw/ code applies ``*``, ``//`` or ``%`` to an Amaranth value (operators
   intercepted while the designs elaborate).
3. Source heuristic (AST): no ``*``, ``/``, ``//``, ``%``, ``**`` in hw/rtl has an operand that is a
   signal, port or other HDL value.
"""

import ast
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, signed
from amaranth.hdl._ast import Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.decoder import WeightDecoder
from hw.rtl.pe_array import PEArray
from hw.rtl.top import TernCore
from hw.flows.boards import BOARDS, board_pll
from hw.flows.yosys import FLOWS, cell_histograms, multiplier_cells
from hw.rtl.board import BoardTop

ROOT = Path(__file__).resolve().parent.parent
SMALL = TernConfig(rows=2, lanes=8, bus_bytes=2, act_depth=16, wgt_depth=4, out_depth=4,
                   acc_width=20, tree_reg_every=1)

DESIGNS = {
    "pe_array": lambda: PEArray(SMALL),
    "decoder_2bit": lambda: WeightDecoder(SMALL.replace(weight_format="2bit")),
    "decoder_base3": lambda: WeightDecoder(SMALL.replace(weight_format="base3", bus_bytes=3)),
    "tern_core": lambda: TernCore(SMALL.replace(weight_format="base3")),
}

#: More configurations of the whole core (slow suite): odd lane counts, one row, a combinational
#: tree, a register after every level, both weight formats, wide accumulators.
SLOW_CORES = {
    "core_r1_l3_base3_tree0": SMALL.replace(rows=1, lanes=3, weight_format="base3", bus_bytes=3,
                                            tree_reg_every=0),
    "core_r3_l5_reg1": SMALL.replace(rows=3, lanes=5, bus_bytes=4, acc_width=32),
    "core_r4_l16_2bit": SMALL.replace(rows=4, lanes=16, bus_bytes=4, act_depth=64, wgt_depth=8,
                                      tree_reg_every=2, acc_width=24),
}

#: A small configuration for the board tops in CI.
BOARD_SMALL = TernConfig(rows=2, lanes=4, bus_bytes=1, act_depth=16, wgt_depth=4, out_depth=4,
                         acc_width=16)

# Cells that show that a flow really produced a netlist of the expected kind.
EXPECTED_PRIMITIVES = {"prep": ("$add", "$sdff", "$dff", "$mux"),
                       "generic": ("$_DFF_P_", "$_SDFF_PP0_", "$_DFFE_PP_", "$_SDFFE_PP0P_",
                                   "$_SDFFCE_PP0P_"),
                       "ice40": ("SB_LUT4",), "ecp5": ("LUT4",), "gowin": ("LUT4",)}


class Multiplier(wiring.Component):
    """Positive control: a 16x16 multiplier (what the datapath must never contain)."""

    a: In(signed(16))
    b: In(signed(16))
    y: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a * self.b)
        return m


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_no_multiplier_cells(design):
    """One Yosys run per design (all flows), so parallel test workers never repeat a synthesis."""
    _check_histograms(design, cell_histograms(DESIGNS[design]()), FLOWS)


def _check_histograms(name, hists, flows):
    assert sorted(hists) == sorted(flows)
    for flow, hist in hists.items():
        assert any(hist.get(c, 0) for c in EXPECTED_PRIMITIVES[flow]), (name, flow, hist)
        assert multiplier_cells(hist) == {}, f"{name} after {flow}: {hist}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_CORES))
def test_no_multiplier_cells_more_configs(name):
    _check_histograms(name, cell_histograms(TernCore(SLOW_CORES[name])), FLOWS)


def board_top_rtlil(board: str, config: TernConfig) -> str:
    """The board top's RTLIL exactly as ``tern synth`` elaborates it for the board's platform (the
    PLL at the board's core clock, the UART link, the core, the IO buffers)."""
    b = BOARDS[board]
    plan = b.make_platform().prepare(BoardTop(config, pll=board_pll(board)), name="top")
    return plan.files["top.il"]


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_top_no_multiplier(board):
    """The board top of each family, mapped by that family's synthesis (and the coarse cells)."""
    flows = ("prep", BOARDS[board].family)
    hists = cell_histograms(board_top_rtlil(board, BOARD_SMALL), flows)
    _check_histograms(board, hists, flows)


@pytest.mark.slow
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_top_default_config_no_multiplier(board):
    flows = ("prep", BOARDS[board].family)
    b = BOARDS[board]
    hists = cell_histograms(board_top_rtlil(board, TernConfig(**b.default_config)), flows,
                            timeout=3600)
    _check_histograms(board, hists, flows)


def test_pe_array_adds_only():
    """The PE array's coarse netlist: the adder tree (L-1 adders per row) plus the accumulators,
    and one negation per lane (the broadcast activation's negation is shared by all rows)."""
    prep = cell_histograms(DESIGNS["pe_array"](), ("prep",))["prep"]
    R, L = SMALL.rows, SMALL.lanes
    assert prep.get("$add", 0) + prep.get("$sub", 0) == R * (L - 1) + R, prep
    assert prep.get("$neg", 0) == L, prep


def test_positive_control_is_flagged():
    hist = cell_histograms(Multiplier(), ("prep", "ice40", "ecp5", "gowin"))
    assert multiplier_cells(hist["prep"]) == {"$mul": 1}
    assert multiplier_cells(hist["ice40"]) == {"SB_MAC16": 1}
    assert multiplier_cells(hist["ecp5"]) == {"MULT18X18D": 1}
    assert multiplier_cells(hist["gowin"]) == {"MULT18X18": 1}


# -- elaboration-time check -----------------------------------------------------------------------

_OPS = ("__mul__", "__rmul__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__")


def _elaborate_watching(monkeypatch, design):
    hits = []
    for op in _OPS:
        orig = getattr(Value, op)

        def spy(self, other, _orig=orig, _op=op):
            caller = sys._getframe(1)
            path = Path(caller.f_code.co_filename).resolve()
            if ROOT / "hw" in path.parents or path == Path(__file__).resolve():
                hits.append(f"{path.name}:{caller.f_lineno} {_op}")
            return _orig(self, other)

        monkeypatch.setattr(Value, op, spy)
    rtlil.convert(design, name="top")
    monkeypatch.undo()
    return hits


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_no_value_arithmetic_during_elaboration(monkeypatch, design):
    assert _elaborate_watching(monkeypatch, DESIGNS[design]()) == []


def test_elaboration_check_catches_multiplication(monkeypatch):
    hits = _elaborate_watching(monkeypatch, Multiplier())
    assert len(hits) == 1 and hits[0].endswith("__mul__")


# -- source heuristic -----------------------------------------------------------------------------

_HDL_CONSTRUCTORS = {"Signal", "Const", "Mux", "Cat", "Memory", "Array", "C"}


def arithmetic_on_values(source: str) -> list[str]:
    """``*``/``/``/``//``/``%``/``**`` expressions with an operand that mentions an HDL value: a name
    assigned from an HDL constructor, a component or a ``read_port``/``as_value``/``eq`` call, or a
    public attribute of ``self`` (a port). A heuristic: the Yosys and elaboration checks are the
    real ones."""
    tree = ast.parse(source)
    hdl_names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and isinstance(
                node.value, ast.Call):
            f = node.value.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname in _HDL_CONSTRUCTORS or fname in ("read_port", "write_port", "as_value",
                                                        "as_signed", "as_unsigned") \
                    or (fname[:1].isupper() and fname not in ("TernConfig", "Path")):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            hdl_names.add(n.id)

    def mentions_value(expr):
        for n in ast.walk(expr):
            if isinstance(n, ast.Name) and n.id in hdl_names:
                return True
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id == "self" and not n.attr.startswith("_")
                    and n.attr not in ("config", "latency", "dot_latency", "lanes", "width",
                                       "tree_levels", "tree_reg_every")):
                return True
        return False

    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(
                node.op, (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)):
            if mentions_value(node.left) or mentions_value(node.right):
                bad.append(f"line {node.lineno}: {ast.unparse(node)}")
    return bad


def test_heuristic_flags_signal_arithmetic():
    assert arithmetic_on_values("a = Signal(8)\nb = a * 3\n") == ["line 2: a * 3"]
    assert arithmetic_on_values("def f(self):\n    return self.act[0] * w\n") == \
        ["line 2: self.act[0] * w"]
    assert arithmetic_on_values("p = mem.read_port()\nx = p.data % 3\n") == ["line 2: p.data % 3"]
    assert arithmetic_on_values("n = 2 * cfg.rows * cfg.lanes\nk = self._x // 2\n") == []


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "hw" / "rtl").glob("*.py")))
def test_sources_do_not_multiply_values(path):
    src = (ROOT / "hw" / "rtl" / path).read_text()
    assert arithmetic_on_values(src) == [], path
