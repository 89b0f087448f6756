"""``tern run``: greedy generation through the accelerator (:func:`sw.driver.models.generate`), checked
token for token against the reference model."""

from __future__ import annotations

import re
import time

from sw.cli.common import (Progress, UsageError, add_accelerator_flags, add_quiet_flag, check_accelerator_args,
                           config_from_args, console, device_failure, emit)

__all__ = ["add_command", "MAX_NEW_TOKENS", "MODEL_HELP", "device_figures", "wall_line"]

#: Hard upper bound of ``--max-new-tokens`` (a model's max_position_embeddings usually bounds it first).
MAX_NEW_TOKENS = 100_000

MODEL_HELP = ("demo, a checkpoint folder, a .gguf file (TQ1_0, TQ2_0, I2_S), or a preset with random "
              "weights: 2b4t, 700m, 1.3b, 3b")

#: The accelerator figures of a run's JSON object (keys of :attr:`sw.driver.runtime.Accelerator.stats`).
FIGURES = ("cycles", "utilization", "bus_utilization", "tokens_per_s", "decode_tokens_per_s",
           "cycles_per_token", "decode_cycles_per_token", "cycles_per_layer", "prefill_cycles",
           "decode_cycles", "clock_mhz", "device_seconds", "calls", "busy", "wgt_beats", "generated_tokens",
           "layer_cycles", "breakdown", "device_wall_s")


def wall_line(device_wall_s: float, host_wall_s: float) -> str:
    """The text report's line of the two wall times (``docs/DRIVER.md``, "Reports")."""
    return (f"wall time on this machine: {device_wall_s:.3f} s in the backend running the programs, "
            f"{host_wall_s:.3f} s the whole command")


def device_figures(stats: dict, leave_out=()) -> dict:
    """The :data:`FIGURES` of ``stats``, but those in ``leave_out``."""
    return {k: stats[k] for k in FIGURES if k not in leave_out}


def add_command(sub) -> None:
    r = sub.add_parser("run", help="greedy generation through the accelerator, checked against the reference")
    r.set_defaults(func=_cmd_run)
    r.add_argument("--model", required=True, help=MODEL_HELP)
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text (models with a tokenizer)")
    g.add_argument("--prompt-ids", metavar="1,2,3", help="prompt token ids, comma-separated")
    r.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (default 8)")
    r.add_argument("--seed", type=int, default=0, help="seed of a preset's random weights (default 0)")
    add_accelerator_flags(r)
    add_quiet_flag(r)


def _model_limits(spec):
    """(max_position_embeddings, vocab_size) of a preset model spec (no weights made), else None."""
    from sw.driver.models import PRESET_NAMES
    if spec.lower() in PRESET_NAMES:
        from sw.model.presets import preset_config
        c = preset_config(spec.lower())
        return c.max_position_embeddings, c.vocab_size
    return None


def _parse_ids(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise UsageError(f"tern run: --prompt-ids must be comma-separated token ids like 1,2,3, not {text!r}")
    ids = []
    for p in parts:
        try:
            ids.append(int(p))
        except ValueError:
            raise UsageError(f"tern run: --prompt-ids: {p!r} is not an integer token id") from None
    return ids


def _cmd_run(args) -> int:
    t_start = time.perf_counter()   # host_wall_s: from here (arguments parsed) to the report
    from sw.driver.models import generate, load_model
    from sw.driver.report import PROJECTIONS
    from sw.driver.runtime import Accelerator, DeviceError
    from sw.model.bitlinear import reference_core

    cmd = "run"
    check_accelerator_args(cmd, args)
    n = args.max_new_tokens
    if not 1 <= n <= MAX_NEW_TOKENS:
        raise UsageError(f"tern run: --max-new-tokens must be between 1 and {MAX_NEW_TOKENS}, not {n}")
    ids = _parse_ids(args.prompt_ids) if args.prompt_ids is not None else None
    if args.prompt is not None and args.prompt == "":
        raise UsageError("tern run: --prompt is empty")
    cfg = config_from_args(args)
    limits = _model_limits(args.model)
    if limits is not None and ids is not None:   # cheap checks before a preset's weights are made
        _check_run_lengths(len(ids), n, limits[0], limits[1], ids, args.model)
    lm = load_model(args.model, seed=args.seed)
    if ids is None:
        if lm.tokenizer is None:
            raise UsageError(f"tern run: model {args.model!r} has no tokenizer; give the prompt as "
                             f"--prompt-ids 1,2,3")
        ids = _encode(lm, args.prompt)
    mc = lm.config
    _check_run_lengths(len(ids), n, mc.max_position_embeddings, mc.vocab_size, ids, args.model)

    calls = n * mc.num_hidden_layers * len(PROJECTIONS)
    acc = Accelerator(cfg, args.backend, clock_mhz=args.clock_mhz)
    model = lm.model
    tokens = f"{n} token{'' if n == 1 else 's'}"
    try:
        with Progress(cmd, f"{args.backend}, {tokens}", calls, unit="projection calls", quiet=args.quiet) as bar:
            acc.on_call = lambda rec: bar.advance()
            toks = generate(model, [ids], n, acc)[0].tolist()
    except (DeviceError, RuntimeError) as e:
        return device_failure(cmd, e)
    with Progress(cmd, f"reference, the same {tokens}", calls, unit="projection calls",
                  quiet=args.quiet) as bar:
        def counting_core(q, t, linear):
            bar.advance()
            return reference_core(q, t, linear)
        ref = model.generate_greedy([ids], n, core=counting_core)[0].tolist()
    stats = acc.stats
    result = {"model": args.model, "backend": args.backend, "prompt_ids": ids, "match": toks == ref,
              "tokens": toks, "reference_tokens": ref, **device_figures(stats), "config": cfg.to_dict()}
    if lm.tokenizer is not None:
        result["text"] = _decode(lm, toks)
        result["reference_text"] = _decode(lm, ref)
    if args.model.lower() == "demo":
        result["answer"] = _demo_answer(lm, toks)
    result["host_wall_s"] = time.perf_counter() - t_start
    if args.json:
        emit(args, result, None)
    else:
        _print_run(result, stats, args.prompt)
    return 0 if result["match"] else 1


def _check_run_lengths(n_prompt, n, max_pos, vocab, ids, model):
    if n_prompt < 1:
        raise UsageError("tern run: the prompt has no tokens")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise UsageError(f"tern run: token id {bad[0]} is outside the vocabulary of model {model!r} "
                         f"(0..{vocab - 1})")
    if n_prompt + n - 1 > max_pos:
        raise UsageError(f"tern run: prompt of {n_prompt} tokens + --max-new-tokens {n} exceeds the "
                         f"model's max_position_embeddings={max_pos}")


def _encode(lm, text) -> list[int]:
    tok = lm.tokenizer
    from sw.model.tokenizer import CharTokenizer
    try:
        if isinstance(tok, CharTokenizer):
            return tok.encode(text, add_bos=True)
        return list(tok(text)["input_ids"])
    except ValueError as e:
        raise UsageError(f"tern run: --prompt: {str(e).splitlines()[0]}") from None


def _decode(lm, ids) -> str:
    tok = lm.tokenizer
    from sw.model.tokenizer import CharTokenizer
    if isinstance(tok, CharTokenizer):
        return tok.decode(ids, skip_special=False)
    return tok.decode(ids)


def _demo_answer(lm, toks):
    """The demo model's answer as an integer (it writes the sum least-significant digit first), or None
    when the generated text is not a 4-digit answer."""
    from sw.model.demo_task import parse_answer
    return parse_answer(lm.tokenizer.decode(toks, skip_special=True, stop_at_eos=True))


def _demo_answer_line(result, max_new_tokens: int, prompt: str | None) -> str:
    from sw.model.demo_task import ANSWER_DIGITS, format_prompt
    text = result["text"].split("<eos>")[0]
    note = "the demo model writes the sum least-significant digit first"
    if result["answer"] is not None:
        return f"answer: {result['answer']} ({note}: {text!r} reversed)"
    if max_new_tokens < ANSWER_DIGITS + 1:
        why = f"--max-new-tokens {ANSWER_DIGITS + 1} generates a whole answer"
    elif prompt is not None and not re.fullmatch(r"\d{3}\+\d{3}=", prompt):
        why = f"it answers prompts of two 3-digit numbers, like {format_prompt(123, 45)}"
    else:
        why = "the generated text is not an answer"
    return f"answer: none ({note}, {ANSWER_DIGITS} digits then <eos>; {text!r} is not {ANSWER_DIGITS} digits: {why})"


def _print_run(result, stats, prompt=None):
    from sw.driver.report import breakdown_table, summary_lines
    con = console()
    con.print(breakdown_table(stats, title=f"tern run {result['model']} on {result['backend']}: "
                                           f"per-projection breakdown"))
    for line in summary_lines(stats):
        con.print(line)
    con.print(wall_line(result["device_wall_s"], result["host_wall_s"]))
    con.print(f"tokens:    {result['tokens']}" + (f"  {result['text']!r}" if "text" in result else ""))
    con.print(f"reference: {result['reference_tokens']}")
    if "answer" in result:
        con.print(_demo_answer_line(result, len(result["tokens"]), prompt))
    con.print("[green]tokens match the reference[/]" if result["match"]
              else "[red]MISMATCH: tokens differ from the reference[/]")
