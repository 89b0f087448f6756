"""``tern demo``: the embedded demo model solves held-out additions through a backend and is checked
against the reference (:func:`sw.driver.demo.run_demo`)."""

from __future__ import annotations

from sw.cli.common import (Progress, UsageError, add_accelerator_flags, add_quiet_flag, check_backend,
                           check_clock, config_from_args, console, emit)

__all__ = ["add_command"]


def add_command(sub) -> None:
    d = sub.add_parser("demo", help="run the embedded demo model and check it against the reference")
    d.set_defaults(func=_cmd_demo)
    d.add_argument("--problems", type=int, default=8, help="held-out problems to solve (default 8)")
    d.add_argument("--seed", type=int, default=0, help="which held-out problems (default 0)")
    add_accelerator_flags(d)
    add_quiet_flag(d)


def _cmd_demo(args) -> int:
    from sw.driver.demo import run_demo

    if args.problems < 1 or args.problems > 10000:
        raise UsageError(f"tern demo: --problems must be between 1 and 10000, not {args.problems}")
    config = config_from_args(args)
    check_backend("demo", args.backend)
    check_clock("demo", args.clock_mhz)
    plural = "" if args.problems == 1 else "s"
    with Progress("demo", f"{args.backend}, {args.problems} problem{plural}", unit="projection calls",
                  quiet=args.quiet) as bar:
        result = run_demo(n_problems=args.problems, seed=args.seed, quiet=True, backend=args.backend,
                          config=config, clock_mhz=args.clock_mhz, progress=bar.update)
    if args.json:
        emit(args, result, None)
    else:
        from sw.driver.demo import print_report
        print_report(result, console=console())
    return 0 if result.get("match", False) else 1
