"""``tern estimate --model M``: area, energy per token and tokens/s of a model on a configuration.

Registered by :func:`sw.cli.build_parser` through :func:`add_estimate_command`. Errors follow
``sw.cli``'s contract: a ``ValueError`` (bad model, node, clock, tokens, configuration) is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import math

__all__ = ["add_estimate_command"]

from hw.config import DEFAULT_CLOCK_MHZ


class EstimateUsageError(ValueError):
    """Bad command-line input for ``tern estimate`` (one line, exit code 2)."""


def add_estimate_command(sub, add_config_flags, config_from_args, emit):
    """Adds the ``estimate`` subcommand to ``sub`` (an argparse subparsers object)."""
    from hw.estimate.energy import NODES
    e = sub.add_parser("estimate", help="area, energy per token and tokens/s for a model on a configuration")
    e.add_argument("--model", required=True,
                   help="demo, a checkpoint folder, or a shape preset (2b4t, 700m, 1.3b, 3b)")
    e.add_argument("--node", default="7nm", help=f"process node: {', '.join(NODES)} (default 7nm)")
    e.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"core clock for tokens/s (default {DEFAULT_CLOCK_MHZ:g})")
    e.add_argument("--tokens", type=int, default=1,
                   help="tokens per layer pass: 1 = decode (default), T > 1 = a T-token prefill")
    e.add_argument("--dram-pj-per-bit", type=float, default=None,
                   help="off-chip DRAM energy per bit (default: Horowitz 2014, 1.3 nJ / 64 bit)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random activations and weights")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flags(e)
    e.set_defaults(func=lambda args: _cmd_estimate(args, config_from_args, emit))


def _cmd_estimate(args, config_from_args, emit) -> int:
    from hw.estimate.energy import NODES
    from hw.estimate.model import MAX_TOKENS, estimate

    if args.node not in NODES:
        raise EstimateUsageError(f"tern estimate: unknown --node {args.node!r} (choose from {', '.join(NODES)})")
    if not math.isfinite(args.clock_mhz) or not 0 < args.clock_mhz <= 100_000:
        raise EstimateUsageError(f"tern estimate: --clock-mhz must be in (0, 100000], not {args.clock_mhz:g}")
    if not 1 <= args.tokens <= MAX_TOKENS:
        raise EstimateUsageError(f"tern estimate: --tokens must be between 1 and {MAX_TOKENS}, not {args.tokens}")
    if args.dram_pj_per_bit is not None and (not math.isfinite(args.dram_pj_per_bit)
                                             or not 0 <= args.dram_pj_per_bit <= 1e6):
        raise EstimateUsageError(f"tern estimate: --dram-pj-per-bit must be in [0, 1e6], "
                                 f"not {args.dram_pj_per_bit:g}")
    if not 0 <= args.seed < 2**63:
        raise EstimateUsageError(f"tern estimate: --seed must be between 0 and 2**63-1, not {args.seed}")
    cfg = config_from_args(args)
    try:
        r = estimate(args.model, cfg, node=args.node, clock_mhz=args.clock_mhz, tokens=args.tokens,
                     dram_pj_per_bit=args.dram_pj_per_bit, seed=args.seed)
    except ValueError as e:
        raise EstimateUsageError(f"tern estimate: {str(e).splitlines()[0]}") from None
    if args.json:
        emit(args, r, None)
    else:
        _print(r)
    return 0


def _fmt_j(j: float) -> str:
    for unit, scale in (("J", 1), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(j) >= scale:
            return f"{j / scale:.3f} {unit}"
    return f"{j:.3e} J"


def _print(r: dict):
    from rich.console import Console
    from rich.table import Table

    con = Console()
    mode = "decode" if r["tokens"] == 1 else f"prefill of {r['tokens']} tokens"
    t = Table(title=f"tern estimate {r['model']} at {r['node']}, {r['clock_mhz']:g} MHz ({mode}): "
                    f"energy per token by component")
    t.add_column("component")
    t.add_column("energy / token", justify="right")
    t.add_column("share", justify="right")
    total = r["energy_per_token_j"]
    for k, v in sorted(r["breakdown"].items(), key=lambda kv: -kv[1]):
        t.add_row(k, _fmt_j(v), f"{100 * v / total:.2f}%")
    t.add_row("[bold]total[/bold]", f"[bold]{_fmt_j(total)}[/bold]", "100%")
    con.print(t)
    a = Table(title=f"area at {r['node']} (raw cell + SRAM macro area)")
    a.add_column("component")
    a.add_column("mm^2", justify="right")
    for k, v in r["area_breakdown_mm2"].items():
        a.add_row(k, f"{v:.4f}")
    a.add_row("[bold]total[/bold]", f"[bold]{r['area_mm2']:.4f}[/bold]")
    con.print(a)
    con.print(f"energy/token {_fmt_j(total)} (DRAM {100 * r['dram_fraction']:.1f}%, core "
              f"{_fmt_j(r['core_energy_per_token_j'])}), {r['tokens_per_s']:.3f} tokens/s "
              f"({r['cycles_per_token']:.0f} cycles/token, weight bus {100 * r['bus_utilization']:.2f}% busy), "
              f"area {r['area_mm2']:.3f} mm^2, average power {r['average_power_w']:.3f} W")
    con.print(f"not included (host): {r['host']['note']}; LM head {r['host']['lm_head_params']:,} parameters")
