"""``tern estimate --model M``: area, energy per token and tokens/s of a model on a configuration.

The model spec (``demo``, a checkpoint folder or a shape preset) is resolved here, from its
configuration alone (:func:`sw.driver.models.model_config`), into the
:class:`hw.estimate.ModelShape` that :func:`hw.estimate.estimate` prices.
"""

from __future__ import annotations

import math

from sw.cli.common import (Progress, UsageError, add_clock_flag, add_config_flags, add_json_flag, add_quiet_flag,
                           check_clock, check_output_path, check_seed, config_from_args, console, emit)

__all__ = ["add_command", "model_shape"]


def model_shape(spec: str):
    """The :class:`hw.estimate.ModelShape` of ``demo``, a preset name or a checkpoint folder (no
    weights are read); a bad spec or checkpoint configuration raises :class:`hw.estimate.EstimateError`."""
    from hw.estimate import EstimateError, ModelShape
    from sw.driver.models import PRESET_NAMES, ModelSpecError, model_config
    from sw.model.checkpoint import CheckpointError
    from sw.model.presets import layer_shapes
    try:
        mc = model_config(spec)
    except ModelSpecError as e:
        raise EstimateError(str(e)) from None
    except CheckpointError as e:
        raise EstimateError(f"model {spec!r}: {str(e).splitlines()[0]}") from None
    projections = layer_shapes(mc)
    return ModelShape(name=spec.lower() if spec.lower() in PRESET_NAMES else spec, projections=projections,
                      layers=mc.num_hidden_layers, vocab_size=mc.vocab_size, hidden_size=mc.hidden_size,
                      num_heads=mc.num_attention_heads, num_kv_heads=mc.num_key_value_heads,
                      head_dim=mc.head_dim, intermediate_size=mc.intermediate_size,
                      sub_norms=mc.sub_norms)


def add_command(sub) -> None:
    from hw.estimate import DEFAULT_MEMORY, MEMORIES, NODES
    from hw.estimate.model import DEFAULT_CONTEXT
    e = sub.add_parser("estimate", help="area, energy per token and tokens/s for a model on a configuration")
    e.set_defaults(func=_cmd_estimate)
    e.add_argument("--model", required=True,
                   help="demo, a checkpoint folder, or a shape preset (2b4t, 700m, 1.3b, 3b)")
    e.add_argument("--node", default="7nm", help=f"process node: {', '.join(NODES)} (default 7nm)")
    add_clock_flag(e, "core clock for tokens/s")
    e.add_argument("--tokens", type=int, default=1,
                   help="tokens per layer pass: 1 = decode (default), T > 1 = a T-token prefill")
    e.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                   help=f"positions already in the KV cache (default {DEFAULT_CONTEXT})")
    e.add_argument("--memory", default=DEFAULT_MEMORY,
                   help=f"off-chip memory: {'|'.join(MEMORIES)} (default {DEFAULT_MEMORY})")
    e.add_argument("--channels", type=int, default=1,
                   help="channels (DDR, LPDDR) or stacks (HBM) of that memory (default 1)")
    e.add_argument("--dram-pj-per-bit", type=float, default=None,
                   help="override the memory's energy per bit (pJ)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random activations and weights")
    e.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw the energy breakdown and a roofline of the projections into FILE.png")
    add_json_flag(e)
    add_quiet_flag(e)
    add_config_flags(e)


def _cmd_estimate(args) -> int:
    from hw.estimate import MEMORIES, NODES
    from hw.estimate.model import MAX_CONTEXT, MAX_TOKENS

    cmd = "estimate"
    if args.node not in NODES:
        raise UsageError(f"tern estimate: unknown --node {args.node!r} (choose from {', '.join(NODES)})")
    check_clock(cmd, args.clock_mhz)
    if not 1 <= args.tokens <= MAX_TOKENS:
        raise UsageError(f"tern estimate: --tokens must be between 1 and {MAX_TOKENS}, not {args.tokens}")
    if not 0 <= args.context <= MAX_CONTEXT:
        raise UsageError(f"tern estimate: --context must be between 0 and {MAX_CONTEXT}, not {args.context}")
    if args.memory.lower() not in MEMORIES:
        raise UsageError(f"tern estimate: unknown --memory {args.memory!r} (choose from {', '.join(MEMORIES)})")
    if not 1 <= args.channels <= 1024:
        raise UsageError(f"tern estimate: --channels must be between 1 and 1024, not {args.channels}")
    if args.dram_pj_per_bit is not None and (not math.isfinite(args.dram_pj_per_bit)
                                             or not 0 <= args.dram_pj_per_bit <= 1e6):
        raise UsageError(f"tern estimate: --dram-pj-per-bit must be in [0, 1e6], not {args.dram_pj_per_bit:g}")
    check_seed(cmd, args.seed)
    plot = None if args.plot is None else check_output_path(cmd, "--plot", args.plot, ".png")
    cfg = config_from_args(args)
    with Progress(cmd, f"pricing {args.model}{' and drawing ' + str(plot) if plot else ''}", quiet=args.quiet):
        r = _estimate(args, cfg, plot)
    if args.json:
        emit(args, r, None)
    else:
        _print(r)
        if plot is not None:
            print(f"plot: {plot}")
    return 0


def _estimate(args, cfg, plot) -> dict:
    from hw.estimate import estimate
    try:
        r = estimate(model_shape(args.model), cfg, node=args.node, clock_mhz=args.clock_mhz,
                     tokens=args.tokens, context=args.context, memory=args.memory.lower(),
                     channels=args.channels, dram_pj_per_bit=args.dram_pj_per_bit, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"tern estimate: {str(e).splitlines()[0]}") from None
    if plot is not None:
        from hw.estimate.model import roofline_points
        from hw.estimate.plot import write_png
        try:
            roof = roofline_points(model_shape(args.model), cfg, clock_mhz=args.clock_mhz, tokens=args.tokens,
                                   memory=args.memory.lower(), channels=args.channels, seed=args.seed)
        except ValueError as e:
            raise UsageError(f"tern estimate: {str(e).splitlines()[0]}") from None
        try:
            write_png(plot, r, roof)
        except OSError as e:
            raise UsageError(f"tern estimate: cannot write --plot {args.plot!r}: {e.strerror or e}") from None
        r["plot"] = str(plot)
    return r


def _fmt_j(j: float) -> str:
    for unit, scale in (("J", 1), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(j) >= scale:
            return f"{j / scale:.3f} {unit}"
    return f"{j:.3e} J"


def _print(r: dict):
    from rich.table import Table

    con = console()
    mode = "decode" if r["tokens"] == 1 else f"prefill of {r['tokens']} tokens"
    m = r["memory"]
    total = r["energy_per_token_j"]
    head = (f"tern estimate {r['model']} at {r['node']}, {r['clock_mhz']:g} MHz ({mode}, context "
            f"{r['context']}), {m['name']} x{m['channels']} ({m['pj_per_bit']:g} pJ/bit)")
    p = Table(title=f"{head}: energy per token by part")
    p.add_column("part")
    p.add_column("energy / token", justify="right")
    p.add_column("share", justify="right")
    for k, v in r["parts"].items():
        p.add_row(k, _fmt_j(v), f"{100 * v / total:.2f}%")
    p.add_row("[bold]total[/bold]", f"[bold]{_fmt_j(total)}[/bold]", "100%")
    con.print(p)
    t = Table(title="energy per token by component")
    t.add_column("component")
    t.add_column("energy / token", justify="right")
    t.add_column("share", justify="right")
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
    ts = r["time_per_token_s"]
    con.print(f"energy/token {_fmt_j(total)} (memory traffic {100 * r['memory_fraction']:.1f}%), "
              f"{r['tokens_per_s']:.3f} tokens/s (core {1e3 * ts['core']:.1f} ms"
              f"{', memory-bound' if r['memory_bound'] else ''}, host memory time {1e3 * ts['host']:.1f} ms; "
              f"core alone {r['core_tokens_per_s']:.3f} tokens/s), "
              f"{r['bytes_per_token']['total'] / 1e6:.1f} MB moved per token, "
              f"area {r['area_mm2']:.3f} mm^2, average power {r['average_power_w']:.3f} W")
    d = r["dram"]
    con.print(f"memory: {m['unit']} x {m['channels']}, {m['bandwidth_gb_s']:.1f} GB/s peak, "
              f"{m['sustainable_gb_s']:.2f} GB/s sustainable (memory model, sequential reads); weight stream "
              f"{r['weight_stream_gb_s']:.3f} GB/s = {100 * r['bus_efficiency']:.2f}% of peak (bus_efficiency), "
              f"{100 * r['weight_stream_efficiency']:.2f}% of min(core bus, sustainable); "
              f"{d['row_misses']:,} row misses, {d['refreshes']:,} refreshes per layer pass, "
              f"{100 * (d['slowdown_vs_ideal_bus'] - 1):.2f}% slower than an ideal bus; "
              f"{m['pj_per_bit']:g} pJ/bit ({m['pj_per_bit_kind']}: {m['pj_per_bit_source']})")
    con.print(f"LM head runs on the {r['host']['lm_head_runs_on']} ({r['host']['lm_head_params']:,} bf16 "
              f"parameters); {r['host']['note']}")
