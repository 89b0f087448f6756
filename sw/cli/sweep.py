"""``tern sweep``: design-space exploration of a model's accelerator configuration (:mod:`sw.sweep`).

An Optuna multi-objective study over a space of configurations (``--space FILE.toml``, else the
built-in space), objectives and constraints from the estimator, trials run on a Dask cluster (a local
one by default, ``--scheduler ADDRESS`` for an existing one). The study lives in ``--out DIR``; run
the same command again to resume it or to extend it to more ``--trials``.
"""

from __future__ import annotations

import os

from sw.cli.common import Progress, UsageError, add_json_flag, add_quiet_flag, check_seed, emit

__all__ = ["add_command"]


def add_command(sub) -> None:
    from sw.sweep.study import DEFAULT_BATCH, DEFAULT_OBJECTIVES, OBJECTIVES, SAMPLERS
    s = sub.add_parser("sweep", help="design-space exploration: Pareto set of configurations for a model")
    s.set_defaults(func=_cmd_sweep)
    s.add_argument("--model", required=True,
                   help="demo, a checkpoint folder, or a shape preset (2b4t, 700m, 1.3b, 3b)")
    s.add_argument("--space", metavar="FILE.toml|NAME|builtin", default=None,
                   help="the search space: a TOML file with a [space] table of lists, a shipped space "
                        "(2b4t_decode) or builtin (default)")
    s.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES),
                   help=f"comma-separated, from {', '.join(OBJECTIVES)} (default {','.join(DEFAULT_OBJECTIVES)})")
    s.add_argument("--constraint", action="append", default=[], metavar="NAME<=X|NAME>=X|fits=BOARD",
                   help="a bound on area, energy_per_token, tokens_per_s or power, or fits=BOARD: the "
                        "configuration fits the board's FPGA (icebreaker, ulx3s-85f, tang-primer-20k; "
                        "modelled LUTs and block RAM) (repeatable)")
    s.add_argument("--trials", type=int, default=100, help="trials in the study in all (default 100)")
    s.add_argument("--sampler", default="tpe", help=f"{'|'.join(SAMPLERS)} (default tpe)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    s.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                   help=f"trials asked together, then run in parallel (default {DEFAULT_BATCH}); part of the "
                        "sweep's definition: results do not depend on the number of workers")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes of the local Dask cluster (default: one per core)")
    s.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="an existing Dask scheduler (tcp://host:port) instead of a local cluster")
    s.add_argument("--context", type=int, default=None, help="positions already in the KV cache")
    s.add_argument("--out", required=True, metavar="DIR", help="the study's folder (created; resumed if it exists)")
    s.add_argument("--no-plot", action="store_true", help="do not draw pareto.png")
    add_json_flag(s)
    add_quiet_flag(s)


def _cmd_sweep(args) -> int:
    from sw.cli.estimate import model_shape
    from sw.sweep import SweepError, load_space, run_sweep
    from sw.sweep.study import SAMPLERS, parse_constraints, parse_objectives
    cmd = "tern sweep"
    check_seed("sweep", args.seed)
    if args.sampler not in SAMPLERS:
        raise UsageError(f"{cmd}: unknown --sampler {args.sampler!r} (choose from {', '.join(SAMPLERS)})")
    for flag, v, lo in (("--trials", args.trials, 1), ("--batch", args.batch, 1), ("--workers", args.workers, 1)):
        if v is not None and v < lo:
            raise UsageError(f"{cmd}: {flag} must be at least {lo}, not {v}")
    if args.workers is not None and args.scheduler:
        raise UsageError(f"{cmd}: --workers is for the local cluster; an existing --scheduler has its own workers")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"{cmd}: --out {args.out!r} is a file, not a folder")
    try:
        space = load_space(args.space)
        objectives = parse_objectives(args.objectives)
        constraints = parse_constraints(args.constraint)
        shape = model_shape(args.model)
    except ValueError as e:
        raise UsageError(f"{cmd}: {str(e).splitlines()[0]}") from None
    with Progress("sweep", f"{args.model}, {args.sampler} sampler", args.trials, unit="trials",
                  quiet=args.quiet) as prog:
        try:
            r = run_sweep(space, args.model, shape, objectives=objectives, constraints=constraints,
                          trials=args.trials, sampler=args.sampler, seed=args.seed, out=args.out,
                          scheduler=args.scheduler, workers=args.workers, batch=args.batch,
                          context=args.context, progress=prog.update, plot=not args.no_plot)
        except SweepError as e:
            raise UsageError(f"{cmd}: {str(e).splitlines()[0]}") from None
    if args.json:
        emit(args, r, None)
    else:
        from sw.sweep.study import best_table
        print(best_table(r), end="")
        print(f"outputs: {args.out}/pareto.json, pareto.csv, best.txt"
              f"{', pareto.png' if not args.no_plot else ''}; trials in {args.out}/trials/")
    return 0
