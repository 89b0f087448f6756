"""``tern board-sim``: a simulated board on a pseudo-terminal, for ``--backend serial --port DEV``.

The board top :class:`hw.rtl.board.TernBoard` (the gateware of the bitstream, UART PHYs, receive FIFO
and host bridge included; only the PLL is left out) is compiled by Verilator with a C++ bridge
(``hw/flows/board_sim.cpp``) that drives the UART ``rx`` pin bit by bit from the bytes the host writes
to the terminal and samples ``tx`` bit by bit back, at ``divisor`` simulated clock cycles per bit.
The first line of output is the terminal's device path; the board serves until interrupted (Ctrl-C
or SIGTERM: exit 0).

The line rate is the simulated one, ``divisor`` cycles per bit (default 4, the fewest the receiver
takes, so a byte is 40 cycles); a terminal has no baud rate of its own, so the host's ``--baud`` does
not matter. ``--baud N --clock-mhz F`` builds the divisor of a board at clock F and rate N instead
(e.g. 37.5 MHz and 115200 baud: 326 cycles per bit, as on the iCEBreaker; much slower to simulate).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sw.cli.common import UsageError, add_config_flags, config_from_args

__all__ = ["add_command", "build_board_sim", "DEFAULT_DIVISOR", "BUILD_OPT"]

#: Simulated clock cycles per UART bit of ``tern board-sim`` (the smallest :class:`UartRx` takes).
DEFAULT_DIVISOR = 4
#: C++ optimization of the board-sim build: ``-O1`` halves the compile time of ``-O2`` (measured 11 s
#: of CPU time instead of 22 s for the 4 x 16 board top) and runs the demo about as fast (10.5 s of
#: simulation instead of 11.9 s); ``-O0`` compiles in 9 s but simulates 6 times slower.
BUILD_OPT = ("OPT_FAST=-O1", "OPT_GLOBAL=-O1", "OPT_SLOW=-O0")


def add_command(sub) -> None:
    b = sub.add_parser("board-sim", help="serve a simulated board (the board top under Verilator) on a "
                                         "pseudo-terminal for --backend serial")
    b.set_defaults(func=_cmd_board_sim)
    b.add_argument("--divisor", type=int, default=None,
                   help=f"simulated clock cycles per UART bit (default {DEFAULT_DIVISOR})")
    b.add_argument("--baud", type=int, default=None,
                   help="with --clock-mhz: the divisor of a board at that clock and UART rate")
    b.add_argument("--clock-mhz", type=float, default=None, help="the board clock for --baud (MHz)")
    add_config_flags(b)


def _divisor(args) -> int:
    from hw.rtl.board import uart_divisor
    if args.baud is not None or args.clock_mhz is not None:
        if args.divisor is not None:
            raise UsageError("tern board-sim: give --divisor or --baud with --clock-mhz, not both")
        if args.baud is None or args.clock_mhz is None:
            raise UsageError("tern board-sim: --baud and --clock-mhz go together")
        try:
            return uart_divisor(args.clock_mhz * 1e6, args.baud)
        except ValueError as e:
            raise UsageError(f"tern board-sim: {e}") from None
    div = DEFAULT_DIVISOR if args.divisor is None else args.divisor
    if div < 4:
        raise UsageError(f"tern board-sim: --divisor must be at least 4, not {div}")
    return div


def build_board_sim(config, divisor: int):
    """The Verilated board top with the pty bridge (a cached build, :func:`build_harness`)."""
    from amaranth.back import verilog

    from hw.flows.verilator_harness import build_harness
    from hw.rtl.board import TernBoard

    v = verilog.convert(TernBoard(config, divisor), name="tern_board", emit_src=False)
    src = Path(__file__).resolve().parents[2] / "hw" / "flows" / "board_sim.cpp"
    c = config
    name = (f"board-r{c.rows}l{c.lanes}a{c.acc_width}{c.weight_format}b{c.bus_bytes}"
            f"d{c.act_depth}.{c.wgt_depth}.{c.out_depth}-div{divisor}")
    return build_harness(v, "tern_board", name, source=src, make_opt=BUILD_OPT)


def _cmd_board_sim(args) -> int:
    import tty

    cfg = config_from_args(args)
    div = _divisor(args)
    print(f"tern board-sim: building the board top ({cfg.rows} x {cfg.lanes}, {div} cycles per UART bit) "
          f"under Verilator ...", file=sys.stderr, flush=True)
    b = build_board_sim(cfg, div)
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    proc = subprocess.Popen([str(b.exe), str(div)], stdin=master, stdout=master)
    os.close(master)   # the bridge holds it; the slave stays open here, so a host may come and go

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(path, flush=True)
    print(f"tern board-sim: serving on {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 0
    finally:
        os.close(slave)
    if code != 0:
        raise OSError(f"tern board-sim: the simulated board exited with status {code}")
    return 0
