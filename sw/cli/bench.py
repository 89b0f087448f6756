"""``tern bench``: runs the benchmark scripts ``bench/bench_*.py`` of the source checkout, each with
the shared ``--quick`` / ``--json`` flags (:func:`sw.cli.common.bench_parser`)."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sw.cli.common import UsageError, add_json_flag, print_json

__all__ = ["add_command", "bench_dir", "benchmarks"]


def bench_dir() -> Path:
    """The ``bench/`` folder of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "bench"


def benchmarks() -> dict:
    """``{name: first line of its docstring}`` of the benchmark scripts ``bench/bench_NAME.py``."""
    folder = bench_dir()
    out = {}
    for script in sorted(folder.glob("bench_*.py")) if folder.is_dir() else []:
        try:
            doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        except (OSError, SyntaxError, ValueError):
            doc = ""
        out[script.stem.removeprefix("bench_")] = doc.split("\n\n")[0].replace("\n", " ")
    return out


def _epilog() -> str:
    found = benchmarks()
    if not found:
        return "no benchmarks found (they live in the source checkout's bench/ folder)"
    width = max(map(len, found)) + 4
    return "benchmarks (--only NAME):\n" + "\n".join(
        textwrap.fill(d, 100, initial_indent=f"  {n:{width - 2}s}", subsequent_indent=" " * width)
        for n, d in found.items())


def add_command(sub) -> None:
    b = sub.add_parser("bench", help="run the benchmark suite (bench/bench_*.py)", epilog=_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.set_defaults(func=_cmd_bench)
    b.add_argument("--quick", action="store_true", help="the short version of every benchmark")
    b.add_argument("--only", action="append", metavar="NAME",
                   help="run only this benchmark (repeatable), e.g. --only sim")
    add_json_flag(b)


def _cmd_bench(args) -> int:
    folder = bench_dir()
    scripts = sorted(folder.glob("bench_*.py")) if folder.is_dir() else []
    if not scripts:
        raise UsageError(f"tern bench: no benchmarks found in {folder} (the benchmarks live in the "
                         f"source checkout's bench/ folder; install tern with pip install -e)")
    names = {s.stem.removeprefix("bench_"): s for s in scripts}
    chosen = args.only or list(names)
    for n in chosen:
        if n not in names:
            raise UsageError(f"tern bench: unknown benchmark {n!r} (choose from {', '.join(names)})")
    results, failed = {}, []
    for n in chosen:
        cmd = [sys.executable, str(names[n])] + (["--quick"] if args.quick else []) + \
              (["--json"] if args.json else [])
        if not args.json:
            print(f"== {n}: {' '.join(cmd[1:])}", flush=True)
        p = subprocess.run(cmd, stdout=subprocess.PIPE if args.json else None, text=True)
        if p.returncode:
            failed.append(n)
        if args.json:
            try:
                results[n] = json.loads(p.stdout)
            except (TypeError, ValueError):
                results[n] = {"error": f"exit code {p.returncode}, no JSON"}
    if args.json:
        print_json({"benchmarks": results, "failed": failed})
    elif failed:
        print(f"tern bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
