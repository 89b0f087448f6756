"""An Optuna multi-objective study of a model on the accelerator's design space, run on Dask.

Determinism: trials are asked in batches of ``batch`` (a fixed number, independent of the number of
workers); every trial's parameters are fixed when it is asked, by a sampler seeded from the sweep's
seed and the trial's number, from the history of the batches before it; the batch is then evaluated
on the cluster (one task per trial, in any order, on any worker) and told in trial-number order. The
same seed therefore gives the same trials, the same values and the same Pareto set whatever the number
of workers.

Storage and resume: the study is an Optuna journal (``DIR/study.log``), each trial writes its result
into its own folder (``DIR/trials/NNNNNN/result.json``, atomically) and ``DIR/sweep.json`` records what
the sweep is. A sweep run again on the same DIR first finishes the trials that were asked but never
told (same numbers, same parameters: a result already in a trial's folder is read, not recomputed),
then asks new ones until ``trials`` in all: no trial is run under two numbers or counted twice. A
worker that dies mid-trial has its task retried by Dask (``retries``, and the scheduler reschedules
the tasks of a lost worker).

Objectives and constraints come from :func:`hw.estimate.estimate` (the whole token); constraints are
Optuna constraint values (``<= 0`` feasible, ``Trial.set_constraint``), read by the samplers that use
them (NSGA-II, TPE) and by the Pareto set (feasible trials only).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np

from hw.fileio import atomic_write_many
from sw.sweep.space import SweepError, grid_size, split_params

__all__ = ["OBJECTIVES", "SAMPLERS", "DEFAULT_OBJECTIVES", "DEFAULT_BATCH", "parse_objectives",
           "parse_constraints", "run_sweep", "best_table", "evaluate_trial", "pareto_front"]

#: objective name: (key of the estimate's result, direction, unit)
OBJECTIVES = {
    "energy_per_token": ("energy_per_token_j", "minimize", "J"),
    "tokens_per_s": ("tokens_per_s", "maximize", "tokens/s"),
    "area": ("area_mm2", "minimize", "mm^2"),
    "power": ("average_power_w", "minimize", "W"),
}
DEFAULT_OBJECTIVES = ("energy_per_token", "tokens_per_s", "area")
SAMPLERS = ("grid", "random", "nsga2", "tpe")
#: Trials asked (and then evaluated in parallel) together; part of a sweep's definition.
DEFAULT_BATCH = 16
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")
_FITS = re.compile(r"^\s*fits\s*=\s*(\S+?)\s*$")


def parse_objectives(spec) -> tuple:
    names = tuple(n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip())
    if not names:
        raise SweepError("no objective given (choose from " + ", ".join(OBJECTIVES) + ")")
    for n in names:
        if n not in OBJECTIVES:
            raise SweepError(f"unknown objective {n!r} (choose from {', '.join(OBJECTIVES)})")
    if len(set(names)) != len(names):
        raise SweepError(f"an objective is named twice in {','.join(names)!r}")
    return names


def parse_constraints(specs) -> tuple:
    """``["area<=2", "tokens_per_s>=5", "fits=icebreaker"]`` -> ``(("area", "<=", 2.0), ...,
    ("fits", "=", "icebreaker"))``: a bound on an objective's quantity (whether or not it is an
    objective of the sweep), or that the configuration fits a named FPGA board
    (:func:`hw.estimate.fpga.fpga_estimate`: LUTs and block RAM)."""
    from hw.estimate.fpga import FpgaError, get_device
    out = []
    for s in specs or ():
        fits = _FITS.match(s)
        if fits:
            try:
                get_device(fits.group(1))
            except FpgaError as e:
                raise SweepError(f"constraint {s!r}: {e}") from None
            out.append(("fits", "=", fits.group(1)))
            continue
        m = _CONSTRAINT.match(s)
        if not m:
            raise SweepError(f"constraint {s!r} is not NAME<=VALUE, NAME>=VALUE or fits=BOARD "
                             f"(NAME one of {', '.join(OBJECTIVES)})")
        name, op, value = m.groups()
        if name not in OBJECTIVES:
            raise SweepError(f"constraint {s!r}: unknown quantity {name!r} (choose from {', '.join(OBJECTIVES)})")
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise SweepError(f"constraint {s!r}: {value!r} is not a finite number")
        out.append((name, op, v))
    return tuple(out)


def _constraint_name(n, op, v) -> str:
    return f"{n}{op}{v}" if n == "fits" else f"{n}{op}{v:g}"


# -- one trial (runs on a Dask worker) ---------------------------------------------------------------

def evaluate_trial(number: int, params: dict, shape, trial_dir: str, tokens: int, context: int) -> dict:
    """Price trial ``number`` (``params``: the space's parameters) on ``shape`` (a
    :class:`hw.estimate.ModelShape`); the result is written to ``trial_dir/result.json`` (atomically)
    and returned. A result already there for the same parameters is read back instead (a retried or
    resumed trial), and a point another trial of the sweep already priced (same parameters, model,
    tokens and context: ``DIR/cache/``) takes that trial's figures (``"cached": true``): the estimator
    is deterministic, so they are the figures it would compute again. A combination that is not a
    valid configuration returns ``{"error": ...}``."""
    from hw.config import ConfigError, TernConfig
    from hw.estimate import EstimateError, estimate
    from hw.estimate.model import set_cache_dir
    path = Path(trial_dir) / "result.json"
    try:
        old = json.loads(path.read_text())
        if old.get("params") == params and old.get("number") == number:
            return old
    except (OSError, ValueError):
        pass
    # the same point priced by an earlier trial of the sweep: its figures, not a second estimate
    key = hashlib.sha256(json.dumps([params, repr(shape), tokens, context], sort_keys=True).encode()).hexdigest()
    cache = Path(trial_dir).parent.parent / "cache" / f"{key[:32]}.json"
    # the estimator's layer passes and DRAM schedules, shared by the sweep's workers
    set_cache_dir(Path(trial_dir).parent.parent / "cache" / "layers")
    t0 = time.perf_counter()
    out = {"number": number, "params": params}
    try:
        out |= {k: v for k, v in json.loads(cache.read_text()).items() if k in ("config", "metrics", "error")}
        out["cached"] = True
    except (OSError, ValueError):
        cfg_params, run_params = split_params(params)
        try:
            cfg = TernConfig.from_dict(cfg_params, source=f"trial {number}")
            r = estimate(shape, cfg, tokens=tokens, context=context, **run_params)
            out["config"] = cfg.to_dict()
            out["metrics"] = {name: r[k] for name, (k, _, _) in OBJECTIVES.items()}
        except (ConfigError, EstimateError) as e:
            out["error"] = str(e).splitlines()[0]
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    text = json.dumps(out, indent=1)
    for f in (path, cache):
        f.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_many({path: lambda p: p.write_text(text)})
    if not out.get("cached"):
        atomic_write_many({cache: lambda p: p.write_text(text)})
    return json.loads(text)


# -- the study ------------------------------------------------------------------------------------------

def _sampler(kind: str, seed: int, number: int):
    import optuna
    s = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    if kind in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=s)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s)
    return optuna.samplers.TPESampler(seed=s, multivariate=True)


def _fpga(config: dict, constraints) -> dict:
    """The FPGA figures of a trial's configuration on each board a ``fits=`` constraint names."""
    from hw.config import TernConfig
    from hw.estimate.fpga import fpga_estimate
    boards = [v for n, _, v in constraints if n == "fits"]
    if not boards:
        return {}
    cfg = TernConfig.from_dict(config)
    return {b: {k: v for k, v in fpga_estimate(cfg, b).items() if k not in ("board", "device", "family")}
            for b in boards}


def _constraint_values(metrics: dict, constraints, fpga: dict | None = None) -> list:
    """Optuna constraint values (feasible when <= 0): ``fits``: the FPGA model's ``fit_margin``."""
    return [fpga[v]["fit_margin"] if n == "fits" else (metrics[n] - v) if op == "<=" else (v - metrics[n])
            for n, op, v in constraints]


def pareto_front(points: list, directions: list) -> list:
    """The points not dominated by another (``points``: lists of objective values), indices in order."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    a = np.asarray(points, dtype=float).reshape(len(points), len(directions)) * sign
    keep = []
    for i in range(len(a)):
        dominated = np.any(np.all(a <= a[i], axis=1) & np.any(a < a[i], axis=1))
        if not dominated:
            keep.append(i)
    return keep


def _client(scheduler, workers):
    import logging

    from distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout="5s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise SweepError(f"cannot reach the Dask scheduler {scheduler!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _lock(out: Path):
    """An exclusive lock on ``out`` for this process (released when it closes or dies): two sweeps never
    write one study at once."""
    import fcntl
    f = open(out / "sweep.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SweepError(f"{out} is in use by another tern sweep (wait for it, or use another --out)") from None
    return f


def _definition(space, model, objectives, constraints, sampler, seed, batch, tokens, context) -> dict:
    return {"space": space, "model": model, "objectives": list(objectives),
            "constraints": [list(c) for c in constraints], "sampler": sampler, "seed": seed, "batch": batch,
            "tokens": tokens, "context": context}


def run_sweep(space: dict, model: str, shape, *, objectives=DEFAULT_OBJECTIVES, constraints=(),
              trials: int = 100, sampler: str = "tpe", seed: int = 0, out, scheduler: str | None = None,
              workers: int | None = None, batch: int = DEFAULT_BATCH, tokens: int = 1, context: int | None = None,
              progress=None, plot: bool = True) -> dict:
    """Run (or resume) the sweep stored in ``out`` until ``trials`` trials exist; returns the summary
    (``trials``: completed, ``pareto``: list of ``{trial, config, params, objectives}``) and writes the
    outputs (see :func:`write_outputs`). ``shape``: the model's :class:`hw.estimate.ModelShape`."""
    import optuna
    from hw.estimate.model import DEFAULT_CONTEXT
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState
    if sampler not in SAMPLERS:
        raise SweepError(f"unknown sampler {sampler!r} (choose from {', '.join(SAMPLERS)})")
    objectives = parse_objectives(objectives)
    constraints = tuple(constraints)
    context = DEFAULT_CONTEXT if context is None else context
    if not isinstance(trials, int) or trials < 1:
        raise SweepError(f"trials must be a positive integer, not {trials!r}")
    if sampler == "grid":
        trials = min(trials, grid_size(space))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {str(out)!r} is a file, not a folder")
    definition = _definition(space, model, objectives, constraints, sampler, seed, batch, tokens, context)
    meta = out / "sweep.json"
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except ValueError:
            raise SweepError(f"{meta}: not a sweep's definition (not JSON)") from None
        if old != json.loads(json.dumps(definition)):
            diff = sorted(k for k in definition if old.get(k) != json.loads(json.dumps(definition[k])))
            raise SweepError(f"{out} holds a different sweep ({', '.join(diff) or 'its definition'} differs): "
                             f"use another --out")
    t_start = time.perf_counter()
    client, cluster = _client(scheduler, workers)      # an unreachable scheduler: nothing written
    lock = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = _lock(out)
        if not meta.exists():
            atomic_write_many({meta: lambda p: p.write_text(json.dumps(definition, indent=1))})

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.log")))
        directions = [OBJECTIVES[o][1] for o in objectives]
        study = optuna.create_study(study_name="tern-sweep", storage=storage, directions=directions,
                                    load_if_exists=True)
        dists = {k: CategoricalDistribution(v) for k, v in space.items()}
        names = list(space)
        order = np.random.default_rng(seed).permutation(grid_size(space)) if sampler == "grid" else None

        def grid_point(i):
            idx, rest = [], int(order[i])
            for n in reversed(names):
                rest, j = divmod(rest, len(space[n]))
                idx.append(j)
            return {n: space[n][j] for n, j in zip(names, reversed(idx))}

        study_id = storage.get_study_id_from_name(study.study_name)

        def sample(number):
            """Trial ``number``'s parameters and its sampler's bookkeeping, drawn on an in-memory copy of
            the study: nothing reaches the journal until all of them are known, so a run killed while
            sampling leaves no trial with half its parameters. The copy gets the study's attributes (NSGA-II
            caches each generation's parents there, by trial id) and gives back any it adds."""
            mem = optuna.storages.InMemoryStorage()
            scratch = optuna.create_study(storage=mem, directions=directions,
                                          sampler=_sampler(sampler, seed, number))
            scratch_id = mem.get_study_id_from_name(scratch.study_name)
            before = storage.get_study_system_attrs(study_id)
            for k, v in before.items():
                mem.set_study_system_attr(scratch_id, k, v)
            scratch.add_trials(study.get_trials(deepcopy=False))
            if any(mem.get_trial_id_from_study_id_trial_number(scratch_id, n)
                   != storage.get_trial_id_from_study_id_trial_number(study_id, n) for n in range(number)):
                raise SweepError(f"{out}: the study's trial ids are not its trial numbers")
            t = scratch.ask(dists)
            for k, v in mem.get_study_system_attrs(scratch_id).items():
                if before.get(k) != v:
                    storage.set_study_system_attr(study_id, k, v)
            attrs = scratch.get_trials(deepcopy=False)[-1].system_attrs
            return {k: t.params[k] for k in names}, {k: v for k, v in attrs.items() if k != "fixed_params"}

        def ask(number):
            study.sampler = _sampler(sampler, seed, number)
            waiting = [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
            if not waiting:   # (one waiting: enqueued by a run killed before it asked it)
                params, attrs = (grid_point(number), {}) if order is not None else sample(number)
                # one journal record holds every parameter; the ask below takes them as fixed
                study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING,
                                                          system_attrs={**attrs, "fixed_params": params}))
            t = study.ask(dists)
            if t.number != number:   # a trial someone else added to the study: not ours to number
                raise SweepError(f"{out}: the study's next trial is {t.number}, expected {number}")
            return t

        n_workers = len(client.scheduler_info(n_workers=-1)["workers"]) if scheduler else (workers or os.cpu_count() or 1)
        done = 0
        run_id = uuid.uuid4().hex[:12]
        while True:
            existing = study.get_trials(deepcopy=False)
            pending = [optuna.trial.Trial(study, t._trial_id) for t in existing if t.state == TrialState.RUNNING]
            if not pending:
                first = sum(t.state != TrialState.WAITING for t in existing)
                if first >= trials:
                    break
                pending = [ask(n) for n in range(first, min(first + batch, trials))]
            futures = []
            for t in pending:
                # a trial asked by a run killed mid-ask: its remaining parameters are its fixed ones
                params = {k: t.suggest_categorical(k, space[k]) for k in names}
                futures.append(client.submit(evaluate_trial, t.number, params, shape,
                                             str(out / "trials" / f"{t.number:06d}"), tokens, context,
                                             key=f"tern-sweep-{run_id}-{t.number}", pure=False, retries=3))
            results = client.gather(futures)
            for t, r in sorted(zip(pending, results), key=lambda tr: tr[0].number):
                if "error" in r:
                    t.set_user_attr("error", r["error"])
                    study.tell(t, state=TrialState.FAIL)
                else:
                    t.set_user_attr("metrics", r["metrics"])
                    fpga = _fpga(r["config"], constraints)
                    if fpga:
                        t.set_user_attr("fpga", fpga)
                    values = _constraint_values(r["metrics"], constraints, fpga)
                    t.set_user_attr("constraints", values)
                    for (n, op, v), c in zip(constraints, values):   # what NSGA-II and TPE read
                        t.set_constraint(_constraint_name(n, op, v), c)
                    study.tell(t, [r["metrics"][o] for o in objectives])
            done += len(pending)
            if progress is not None:
                progress(len(study.get_trials(deepcopy=False)), trials)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        if lock is not None:
            lock.close()
    summary = summarize(study, space, objectives, constraints, out)
    summary.update({"sampler": sampler, "seed": seed, "model": model, "batch": batch, "workers": n_workers,
                    "evaluated_now": done, "wall_s": round(time.perf_counter() - t_start, 3)})
    write_outputs(summary, out, plot=plot)
    summary.pop("all")
    return summary


def summarize(study, space, objectives, constraints, out) -> dict:
    """The study's completed trials, its feasible Pareto set and the best point per objective."""
    from optuna.trial import TrialState
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if all(c <= 0 for c in t.user_attrs.get("constraints", []))]
    directions = [OBJECTIVES[o][1] for o in objectives]
    front = [feasible[i] for i in pareto_front([t.values for t in feasible], directions)] if feasible else []

    def point(t):
        from hw.config import TernConfig
        cfg, run = split_params(t.params)
        p = {"trial": t.number, "params": dict(t.params), "config": TernConfig.from_dict(cfg).to_dict() | run,
             "objectives": dict(zip(objectives, t.values)), "metrics": t.user_attrs["metrics"]}
        if "fpga" in t.user_attrs:
            p["fpga"] = t.user_attrs["fpga"]
        return p

    best = {}
    for o, d in zip(objectives, directions):
        if feasible:
            i = objectives.index(o)
            t = (min if d == "minimize" else max)(feasible, key=lambda t: (t.values[i] if d == "minimize"
                                                                           else t.values[i], -t.number))
            best[o] = point(t)
    numbers = [t.number for t in all_trials]
    return {"trials": len(complete), "total": len(all_trials),
            "failed": sum(t.state == TrialState.FAIL for t in all_trials),
            "infeasible": len(complete) - len(feasible), "duplicates": len(numbers) - len(set(numbers)),
            "objectives": list(objectives), "directions": directions,
            "constraints": [_constraint_name(n, op, v) for n, op, v in constraints], "space": space,
            "pareto": [point(t) for t in sorted(front, key=lambda t: t.number)], "best": best, "out": str(out),
            "all": [(t.values, t.number) for t in feasible]}


def best_table(summary) -> str:
    objectives = summary["objectives"]
    rows = [["objective", "trial"] + [f"{o} ({OBJECTIVES[o][2]})" for o in objectives] + ["config"]]
    for o, p in summary["best"].items():
        rows.append([f"best {o}", str(p["trial"])] + [f"{p['objectives'][k]:.6g}" for k in objectives]
                    + [" ".join(f"{k}={v}" for k, v in p["params"].items())])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    head = (f"{summary['trials']} completed trials ({summary['failed']} failed, {summary['infeasible']} "
            f"infeasible), {len(summary['pareto'])} on the Pareto front")
    return "\n".join([head, *lines]) + "\n"


def write_outputs(summary: dict, out: Path, plot: bool = True) -> None:
    """``pareto.json``, ``pareto.csv``, ``best.txt`` and (``plot``) ``pareto.png`` in ``out``, all or nothing."""
    objectives = summary["objectives"]
    pareto = summary["pareto"]
    public = {k: v for k, v in summary.items() if k != "all"}

    def write_csv(p):
        params = list(summary["space"])
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trial", *params, *objectives])
            for pt in pareto:
                w.writerow([pt["trial"], *(pt["params"][k] for k in params), *(repr(pt["objectives"][o]) for o in objectives)])

    targets = {out / "pareto.json": lambda p: p.write_text(json.dumps(public, indent=1)),
               out / "pareto.csv": write_csv,
               out / "best.txt": lambda p: p.write_text(best_table(summary))}
    if plot:
        targets[out / "pareto.png"] = lambda p: _plot(p, summary)
    atomic_write_many(targets)


def _plot(path, summary) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    objectives = summary["objectives"]
    pairs = list(itertools.combinations(range(len(objectives)), 2)) or [(0, 0)]
    fig = Figure(figsize=(5 * len(pairs), 4.2))
    allv = np.array([v for v, _ in summary["all"]]).reshape(-1, len(objectives))
    front = np.array([[p["objectives"][o] for o in objectives] for p in summary["pareto"]]).reshape(-1, len(objectives))
    for k, (i, j) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), k + 1)
        ax.scatter(allv[:, i], allv[:, j], s=8, c="0.7", label="feasible trials")
        ax.scatter(front[:, i], front[:, j], s=18, c="tab:red", label="Pareto set")
        ax.set_xlabel(f"{objectives[i]} ({OBJECTIVES[objectives[i]][2]})")
        ax.set_ylabel(f"{objectives[j]} ({OBJECTIVES[objectives[j]][2]})")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"tern sweep {summary['model']}: {summary['trials']} trials, {summary['sampler']} sampler")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
