"""The embedded BitNet b1.58 demo model adds numbers, through a backend and through the reference
(what ``tern demo`` runs).

:func:`run_demo` loads the committed demo model (:func:`sw.model.demo_task.load_demo_model`: a 2-layer
ternary transformer trained by ``python -m sw.model.train``), picks held-out 3-digit additions it never saw in training,
generates the answers greedily with the PyTorch reference ternary inference model, and, when a
``backend`` is given, generates them again through that backend and compares the token ids exactly.

A backend is the name of an accelerator backend of the driver (``"sim"``, ``"amaranth"``,
``"verilator"``: the model's seven projections per layer run on the tern core through
:class:`sw.driver.models.DriverBackend`, configured by ``config`` and ``clock_mhz``), or any object with
a method ``generate_with_model(model, prompts, max_new_tokens)`` (called with the demo model), or
``generate(prompts, max_new_tokens) -> list[list[int]]``
(greedy continuation of each prompt, newly generated ids only), or with an integer core
``core(q, T, linear) -> D`` (see :mod:`sw.model.bitlinear`; the reference model then runs with that
core in place of the exact host matmul), or a plain callable with the ``generate`` signature. If it also has a ``stats`` attribute (a dict, e.g. ``cycles``, ``utilization``,
``tokens_per_s`` of the last ``generate``), those figures are copied into the result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from sw.model import demo_task

__all__ = ["run_demo", "print_report"]


def _backend_generate(backend, model):
    gen_model = getattr(backend, "generate_with_model", None)
    if callable(gen_model):  # e.g. sw.driver.DriverBackend: generates with this model through a device
        return lambda prompts, n: gen_model(model, prompts, n)
    gen = getattr(backend, "generate", None)
    if callable(gen):
        return gen
    core = getattr(backend, "core", None)
    if callable(core):  # an integer core: the reference model runs with its D = q @ T^T
        return lambda prompts, n: model.generate_greedy(prompts, n, core=core).tolist()
    if callable(backend):
        return backend
    raise TypeError(f"backend must have a generate(prompts, max_new_tokens) or core(q, T, linear) "
                    f"method, or be callable, not {type(backend).__name__}")


def run_demo(n_problems: int = 8, seed: int = 0, backend: Any = None, *, model_dir: str | Path | None = None,
             console=None, quiet: bool = False, config=None, clock_mhz: float | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Solves ``n_problems`` held-out additions with the demo model and reports them.

    Returns a dict with: ``match`` (the backend's tokens equal the reference's, ``torch.equal``-strict;
    True when no backend is given and the reference itself is used), ``tokens`` (generated ids per
    problem, from the backend or the reference), ``reference_tokens``, ``answers`` (parsed integers or
    None), ``correct`` (per problem), ``accuracy``, ``problems`` (``"a+b"`` strings), ``backend``, the
    backend's ``stats`` when it has any (``cycles``, ``utilization``, ``tokens_per_s`` are always
    present: None unless the backend reports them), and ``seconds`` (wall time of the reference and
    backend generation).

    ``progress``, if given, is called as ``progress(calls_done, calls_expected)`` after every
    projection call of a driver backend (a name); the report (unless ``quiet``) is printed on
    ``console`` (default: a new rich Console).
    """
    if not isinstance(n_problems, int) or isinstance(n_problems, bool) or n_problems < 1:
        raise ValueError(f"n_problems={n_problems!r} must be a positive integer")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed={seed!r} must be an integer")
    if isinstance(backend, str):  # an accelerator backend of the driver: "sim", "amaranth", "verilator"
        from hw.config import DEFAULT_CLOCK_MHZ
        from sw.driver.models import DriverBackend
        backend = DriverBackend(backend, config, clock_mhz=clock_mhz or DEFAULT_CLOCK_MHZ, progress=progress)
    model, tok = demo_task.load_demo_model(model_dir)
    problems = demo_task.held_out_problems(n_problems, seed=seed)

    t0 = time.perf_counter()
    ref_tokens, _ = demo_task.solve(demo_task.reference_generate_fn(model), problems, tok)
    t_ref = time.perf_counter() - t0
    if backend is None:
        tokens, backend_name, t_backend = ref_tokens, "reference", None
        stats: dict = {}
    else:
        t0 = time.perf_counter()
        tokens, _ = demo_task.solve(_backend_generate(backend, model), problems, tok)
        t_backend = time.perf_counter() - t0
        backend_name = getattr(backend, "name", type(backend).__name__)
        stats = dict(getattr(backend, "stats", None) or {})
    match = tokens == ref_tokens

    answers, correct = [], []
    for p, toks in zip(problems, tokens):
        ans = demo_task.parse_answer(tok.decode(toks, skip_special=True, stop_at_eos=True))
        ok = toks == tok.encode(p.target, add_bos=False, add_eos=True)
        answers.append(ans)
        correct.append(ok)
    accuracy = sum(correct) / len(problems)
    result = {
        "match": match,
        "tokens": tokens,
        "reference_tokens": ref_tokens,
        "problems": [str(p) for p in problems],
        "prompts": [p.prompt for p in problems],
        "answers": answers,
        "expected": [p.answer for p in problems],
        "correct": correct,
        "accuracy": accuracy,
        "backend": backend_name,
        "seed": seed,
        "model_dir": str(Path(model_dir) if model_dir is not None else demo_task.default_model_dir()),
        "seconds": {"reference": round(t_ref, 4),
                    **({"backend": round(t_backend, 4)} if t_backend is not None else {})},
        # accelerator figures: None until a backend reports them in its ``stats``
        "cycles": None,
        "utilization": None,
        "tokens_per_s": None,
        **stats,
    }
    if not quiet:
        print_report(result, console=console, tokenizer=tok)
    return result


def print_report(r: dict, console=None, tokenizer=None) -> None:
    """Print the table and summary of a :func:`run_demo` result ``r`` on ``console`` (default: a new
    rich Console); ``tokenizer``: the demo model's (default: read from ``r["model_dir"]``)."""
    from rich.console import Console
    from rich.table import Table

    tok = tokenizer or demo_task.CharTokenizer.from_file(Path(r["model_dir"]) / "tokenizer.json")
    console = console or Console()
    table = Table(title=f"tern demo: a ternary BitNet b1.58 adds 3-digit numbers ({r['backend']})")
    table.add_column("problem", justify="right")
    table.add_column("prompt")
    table.add_column("generated")
    table.add_column("model answer", justify="right")
    table.add_column("a + b", justify="right")
    table.add_column("correct?", justify="center")
    if r["backend"] != "reference":
        table.add_column("= reference?", justify="center")
    for i, prob in enumerate(r["problems"]):
        gen = tok.decode(r["tokens"][i], skip_special=False)
        ans = "?" if r["answers"][i] is None else str(r["answers"][i])
        row = [prob, r["prompts"][i], gen, ans, str(r["expected"][i]),
               "[green]yes[/]" if r["correct"][i] else "[red]no[/]"]
        if r["backend"] != "reference":
            row.append("[green]yes[/]" if r["tokens"][i] == r["reference_tokens"][i] else "[red]NO[/]")
        table.add_row(*row)
    console.print(table)
    n = len(r["problems"])
    if r["backend"] == "reference":
        tail = "reference ternary model (exact integer core); no accelerator backend"
    else:
        tail = f"{r['backend']} tokens {'match' if r['match'] else 'DO NOT match'} the reference"
    console.print(f"accuracy {sum(r['correct'])}/{n} (answers are generated least-significant digit "
                  f"first); {tail}")
    if r.get("breakdown"):  # an accelerator backend of the driver reported its figures
        from sw.driver.report import breakdown_table, summary_lines
        console.print(breakdown_table(r, title=f"{r['backend']}: per-projection breakdown"))
        for line in summary_lines(r):
            console.print(line)

