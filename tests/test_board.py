"""hw.rtl.board: the UART host link of the board top, simulated bit by bit on the serial lines.

The testbench's UART (send/receive of 8N1 frames) and its framing are written here independently of
the RTL; the expected results come from hw.program's integer reference (int64 numpy)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import TernConfig
from hw.program import linear_program, outputs_to_matrix, reference_matmul
from hw.rtl.board import HostBridge, TernBoard, UartRx, uart_divisor

DIV = 4  # clock cycles per UART bit (the smallest the receiver supports): keeps the sim short


def _frames(cfg, prog):
    """Host -> board bytes of ``prog`` (framing of docs/FPGA.md), written independently of the RTL:
    each instruction followed by the data it consumes (LOAD_ACT: its activation words; MATMUL: the
    ``k_words * beats_per_word`` weight beats of its words)."""
    from hw.isa import Op
    out = bytearray()
    acts, beats = iter(prog.act_beats), iter(prog.wgt_beats)
    n_beats = 0
    for ins in prog.instrs:
        out += b"I" + int(ins.word).to_bytes(8, "little")
        if ins.op == Op.LOAD_ACT:
            for _ in range(ins.b):
                out += b"A" + bytes(int(x) & 0xFF for x in next(acts))
        elif ins.op == Op.MATMUL:
            for _ in range(ins.b * cfg.beats_per_word):
                out += b"W" + bytes(int(x) for x in next(beats))
                n_beats += 1
    assert n_beats == len(prog.wgt_beats)
    return bytes(out)


def _run(cfg, tx_bytes, n_rx, *, max_cycles):
    """Send ``tx_bytes`` on ``rx`` (8N1, DIV cycles per bit) and collect ``n_rx`` bytes from ``tx``."""
    dut = TernBoard(cfg, DIV, rx_fifo_depth=512)
    got = []

    async def host_send(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for byte in tx_bytes:
            bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
            for b in bits:
                ctx.set(dut.rx, b)
                await ctx.tick().repeat(DIV)

    async def host_recv(ctx):
        for _ in range(max_cycles):
            if len(got) == n_rx:
                return
            await ctx.tick()
            if ctx.get(dut.tx) == 0:  # start bit: sample mid-bit
                await ctx.tick().repeat(DIV // 2)
                assert ctx.get(dut.tx) == 0
                v = 0
                for i in range(8):
                    await ctx.tick().repeat(DIV)
                    v |= ctx.get(dut.tx) << i
                await ctx.tick().repeat(DIV)
                assert ctx.get(dut.tx) == 1, "stop bit"
                got.append(v)
        raise AssertionError(f"timeout: received {len(got)} of {n_rx} bytes")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host_send, background=True)
    sim.add_testbench(host_recv)
    sim.run()
    return bytes(got)


def _parse_results(cfg, data, n_vectors):
    rb = -(-cfg.acc_width // 8)
    vecs, pos = [], 0
    for _ in range(n_vectors):
        assert data[pos] == ord("R"), f"result header at byte {pos}: {data[pos]!r}"
        pos += 1
        row = []
        for _ in range(cfg.rows):
            row.append(int.from_bytes(data[pos:pos + rb], "little", signed=True))
            pos += rb
        vecs.append(row)
    return np.array(vecs, dtype=np.int64), data[pos:]


@pytest.mark.parametrize("weight_format", ["2bit", "base3"])
def test_uart_matmul_matches_reference(weight_format):
    # base3 with a 1-byte bus: 8 trits per word take 2 beats (the second partly padding)
    cfg = TernConfig(rows=2, lanes=4, acc_width=13, weight_format=weight_format,
                     bus_bytes=2 if weight_format == "2bit" else 1,
                     act_depth=16, wgt_depth=4, out_depth=4, tree_reg_every=1)
    rng = np.random.default_rng(3 if weight_format == "2bit" else 4)
    T, N, K = 2, 6, 8
    q = rng.integers(-128, 128, size=(T, K))
    q[0, :] = -128  # extreme values exercise the sign extension to whole bytes
    w = rng.integers(-1, 2, size=(N, K))
    w[0, :] = 1
    prog = linear_program(cfg, q, w)
    n_vec = len(prog.expected)
    # payload, then a status request: its answer comes after every result (the core is idle then)
    data = _frames(cfg, prog) + b"S"
    rb = -(-cfg.acc_width // 8)
    got = _run(cfg, data, n_vec * (1 + cfg.rows * rb) + 2, max_cycles=20000)
    vecs, rest = _parse_results(cfg, got, n_vec)
    d = outputs_to_matrix(cfg, vecs, T, N)
    assert np.array_equal(d, reference_matmul(q, w))
    assert d[0, 0] == -128 * K
    assert rest[0] == ord("S")
    assert rest[1] == 0b100  # idle, no error, no overflow, no bad header


def test_status_flags_bad_header_and_core_error():
    cfg = TernConfig(rows=1, lanes=4, acc_width=13, bus_bytes=1, act_depth=16, wgt_depth=4,
                     out_depth=2)
    # an unknown header byte, then a bad instruction (LOAD_ACT of 0 words: error bit 0), then status
    from hw.isa import Instr, Op
    from hw.program import instr_is_valid
    bad = Instr(Op.LOAD_ACT, 0, 0)
    assert not instr_is_valid(cfg, bad)
    word = bad.word
    data = b"\x00" + b"I" + int(word).to_bytes(8, "little") + b"S"
    got = _run(cfg, data, 2, max_cycles=3000)
    assert got[0] == ord("S")
    assert got[1] == 0b10101  # bad header (bit 4), idle (bit 2), error bit 0


def test_constructor_validation():
    cfg = TernConfig(rows=1, lanes=4, acc_width=13, bus_bytes=1, act_depth=16, wgt_depth=4)
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)
    with pytest.raises(TypeError, match="config"):
        HostBridge(None)
    with pytest.raises(ValueError, match="rx_fifo_depth"):
        TernBoard(cfg, 8, rx_fifo_depth=1)
    assert uart_divisor(12e6, 115200) == 104
    with pytest.raises(ValueError, match="too high"):
        uart_divisor(12e6, 12_000_000)
    assert HostBridge.frame_bytes_of(cfg) == {"instr": 8, "act": 4, "wgt": 1, "result": 2}


# -- the platform top: PLL clock generation ---------------------------------------------------------

TINY = TernConfig(rows=1, lanes=4, acc_width=13, bus_bytes=1, act_depth=16, wgt_depth=4, out_depth=2)


def _prepared(board, **kw):
    from hw.flows.boards import BOARDS
    from hw.rtl.board import BoardTop
    plan = BOARDS[board].make_platform().prepare(BoardTop(TINY, **kw), name="top")
    return plan.files


@pytest.mark.parametrize("board, cell, constraint", [
    ("icebreaker", "SB_PLL40_PAD", ("top.pcf", "set_frequency clockgen.pll_clk 37.5")),
    ("ulx3s-85f", "EHXPLLL", ("top.lpf", 'FREQUENCY NET "clockgen.pll_clk" 80000000.0 HZ')),
    ("tang-primer-20k", "rPLL", None),
])
def test_board_top_clocks_the_core_from_the_pll(board, cell, constraint):
    """The board top with the board's PLL: one PLL cell with the solved dividers, the core's domain
    driven by its output, the UART divisor from the PLL clock, the clock constraint on the PLL net."""
    from hw.flows.boards import board_pll
    pll = board_pll(board)
    files = _prepared(board, pll=pll)
    il = files["top.il"]
    assert il.count(f"cell \\{cell} ") == 1
    widths = {"DIVR": 4, "DIVF": 7, "DIVQ": 3, "FILTER_RANGE": 3}  # iCE40: bit-vector parameters
    for name, value in pll.params.items():
        text = f"{widths[name]}'{value:0{widths[name]}b}" if name in widths else str(value)
        assert f"parameter \\{name} {text}\n" in il, (name, text)
    if constraint:
        assert constraint[1] in files[constraint[0]]
    # the UART divisor is the PLL clock over the baud rate (e.g. 37.5 MHz / 115200 = 326)
    assert uart_divisor(pll.f_out_mhz * 1e6, 115200) == round(pll.f_out_mhz * 1e6 / 115200)


def test_board_top_without_pll_runs_at_the_oscillator():
    """pll=None (the path a simulation of the board top takes): no PLL cell, the platform's own
    clock at the oscillator frequency."""
    files = _prepared("icebreaker")
    assert "SB_PLL40" not in files["top.il"]
    assert "set_frequency clk12_0__io 12.0" in files["top.pcf"]
    with pytest.raises(TypeError, match="pll must be a PLLSetting"):
        from hw.rtl.board import BoardTop
        BoardTop(TINY, pll=50.0)
