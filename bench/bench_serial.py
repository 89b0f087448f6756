"""The UART host link's throughput: the demo model through ``--backend serial`` against ``tern board-sim``.

For each UART divisor (simulated clock cycles per bit; by default 4, the fewest the receiver takes,
and the divisors of 921600 and 115200 baud at the iCEBreaker's core clock) the board top is
built and served by ``tern board-sim`` and ``tern demo`` runs through it. Measured per run: the bytes
the simulated board's pins received and sent, the board's cycles (from its counters) and the tokens
it generated; ``tokens_per_s`` is measured in board time (tokens / (board cycles / clock)). Beside it,
computed from the measured bytes alone: the link time at that rate (10 bits per byte) and its
tokens/s, and what faster links would give; hw.sim's cycles for the same programs give the core's
own rate. The tokens are checked equal to the reference model's. Prints one table; ``--json`` one
JSON object.

    python bench/bench_serial.py [--quick] [--json] [--divisor N ...] [--problems N]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from hw.config import TernConfig
from hw.flows.boards import BOARDS
from hw.rtl.board import uart_divisor
from sw.cli.common import bench_parser

#: The iCEBreaker's array and buffers (docs/FPGA.md) and its core clock
BOARD = TernConfig(rows=4, lanes=16, acc_width=24, bus_bytes=4, act_depth=256, wgt_depth=16, out_depth=8)
CLOCK_MHZ = BOARDS["icebreaker"].core_clock_mhz
#: The default divisors: the receiver's minimum, then 921600 and 115200 baud at CLOCK_MHZ
DIVISORS = (4, uart_divisor(CLOCK_MHZ * 1e6, 921600), uart_divisor(CLOCK_MHZ * 1e6, 115200))
#: Faster links, computed from the measured bytes (bits per byte of their framing)
LINKS = (("UART 3 Mbaud", 3e6, 10), ("UART 12 Mbaud (FT2232H maximum)", 12e6, 10),
         ("USB 2.0 FIFO, 40 MB/s (FT2232H 245 synchronous mode)", 320e6, 8))


def _flags(cfg: TernConfig) -> list[str]:
    return ["--rows", str(cfg.rows), "--lanes", str(cfg.lanes), "--acc-width", str(cfg.acc_width),
            "--bus-bytes", str(cfg.bus_bytes), "--act-depth", str(cfg.act_depth), "--wgt-depth",
            str(cfg.wgt_depth), "--out-depth", str(cfg.out_depth), "--weight-format", cfg.weight_format]


def measure(divisor: int, problems: int, reference: list) -> dict:
    """One demo run through ``tern board-sim --divisor divisor``."""
    from hw.backends import serial
    from sw.driver.demo import run_demo
    sim = subprocess.Popen([sys.executable, "-m", "sw.cli", "board-sim", *_flags(BOARD), "--divisor",
                            str(divisor)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = sim.stdout.readline().strip()
        if not port.startswith("/dev/"):
            raise RuntimeError(f"tern board-sim did not start: {sim.communicate()[1][-2000:]}")
        serial.configure(port, timeout=60)
        t0 = time.perf_counter()
        r = run_demo(n_problems=problems, quiet=True, backend="serial", config=BOARD, clock_mhz=CLOCK_MHZ)
        wall = time.perf_counter() - t0
    finally:
        sim.terminate()
        err = sim.communicate(timeout=60)[1]
    m = re.search(r"board-sim: (\d+) cycles, (\d+) bytes in, (\d+) bytes out", err)
    if m is None:
        raise RuntimeError(f"tern board-sim gave no figures: {err[-2000:]}")
    sim_cycles, b_in, b_out = (int(x) for x in m.groups())
    n_tok = sum(len(t) for t in r["tokens"])
    baud = CLOCK_MHZ * 1e6 / divisor
    return {"divisor": divisor, "baud": round(baud), "problems": problems, "tokens": n_tok,
            "tokens_equal_reference": r["tokens"] == reference, "bytes_in": b_in, "bytes_out": b_out,
            "bytes_in_per_token": b_in / n_tok, "bytes_out_per_token": b_out / n_tok,
            "board_cycles": r["cycles"], "simulated_cycles": sim_cycles,
            "tokens_per_s": r["tokens_per_s"],
            # computed from the measured bytes: the host -> board bytes at 10 bits per byte
            "computed_tokens_per_s": n_tok / (b_in * 10 / baud),
            "wall_s": round(wall, 1)}


def main(argv=None):
    p = bench_parser(__doc__.splitlines()[0], quick_help="divisor 4 only")
    p.add_argument("--divisor", type=int, action="append",
                   help="UART divisor (repeatable; default %s)" % " ".join(map(str, DIVISORS)))
    p.add_argument("--problems", type=int, default=2, help="demo problems (default 2)")
    args = p.parse_args(argv)
    divisors = args.divisor or ([4] if args.quick else list(DIVISORS))
    from sw.driver.demo import run_demo
    ref = run_demo(n_problems=args.problems, quiet=True)["tokens"]
    core = run_demo(n_problems=args.problems, quiet=True, backend="sim", config=BOARD, clock_mhz=CLOCK_MHZ)
    rows = [measure(d, args.problems, ref) for d in divisors]
    b_in = rows[0]["bytes_in"]
    n_tok = rows[0]["tokens"]
    links = [{"link": name, "bits_per_s": rate, "tokens_per_s": n_tok / (b_in * bits / rate)}
             for name, rate, bits in LINKS]
    out = {"config": BOARD.to_dict(), "clock_mhz": CLOCK_MHZ, "runs": rows, "computed_links": links,
           "core_tokens_per_s": core["tokens_per_s"], "core_cycles": core["cycles"]}
    if args.json:
        print(json.dumps(out))
        return 0 if all(r["tokens_equal_reference"] for r in rows) else 1
    print(f"demo, {args.problems} problems, {BOARD.rows} x {BOARD.lanes} at {CLOCK_MHZ} MHz through tern board-sim")
    print(f"{'divisor':>7} {'baud':>9} {'tokens':>6} {'B in/token':>10} {'B out/token':>11} {'board cycles':>13} "
          f"{'tokens/s':>9} {'computed':>9} {'ratio':>6} {'equal':>5} {'wall s':>7}")
    for r in rows:
        print(f"{r['divisor']:>7} {r['baud']:>9} {r['tokens']:>6} {r['bytes_in_per_token']:>10.0f} "
              f"{r['bytes_out_per_token']:>11.0f} {r['board_cycles']:>13} {r['tokens_per_s']:>9.3f} "
              f"{r['computed_tokens_per_s']:>9.3f} {r['tokens_per_s'] / r['computed_tokens_per_s']:>6.3f} "
              f"{str(r['tokens_equal_reference']):>5} {r['wall_s']:>7}")
    print("computed from the measured host -> board bytes:")
    for x in links:
        print(f"  {x['link']:<55} {x['tokens_per_s']:>9.2f} tokens/s")
    print(f"  {'the core alone (hw.sim, ideal streams)':<55} {core['tokens_per_s']:>9.2f} tokens/s "
          f"({core['cycles']} cycles)")
    return 0 if all(r["tokens_equal_reference"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
