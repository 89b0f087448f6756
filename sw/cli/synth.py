"""``tern synth --board B``: a bitstream of the board top for an open-source FPGA board
(:func:`hw.flows.boards.build_board`); ``tern synth --list`` lists the boards."""

from __future__ import annotations

from sw.cli.common import UsageError, add_config_flags, add_json_flag, config_from_args, emit

__all__ = ["add_command"]


def add_command(sub) -> None:
    from hw.flows.boards import BOARDS
    s = sub.add_parser("synth", help="build a bitstream for an open-source FPGA board")
    s.set_defaults(func=_cmd_synth)
    s.add_argument("--board", help=f"board: {', '.join(BOARDS)}")
    s.add_argument("--list", action="store_true", help="list the boards and exit")
    s.add_argument("--output", metavar="DIR",
                   help="output folder (default build/synth/<board>-<config hash>)")
    s.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    s.add_argument("--timeout", type=float, default=4 * 3600, metavar="SECONDS",
                   help="give up on a build after this long (default 14400; exit 1)")
    s.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="place N times (seeds SEED..SEED+N-1) and report min/median/max Fmax "
                        "(default 1; the bitstream is the first seed's)")
    add_json_flag(s)
    add_config_flags(s)


def _cmd_synth(args) -> int:
    import sys
    from hw.flows.boards import BOARDS, BuildError, build_board, default_config
    if args.list:
        boards = {n: {"device": b.device, "family": b.family, "description": b.description,
                      "core_clock_mhz": b.core_clock_mhz, "default_config": b.default_config}
                  for n, b in BOARDS.items()}
        text = "\n".join(f"{n:16s} {b.description}; core clock {b.core_clock_mhz:g} MHz (PLL)"
                          for n, b in BOARDS.items())
        emit(args, {"boards": boards}, text)
        return 0
    if not args.board:
        raise UsageError("tern synth: --board is required (tern synth --list shows the boards)")
    # --config FILE.toml, else the board's default configuration; individual flags override either
    config = config_from_args(args, defaults=default_config(args.board))
    if not args.timeout > 0:
        raise UsageError(f"tern synth: --timeout must be a positive number of seconds, not {args.timeout:g}")
    try:
        r = build_board(args.board, config, args.output, baud=args.baud, seed=args.seed,
                        seeds=args.seeds, timeout=args.timeout)
    except BuildError as e:  # a tool failed (not bad input): its message and log tail, exit 1
        print(f"tern synth: {e}", file=sys.stderr)
        return 1
    seeds = (f" (seeds {r['seed']}..{r['seed'] + args.seeds - 1}: min {r['fmax_min_mhz']}, "
             f"median {r['fmax_median_mhz']}, max {r['fmax_max_mhz']} MHz)" if args.seeds > 1 else "")
    text = (f"tern synth: {r['board']} ({r['device']}): {r['luts']}/{r['luts_available']} LUTs, "
            f"{r['ffs']} FFs, {r['brams']}/{r['brams_available']} BRAMs, {r['dsps']} DSPs; "
            f"PE array {r['pe_luts']} LUT4 = {r['luts_per_lane']} per lane; "
            f"Fmax {r['fmax_mhz']} MHz{seeds} at a {r['clock_mhz']:g} MHz PLL clock: timing "
            f"{'met' if r['timing_met'] else 'FAILED'}; {r['build_s']} s\nbitstream: {r['bitstream']}")
    emit(args, r, text)
    return 0 if r["timing_met"] else 1
