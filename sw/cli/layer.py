"""``tern layer``: one transformer layer of a model through the accelerator, checked bit-exact
(``torch.equal``) against the reference layer (:func:`sw.driver.models.layer_check`)."""

from __future__ import annotations

import time
from pathlib import Path

from hw.fileio import atomic_write
from sw.cli.common import (Progress, UsageError, add_accelerator_flags, add_quiet_flag, check_accelerator_args,
                           check_output_path, config_from_args, console, device_failure, emit)
from sw.cli.run import MODEL_HELP, device_figures, wall_line

__all__ = ["add_command", "MAX_LAYER_TOKENS", "MAX_REPEAT", "save_npz_atomic"]

#: Hard upper bound of ``--tokens`` (a model's max_position_embeddings usually bounds it first).
MAX_LAYER_TOKENS = 65_536

#: Hard upper bound of ``--repeat``.
MAX_REPEAT = 10_000

#: Figures of a generation that a single layer pass does not have.
_GENERATION_FIGURES = ("tokens_per_s", "decode_tokens_per_s", "cycles_per_token", "decode_cycles_per_token",
                       "generated_tokens", "prefill_cycles", "decode_cycles")


def add_command(sub) -> None:
    la = sub.add_parser("layer", help="one transformer layer through the accelerator vs the reference")
    la.set_defaults(func=_cmd_layer)
    la.add_argument("--model", required=True, help=MODEL_HELP)
    la.add_argument("--layer", type=int, required=True, help="layer index")
    la.add_argument("--tokens", type=int, default=1, help="tokens (sequence positions) of the input (default 1)")
    la.add_argument("--seed", type=int, default=0,
                    help="seed of the random input (and of a preset's random weights) (default 0)")
    la.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run the layer N times on the same compiled weights, each run checked against the "
                         "reference (run once); the JSON gives device_wall_s_runs (default 1)")
    la.add_argument("--save", metavar="OUT.npz", help="write arrays input, output, reference_output")
    add_accelerator_flags(la)
    add_quiet_flag(la)


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write ``arrays`` to ``path`` (.npz) through a temporary file in the same folder and
    ``os.replace``: the file appears complete or not at all."""
    import numpy as np

    def write(tmp: Path):
        with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)

    atomic_write(path, write)


def _cmd_layer(args) -> int:
    t_start = time.perf_counter()   # host_wall_s: from here (arguments parsed) to the report
    from sw.driver.models import layer_check, layer_input, load_layer, num_layers
    from sw.driver.report import PROJECTIONS, breakdown_table, summary_lines
    from sw.driver.runtime import Accelerator, DeviceError

    cmd = "layer"
    check_accelerator_args(cmd, args)
    save = None if args.save is None else check_output_path(cmd, "--save", args.save, ".npz")
    if not 1 <= args.tokens <= MAX_LAYER_TOKENS:
        raise UsageError(f"tern layer: --tokens must be between 1 and {MAX_LAYER_TOKENS}, not {args.tokens}")
    if not 1 <= args.repeat <= MAX_REPEAT:
        raise UsageError(f"tern layer: --repeat must be between 1 and {MAX_REPEAT}, not {args.repeat}")
    cfg = config_from_args(args)
    n_layers = num_layers(args.model)
    if not 0 <= args.layer < n_layers:
        raise UsageError(f"tern layer: --layer {args.layer} is out of range: model {args.model!r} has "
                         f"layers 0..{n_layers - 1}")
    layer, mc = load_layer(args.model, args.layer, seed=args.seed)
    if args.tokens > mc.max_position_embeddings:
        raise UsageError(f"tern layer: --tokens {args.tokens} exceeds the model's "
                         f"max_position_embeddings={mc.max_position_embeddings}")
    x = layer_input(mc, args.tokens, args.seed)
    acc = Accelerator(cfg, args.backend, clock_mhz=args.clock_mhz)
    runs = f", {args.repeat} runs" if args.repeat > 1 else ""
    try:
        with Progress(cmd, f"{args.backend}, layer {args.layer}{runs}", len(PROJECTIONS) * args.repeat,
                      unit="projection calls", quiet=args.quiet) as bar:
            acc.on_call = lambda rec: bar.advance()
            chk = layer_check(acc, layer, x, repeat=args.repeat)
    except (DeviceError, RuntimeError) as e:
        return device_failure(cmd, e)
    stats = acc.summary(chk.runs[-1])   # the figures of the last run
    runs = [acc.summary(r) for r in chk.runs]
    diff = max(float((o - chk.reference_output).abs().max()) for o in chk.outputs)
    result = {"model": args.model, "layer": args.layer, "tokens": args.tokens, "backend": args.backend,
              "seed": args.seed, "bit_exact": chk.bit_exact, "max_abs_diff": diff,
              **device_figures(stats, leave_out=_GENERATION_FIGURES),
              "layer_tokens_per_s": args.tokens / stats["device_seconds"] if stats["cycles"] else None,
              "repeat": args.repeat, "bit_exact_runs": chk.bit_exact_runs,
              "cycles_runs": [r["cycles"] for r in runs],
              "device_wall_s_runs": [r["device_wall_s"] for r in runs],
              "layer_wall_s_runs": list(chk.run_wall_s),
              "weight_cache": {"hits": acc.cache.hits, "misses": acc.cache.misses},
              "config": cfg.to_dict()}
    if save is not None:
        save_npz_atomic(save, input=chk.input.numpy(), output=chk.output.numpy(),
                        reference_output=chk.reference_output.numpy())
        result["saved"] = str(save)
    result["host_wall_s"] = time.perf_counter() - t_start
    if args.json:
        emit(args, result, None)
    else:
        con = console()
        title = f"tern layer {args.model} #{args.layer}, {args.tokens} tokens on {args.backend}"
        if args.repeat > 1:
            title += f", last of {args.repeat} runs"
        con.print(breakdown_table(stats, title=title))
        for line in summary_lines(stats):
            con.print(line)
        for line in _wall_lines(result):
            con.print(line)
        con.print("[green]bit-exact: the layer output equals the reference (torch.equal)[/]" if chk.bit_exact
                  and args.repeat == 1 else
                  f"[green]bit-exact: all {args.repeat} runs' outputs equal the reference (torch.equal)[/]"
                  if chk.bit_exact else
                  f"[red]MISMATCH in run(s) {[i + 1 for i, ok in enumerate(chk.bit_exact_runs) if not ok]}: "
                  f"max |difference| {result['max_abs_diff']:g}[/]")
        if save is not None:
            con.print(f"wrote {save}")
    return 0 if chk.bit_exact else 1


def _wall_lines(result) -> list[str]:
    """The text report's wall times: the backend's and the command's, and with ``--repeat`` the first
    run's and the repeated runs' backend time (a repeated run finds its weights compiled)."""
    lines = [wall_line(result["device_wall_s"], result["host_wall_s"])]
    dev, lay = result["device_wall_s_runs"], result["layer_wall_s_runs"]
    if len(dev) > 1:
        rest, rest_lay = dev[1:], lay[1:]
        lines.append(f"backend time per run: first {dev[0]:.3f} s, repeated {sum(rest) / len(rest):.3f} s mean "
                     f"(min {min(rest):.3f} s, max {max(rest):.3f} s, {len(rest)} runs); whole layer pass: "
                     f"first {lay[0]:.3f} s (compiling the weights included), "
                     f"repeated {sum(rest_lay) / len(rest_lay):.3f} s mean")
    return lines
