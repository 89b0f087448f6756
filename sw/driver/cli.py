"""The driver's commands of the ``tern`` command line: ``tern run``, ``tern layer`` and the accelerator
flags of ``tern demo`` (``--backend``, ``--clock-mhz``). Registered by :func:`sw.cli.build_parser`
through :func:`add_driver_commands`; errors follow ``sw.cli``'s contract (a ``ValueError`` is one line on
stderr and exit code 2; a device/verification failure is exit code 1)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from hw.fileio import atomic_write

__all__ = ["add_driver_commands", "add_backend_flags", "check_backend", "check_clock", "demo_kwargs",
           "MAX_NEW_TOKENS", "MAX_LAYER_TOKENS"]

#: Hard upper bounds of flags (a model's max_position_embeddings usually bounds them first).
MAX_NEW_TOKENS = 100_000
MAX_LAYER_TOKENS = 65_536


class DriverUsageError(ValueError):
    """Bad command-line input for a driver command (one line, exit code 2)."""


def add_backend_flags(p):
    from sw.driver.runtime import BACKENDS, DEFAULT_CLOCK_MHZ
    p.add_argument("--backend", default="sim",
                   help=f"accelerator backend: {', '.join(BACKENDS)} (default sim)")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"clock of the modelled device for tokens/s (default {DEFAULT_CLOCK_MHZ:g})")


def check_backend(cmd: str, name: str) -> str:
    from sw.driver.runtime import BACKENDS, BackendError, get_backend
    if name not in BACKENDS:
        raise DriverUsageError(f"tern {cmd}: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    try:
        get_backend(name)
    except BackendError as e:
        raise DriverUsageError(f"tern {cmd}: {e}") from None
    return name


def check_clock(cmd: str, mhz: float) -> float:
    if not math.isfinite(mhz) or not 0 < mhz <= 100_000:
        raise DriverUsageError(f"tern {cmd}: --clock-mhz must be in (0, 100000], not {mhz:g}")
    return mhz


def _check_seed(cmd, seed):
    if not 0 <= seed < 2**63:
        raise DriverUsageError(f"tern {cmd}: --seed must be between 0 and 2**63-1, not {seed}")


def demo_kwargs(args, config) -> dict:
    """Keyword arguments of :func:`sw.demo.run_demo` from ``tern demo``'s accelerator flags."""
    check_backend("demo", args.backend)
    check_clock("demo", args.clock_mhz)
    return {"backend": args.backend, "config": config, "clock_mhz": args.clock_mhz,
            "progress": not args.json and sys.stderr.isatty()}


def _model_limits(cmd, spec):
    """(max_position_embeddings, vocab_size, num_layers) of a model spec, cheaply for presets."""
    from sw.driver.models import PRESET_NAMES
    if spec.lower() in PRESET_NAMES:
        from sw.model.presets import preset_config
        c = preset_config(spec.lower())
        return c.max_position_embeddings, c.vocab_size, c.num_hidden_layers
    return None


def _parse_ids(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise DriverUsageError(f"tern run: --prompt-ids must be comma-separated token ids like 1,2,3, "
                               f"not {text!r}")
    ids = []
    for p in parts:
        try:
            ids.append(int(p))
        except ValueError:
            raise DriverUsageError(f"tern run: --prompt-ids: {p!r} is not an integer token id") from None
    return ids


def _device_failure(cmd, e) -> int:
    print(f"tern {cmd}: device failure: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
          file=sys.stderr)
    return 1


# -- tern run -------------------------------------------------------------------------------------------

def _cmd_run(args, config_from_args, emit) -> int:
    from sw.driver.models import generate, load_model
    from sw.driver.report import progress
    from sw.driver.runtime import Accelerator, DeviceError
    from sw.model.bitlinear import reference_core

    cmd = "run"
    check_backend(cmd, args.backend)
    check_clock(cmd, args.clock_mhz)
    _check_seed(cmd, args.seed)
    n = args.max_new_tokens
    if not 1 <= n <= MAX_NEW_TOKENS:
        raise DriverUsageError(f"tern run: --max-new-tokens must be between 1 and {MAX_NEW_TOKENS}, not {n}")
    ids = _parse_ids(args.prompt_ids) if args.prompt_ids is not None else None
    if args.prompt is not None and args.prompt == "":
        raise DriverUsageError("tern run: --prompt is empty")
    cfg = config_from_args(args)
    limits = _model_limits(cmd, args.model)
    if limits is not None and ids is not None:   # cheap checks before a preset's weights are made
        _check_run_lengths(len(ids), n, limits[0], limits[1], ids, args.model)
    lm = load_model(args.model, seed=args.seed)
    if ids is None:
        if lm.tokenizer is None:
            raise DriverUsageError(f"tern run: model {args.model!r} has no tokenizer; give the prompt as "
                                   f"--prompt-ids 1,2,3")
        ids = _encode(lm, args.prompt)
    mc = lm.config
    _check_run_lengths(len(ids), n, mc.max_position_embeddings, mc.vocab_size, ids, args.model)

    show = not args.json and sys.stderr.isatty()
    calls = n * mc.num_hidden_layers * 7
    acc = Accelerator(cfg, args.backend, clock_mhz=args.clock_mhz)
    model = lm.model
    with progress(show, calls, f"{args.backend}: {n} tokens") as bar:
        acc.on_call = lambda rec: bar.advance()
        try:
            toks = generate(model, [ids], n, acc)[0].tolist()
        except (DeviceError, RuntimeError) as e:
            return _device_failure(cmd, e)
    with progress(show, calls, "reference: same tokens") as bar:
        def counting_core(q, t, linear):
            bar.advance()
            return reference_core(q, t, linear)
        ref = model.generate_greedy([ids], n, core=counting_core)[0].tolist()
    stats = acc.stats
    result = {"model": args.model, "backend": args.backend, "prompt_ids": ids, "match": toks == ref,
              "tokens": toks, "reference_tokens": ref, **_fig(stats), "config": cfg.to_dict()}
    if lm.tokenizer is not None:
        result["text"] = _decode(lm, toks)
        result["reference_text"] = _decode(lm, ref)
    if args.json:
        emit(args, result, None)
    else:
        _print_run(result, stats)
    return 0 if result["match"] else 1


def _check_run_lengths(n_prompt, n, max_pos, vocab, ids, model):
    if n_prompt < 1:
        raise DriverUsageError("tern run: the prompt has no tokens")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise DriverUsageError(f"tern run: token id {bad[0]} is outside the vocabulary of model {model!r} "
                               f"(0..{vocab - 1})")
    if n_prompt + n - 1 > max_pos:
        raise DriverUsageError(f"tern run: prompt of {n_prompt} tokens + --max-new-tokens {n} exceeds the "
                               f"model's max_position_embeddings={max_pos}")


def _encode(lm, text) -> list[int]:
    tok = lm.tokenizer
    from sw.model.tokenizer import CharTokenizer
    try:
        if isinstance(tok, CharTokenizer):
            return tok.encode(text, add_bos=True)
        return list(tok(text)["input_ids"])
    except ValueError as e:
        raise DriverUsageError(f"tern run: --prompt: {str(e).splitlines()[0]}") from None


def _decode(lm, ids) -> str:
    tok = lm.tokenizer
    from sw.model.tokenizer import CharTokenizer
    if isinstance(tok, CharTokenizer):
        return tok.decode(ids, skip_special=False)
    return tok.decode(ids)


def _fig(stats: dict) -> dict:
    keys = ("cycles", "utilization", "bus_utilization", "tokens_per_s", "decode_tokens_per_s",
            "cycles_per_token", "decode_cycles_per_token", "cycles_per_layer", "prefill_cycles",
            "decode_cycles", "clock_mhz", "device_seconds", "calls", "busy", "wgt_beats", "generated_tokens",
            "layer_cycles", "breakdown", "wall_s_device")
    return {k: stats[k] for k in keys}


def _print_run(result, stats):
    from rich.console import Console

    from sw.driver.report import breakdown_table, summary_lines
    con = Console()
    con.print(breakdown_table(stats, title=f"tern run {result['model']} on {result['backend']}: "
                                           f"per-projection breakdown"))
    for line in summary_lines(stats):
        con.print(line)
    con.print(f"tokens:    {result['tokens']}" + (f"  {result['text']!r}" if "text" in result else ""))
    con.print(f"reference: {result['reference_tokens']}")
    con.print("[green]tokens match the reference[/]" if result["match"]
              else "[red]MISMATCH: tokens differ from the reference[/]")


# -- tern layer -----------------------------------------------------------------------------------------

def _check_save_path(cmd, save):
    if save is None:
        return None
    p = Path(save)
    if p.suffix != ".npz":
        raise DriverUsageError(f"tern {cmd}: --save file must end in .npz, not {p.name!r}")
    if not p.parent.is_dir():
        raise DriverUsageError(f"tern {cmd}: --save folder {str(p.parent)!r} does not exist")
    if p.is_dir():
        raise DriverUsageError(f"tern {cmd}: --save {str(p)!r} is a folder")
    return p


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write ``arrays`` to ``path`` (.npz) through a temporary file in the same folder and
    ``os.replace``: the file appears complete or not at all."""
    import numpy as np

    def write(tmp: Path):
        with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)

    atomic_write(path, write)


def _cmd_layer(args, config_from_args, emit) -> int:
    from sw.driver.models import layer_check, layer_input, load_layer, num_layers
    from sw.driver.report import breakdown_table, summary_lines
    from sw.driver.runtime import Accelerator, DeviceError

    cmd = "layer"
    check_backend(cmd, args.backend)
    check_clock(cmd, args.clock_mhz)
    _check_seed(cmd, args.seed)
    save = _check_save_path(cmd, args.save)
    if not 1 <= args.tokens <= MAX_LAYER_TOKENS:
        raise DriverUsageError(f"tern layer: --tokens must be between 1 and {MAX_LAYER_TOKENS}, not {args.tokens}")
    cfg = config_from_args(args)
    n_layers = num_layers(args.model)
    if not 0 <= args.layer < n_layers:
        raise DriverUsageError(f"tern layer: --layer {args.layer} is out of range: model {args.model!r} has "
                               f"layers 0..{n_layers - 1}")
    layer, mc = load_layer(args.model, args.layer, seed=args.seed)
    if args.tokens > mc.max_position_embeddings:
        raise DriverUsageError(f"tern layer: --tokens {args.tokens} exceeds the model's "
                               f"max_position_embeddings={mc.max_position_embeddings}")
    x = layer_input(mc, args.tokens, args.seed)
    acc = Accelerator(cfg, args.backend, clock_mhz=args.clock_mhz)
    try:
        chk = layer_check(acc, layer, x)
    except (DeviceError, RuntimeError) as e:
        return _device_failure(cmd, e)
    stats = acc.stats
    diff = (chk.output - chk.reference_output).abs()
    result = {"model": args.model, "layer": args.layer, "tokens": args.tokens, "backend": args.backend,
              "seed": args.seed, "bit_exact": chk.bit_exact, "max_abs_diff": float(diff.max()),
              **{k: v for k, v in _fig(stats).items() if k not in ("tokens_per_s", "decode_tokens_per_s",
                                                                   "cycles_per_token",
                                                                   "decode_cycles_per_token",
                                                                   "generated_tokens", "prefill_cycles",
                                                                   "decode_cycles")},
              "layer_tokens_per_s": args.tokens / stats["device_seconds"] if stats["cycles"] else None,
              "config": cfg.to_dict()}
    if save is not None:
        save_npz_atomic(save, input=chk.input.numpy(), output=chk.output.numpy(),
                        reference_output=chk.reference_output.numpy())
        result["saved"] = str(save)
    if args.json:
        emit(args, result, None)
    else:
        from rich.console import Console
        con = Console()
        con.print(breakdown_table(stats, title=f"tern layer {args.model} #{args.layer}, {args.tokens} tokens "
                                               f"on {args.backend}"))
        for line in summary_lines(stats):
            con.print(line)
        con.print("[green]bit-exact: the layer output equals the reference (torch.equal)[/]" if chk.bit_exact
                  else f"[red]MISMATCH: max |difference| {result['max_abs_diff']:g}[/]")
        if save is not None:
            con.print(f"wrote {save}")
    return 0 if chk.bit_exact else 1


# -- registration -------------------------------------------------------------------------------------

def add_driver_commands(sub, add_config_flags, config_from_args, emit) -> None:
    """Add ``run`` and ``layer`` to ``tern``'s subparsers."""
    r = sub.add_parser("run", help="greedy generation through the accelerator, checked against the reference")
    r.add_argument("--model", required=True,
                   help="demo, a checkpoint folder, or a preset with random weights: 2b4t, 700m, 1.3b, 3b")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text (models with a tokenizer)")
    g.add_argument("--prompt-ids", metavar="1,2,3", help="prompt token ids, comma-separated")
    r.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (default 8)")
    r.add_argument("--seed", type=int, default=0, help="seed of a preset's random weights (default 0)")
    add_backend_flags(r)
    r.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flags(r)
    r.set_defaults(func=lambda a: _cmd_run(a, config_from_args, emit))

    la = sub.add_parser("layer", help="one transformer layer through the accelerator vs the reference")
    la.add_argument("--model", required=True,
                    help="demo, a checkpoint folder, or a preset with random weights: 2b4t, 700m, 1.3b, 3b")
    la.add_argument("--layer", type=int, required=True, help="layer index")
    la.add_argument("--tokens", type=int, default=1, help="tokens (sequence positions) of the input (default 1)")
    la.add_argument("--seed", type=int, default=0,
                    help="seed of the random input (and of a preset's random weights) (default 0)")
    la.add_argument("--save", metavar="OUT.npz", help="write arrays input, output, reference_output")
    add_backend_flags(la)
    la.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flags(la)
    la.set_defaults(func=lambda a: _cmd_layer(a, config_from_args, emit))
