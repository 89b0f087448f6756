"""The ``tern`` command line (SPEC section 5).

Exit codes: 0 success; 1 a verification mismatch; 2 bad input or usage (one line on stderr, no
traceback, no partial output file). Every command takes the accelerator configuration as flags or as
``--config FILE.toml`` (flags override the file). ``--json`` prints one JSON object on stdout.

Set ``TERN_DEBUG=1`` to see the traceback behind a bad-input error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hw.config import ConfigError, TernConfig

__all__ = ["main", "UsageError"]


class UsageError(ValueError):
    """Bad input from the command line; reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2 (argparse prints the whole usage otherwise)
        raise UsageError(f"{self.prog}: {message}")


# -- accelerator configuration flags ----------------------------------------------------------------

_CONFIG_FLAGS = {
    # flag name: (TernConfig field, type, help)
    "rows": (int, "PE rows (output features in parallel)"),
    "lanes": (int, "int8 activation lanes per row (input features per cycle)"),
    "acc-width": (int, "accumulator width in bits"),
    "weight-format": (str, "weight stream format: 2bit or base3"),
    "bus-bytes": (int, "weight stream bytes per beat"),
    "act-depth": (int, "activation buffer depth in words"),
    "wgt-depth": (int, "weight buffer bank depth in words"),
    "out-depth": (int, "output FIFO depth in result vectors"),
    "tree-reg-every": (int, "adder-tree register every N levels (0: combinational)"),
}


def _add_config_flags(p: argparse.ArgumentParser):
    g = p.add_argument_group("accelerator configuration")
    g.add_argument("--config", metavar="FILE.toml", help="read the configuration from a TOML file")
    for flag, (typ, help_) in _CONFIG_FLAGS.items():
        g.add_argument(f"--{flag}", type=typ, default=None, help=help_)


def config_from_args(args) -> TernConfig:
    """The configuration named by ``--config`` and the individual flags (flags win)."""
    values = {}
    if args.config:
        values = TernConfig.from_toml(args.config).to_dict()
    for flag in _CONFIG_FLAGS:
        v = getattr(args, flag.replace("-", "_"))
        if v is not None:
            values[flag.replace("-", "_")] = v
    return TernConfig.from_dict(values, source="--config/flags" if args.config else "flags")


# -- commands --------------------------------------------------------------------------------------

def _cmd_rtl(args) -> int:
    cfg = config_from_args(args)
    out = Path(args.output)
    if out.suffix != ".v":
        raise UsageError(f"tern rtl: output file must end in .v, not {out.name!r}")
    if not out.parent.is_dir():
        raise UsageError(f"tern rtl: output folder {str(out.parent)!r} does not exist")
    from hw.flows.export import write_verilog
    info = write_verilog(cfg, out)
    result = {"verilog": str(out), "config": str(out.with_suffix(".json"))}
    if isinstance(info, dict):
        result.update(info)
    _emit(args, result, f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _cmd_demo(args) -> int:
    from sw.demo import run_demo

    if args.problems < 1 or args.problems > 10000:
        raise UsageError(f"tern demo: --problems must be between 1 and 10000, not {args.problems}")
    from sw.driver.cli import demo_kwargs
    result = run_demo(n_problems=args.problems, seed=args.seed, quiet=args.json,
                      **demo_kwargs(args, config_from_args(args)))
    _emit(args, result, None)
    return 0 if result.get("match", False) else 1


def _config_flags_given(args) -> bool:
    return bool(args.config) or any(getattr(args, f.replace("-", "_")) is not None for f in _CONFIG_FLAGS)


def _cmd_verify(args) -> int:
    from hw.backends import rtl_backends
    from hw.verify.differential import run_verify
    BACKENDS = rtl_backends()

    if args.backend not in BACKENDS:
        raise UsageError(f"tern verify: unknown backend {args.backend!r} "
                         f"(choose from {', '.join(sorted(BACKENDS))})")
    if not 1 <= args.programs <= 1_000_000:
        raise UsageError(f"tern verify: --programs must be between 1 and 1000000, not {args.programs}")
    if not 0 <= args.start <= 2**31:
        raise UsageError(f"tern verify: --start must be between 0 and 2**31, not {args.start}")
    if not 1 <= args.max_instr <= 1000:
        raise UsageError(f"tern verify: --max-instr must be between 1 and 1000, not {args.max_instr}")
    # With configuration flags, every program runs on that configuration; without, each program
    # draws a small random one (rows 1..16, lanes 4..64, both weight formats, small buffers).
    cfg = config_from_args(args) if _config_flags_given(args) else None
    from sw.driver.report import progress

    with progress(not args.json and sys.stderr.isatty(), args.programs,
                  f"verify {args.backend} vs sim") as bar:
        r = run_verify(args.backend, args.programs, args.seed, cfg, start=args.start,
                       max_instr=args.max_instr, progress=lambda done, total: bar.advance())
    ok = r["mismatches"] == 0 and r["cycle_mismatches"] == 0
    plural = "" if r["programs"] == 1 else "s"
    text = (f"tern verify: {r['programs']} random program{plural} on {args.backend} vs hw.sim vs the integer "
            f"reference (seed {args.seed}): {r['mismatches']} output mismatches, "
            f"{r['cycle_mismatches']} cycle mismatches, {r['cycles']} cycles in {r['wall_s']} s")
    if not ok:
        f = r["first_failure"]
        text += (f"\nFIRST FAILURE (replay: tern verify --backend {args.backend} --seed {f['seed']} "
                 f"--start {f['index']} --programs 1 --max-instr {args.max_instr}"
                 f"{' (same configuration flags)' if cfg is not None else ''}): config {f['config']}\n  "
                 + "\n  ".join(f["differences"]))
    _emit(args, r, text)
    return 0 if ok else 1


def bench_dir() -> Path:
    """The ``bench/`` folder of the source checkout this package runs from."""
    return Path(__file__).resolve().parent.parent / "bench"


def _cmd_bench(args) -> int:
    import subprocess

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
        print(json.dumps({"benchmarks": results, "failed": failed}, default=_json_default))
    elif failed:
        print(f"tern bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _emit(args, result: dict, text: str | None):
    if args.json:
        print(json.dumps(result, default=_json_default))
    elif text:
        print(text)


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tern", description="tern: an open accelerator toolkit for BitNet b1.58 models")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser("demo", help="run the embedded demo model and check it against the reference")
    d.add_argument("--problems", type=int, default=8, help="held-out problems to solve (default 8)")
    d.add_argument("--seed", type=int, default=0, help="which held-out problems (default 0)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    from sw.driver.cli import add_backend_flags, add_driver_commands
    add_backend_flags(d)
    _add_config_flags(d)
    d.set_defaults(func=_cmd_demo)
    add_driver_commands(sub, _add_config_flags, config_from_args, _emit)
    from hw.flows.boards import add_synth_command
    add_synth_command(sub, _add_config_flags, config_from_args, _emit)
    from hw.estimate.cli import add_estimate_command
    add_estimate_command(sub, _add_config_flags, config_from_args, _emit)

    r = sub.add_parser("rtl", help="write Verilog of the top level for a configuration")
    r.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file to write")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flags(r)
    r.set_defaults(func=_cmd_rtl)

    v = sub.add_parser("verify", help="random differential programs: RTL vs simulator vs reference")
    v.add_argument("--backend", default="amaranth", help="RTL backend: amaranth (default) or verilator")
    v.add_argument("--programs", type=int, default=100, help="random programs to run (default 100)")
    v.add_argument("--seed", type=int, default=0, help="random seed; case i depends only on (seed, i)")
    v.add_argument("--start", type=int, default=0, help="index of the first case (default 0)")
    v.add_argument("--max-instr", type=int, default=10, help="longest random program (default 10)")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flags(v)
    v.set_defaults(func=_cmd_verify)

    b = sub.add_parser("bench", help="run the benchmark suite (bench/bench_*.py)")
    b.add_argument("--quick", action="store_true", help="the short version of every benchmark")
    b.add_argument("--only", action="append", metavar="NAME",
                   help="run only this benchmark (repeatable), e.g. --only sim")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except BrokenPipeError:  # stdout closed early (`tern ... | head`): not an error of the input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, ConfigError, ValueError, OSError) as e:
        if os.environ.get("TERN_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not msg.startswith("tern"):
            msg = f"tern: error: {msg}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tern: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        # the accelerator failed while running (error flags, a device that did not finish): a
        # verification failure, exit 1 with one line; any other RuntimeError is a bug and shows its
        # traceback
        runtime = sys.modules.get("sw.driver.runtime")
        if runtime is None or not isinstance(e, runtime.DeviceError) or os.environ.get("TERN_DEBUG"):
            raise
        print(f"tern: device error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
