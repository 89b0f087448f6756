"""``tern verify``: random differential programs, an RTL backend (or a board, ``--backend serial``)
vs hw.sim vs the integer reference (:func:`hw.verify.differential.run_verify`)."""

from __future__ import annotations

from sw.cli.common import (Progress, UsageError, add_config_flags, add_json_flag, add_quiet_flag,
                           add_serial_flags, config_flags_given, config_from_args, emit)

__all__ = ["add_command"]


def add_command(sub) -> None:
    v = sub.add_parser("verify", help="random differential programs: RTL vs simulator vs reference")
    v.set_defaults(func=_cmd_verify)
    v.add_argument("--backend", default="amaranth",
                   help="RTL backend: amaranth (default) or verilator; or serial: a board (or tern board-sim) "
                        "with --port DEV and the configuration flags it was built with")
    add_serial_flags(v)
    v.add_argument("--programs", type=int, default=100, help="random programs to run (default 100)")
    v.add_argument("--seed", type=int, default=0, help="random seed; case i depends only on (seed, i)")
    v.add_argument("--start", type=int, default=0, help="index of the first case (default 0)")
    v.add_argument("--max-instr", type=int, default=10, help="longest random program (default 10)")
    v.add_argument("--mutants", action="store_true",
                   help="the mutation gate: run the programs on every RTL mutant of hw.verify.mutants "
                        "(or those of --mutant); each must be killed (an output or cycle mismatch)")
    v.add_argument("--mutant", action="append", metavar="NAME", help="with --mutants: only this mutant "
                   "(repeatable)")
    v.add_argument("--formal", action="store_true",
                   help="formal proofs (SymbiYosys + Yices, ABC for the cec ones; hw.verify.formal): "
                        "the quick subset, or every property with --all, or those of --property")
    v.add_argument("--all", action="store_true", help="with --formal: every property (slow)")
    v.add_argument("--property", action="append", metavar="NAME",
                   help="with --formal: only this property (repeatable)")
    add_json_flag(v)
    add_quiet_flag(v)
    add_config_flags(v)


def _cmd_verify(args) -> int:
    from hw.backends import BACKENDS, verify_backends
    from hw.verify.differential import TIMING_FREE_COUNTERS, run_verify
    backends = verify_backends()

    if args.backend not in backends:
        raise UsageError(f"tern verify: unknown backend {args.backend!r} "
                         f"(choose from {', '.join(sorted(backends))})")
    if not 1 <= args.programs <= 1_000_000:
        raise UsageError(f"tern verify: --programs must be between 1 and 1000000, not {args.programs}")
    if not 0 <= args.start <= 2**31:
        raise UsageError(f"tern verify: --start must be between 0 and 2**31, not {args.start}")
    if not 1 <= args.max_instr <= 1000:
        raise UsageError(f"tern verify: --max-instr must be between 1 and 1000, not {args.max_instr}")
    board = BACKENDS[args.backend].board
    if board and (args.formal or args.property or args.all or args.mutants or args.mutant):
        raise UsageError(f"tern verify: --backend {args.backend} runs random programs only (no --formal "
                         f"or --mutants)")
    if board and not config_flags_given(args):
        raise UsageError(f"tern verify: --backend {args.backend} needs the configuration flags the board "
                         f"was built with")
    if args.formal or args.property or args.all:
        return _formal(args)
    # With configuration flags, every program runs on that configuration; without, each program
    # draws a small random one (rows 1..16, lanes 1..64, both weight formats, small buffers).
    cfg = config_from_args(args) if config_flags_given(args) else None
    if args.mutants or args.mutant:
        return _mutants(args, cfg)
    with Progress("verify", f"{args.backend} vs hw.sim", args.programs, unit="programs",
                  quiet=args.quiet) as bar:
        r = run_verify(args.backend, args.programs, args.seed, cfg, start=args.start,
                       max_instr=args.max_instr, progress=bar.update)
    ok = r["mismatches"] == 0 and r["cycle_mismatches"] == 0
    plural = "" if r["programs"] == 1 else "s"
    cycle_kind = f"counter ({', '.join(TIMING_FREE_COUNTERS)})" if board else "cycle"
    text = (f"tern verify: {r['programs']} random program{plural} on {args.backend} vs hw.sim vs the integer "
            f"reference (seed {args.seed}): {r['mismatches']} output mismatches, "
            f"{r['cycle_mismatches']} {cycle_kind} mismatches, {r['cycles']} cycles in {r['wall_s']} s"
            f"\n  coverage: {r['wraps']} with an accumulator wrap ({r['wraps_min_width']} at the minimum width), "
            f"{r['resets']} after a reset mid-program, {r['bad_instructions']} bad instructions, "
            f"{r['invalid_bytes']} invalid weight bytes, {r['withdrawals']} with withdrawn valid/ready, "
            f"{r['configs']} configuration{'' if r['configs'] == 1 else 's'}")
    if not ok:
        f = r["first_failure"]
        text += (f"\nFIRST FAILURE (replay: tern verify --backend {args.backend} --seed {f['seed']} "
                 f"--start {f['index']} --programs 1 --max-instr {args.max_instr}"
                 f"{' (same configuration flags)' if cfg is not None else ''}): config {f['config']}\n  "
                 + "\n  ".join(f["differences"]))
    emit(args, r, text)
    return 0 if ok else 1


def _formal(args) -> int:
    from hw.verify.formal import FormalError, properties, run_formal
    if not args.formal:
        raise UsageError("tern verify: --all and --property go with --formal")
    if config_flags_given(args):
        raise UsageError("tern verify --formal: the properties fix their own configurations "
                         "(no configuration flags)")
    known = [p.name for p in properties()]
    unknown = [n for n in args.property or () if n not in known]
    if unknown:
        raise UsageError(f"tern verify --formal: unknown property {unknown[0]!r} "
                         f"(known: {', '.join(known)})")
    selected = args.property or [p.name for p in properties(quick=not args.all)]
    try:
        with Progress("verify", "formal proofs", len(selected), unit="properties",
                      quiet=args.quiet) as bar:
            results = []
            for name in selected:
                results.append(run_formal([name]))
                bar.advance()
    except FormalError as e:
        raise UsageError(f"tern verify --formal: {e}") from None
    rows = [r for res in results for r in res["results"]]
    r = {"properties": len(rows), "proved": sum(x["status"] == "proved" for x in rows),
         "failed": [x["name"] for x in rows if x["status"] != "proved"], "results": rows}
    lines = [f"  {x['name']:32s} {x['status']:9s} {x['mode']} depth {x['depth']:<3d} {x['seconds']} s"
             + (f"  {x['message']}" if x["message"] else "") for x in rows]
    text = (f"tern verify --formal: {r['proved']}/{r['properties']} properties proved"
            + (f"; not proved: {', '.join(r['failed'])}" if r["failed"] else "") + "\n"
            + "\n".join(lines))
    emit(args, r, text)
    return 0 if not r["failed"] else 1


def _mutants(args, cfg) -> int:
    from hw.verify.mutants import MUTANTS, run_mutants
    names = args.mutant or list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise UsageError(f"tern verify: unknown mutant {unknown[0]!r} (choose from {', '.join(MUTANTS)})")
    with Progress("verify", "mutants", len(names), unit="mutants", quiet=args.quiet) as bar:
        r = run_mutants(names, programs=args.programs, seed=args.seed, backend=args.backend, config=cfg,
                        progress=bar.update)
    r.update(programs=args.programs, seed=args.seed, backend=args.backend)
    text = (f"tern verify --mutants: {len(r['killed'])} of {len(r['mutants'])} mutants killed by {args.programs} "
            f"random programs on {args.backend} (seed {args.seed})")
    if r["survived"]:
        text += "\nSURVIVED: " + ", ".join(r["survived"])
    emit(args, r, text)
    return 0 if not r["survived"] else 1
