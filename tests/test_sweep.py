"""tern sweep (sw/sweep): the space, the Pareto set, the objectives against the estimator, determinism
over the number of Dask workers, resume without duplicate trials, bad input, a real dask scheduler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("distributed")

from hw.config import TernConfig                                    # noqa: E402
from hw.estimate import estimate                                    # noqa: E402
from sw.cli.estimate import model_shape                             # noqa: E402
from sw.sweep import BUILTIN_SPACE, SweepError, check_space, load_space, run_sweep  # noqa: E402
from sw.sweep.study import pareto_front, parse_constraints, parse_objectives  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"rows": [8, 16, 32], "lanes": [32, 64], "clock_mhz": [100.0, 200.0], "memory": ["ddr4", "lpddr5"]}


@pytest.fixture(scope="module")
def demo():
    return model_shape("demo")


@pytest.fixture(scope="module")
def cluster():
    """An in-process Dask cluster of two single-thread workers (the sweep's tasks are the same on any)."""
    from distributed import LocalCluster
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    yield c
    c.close()


def _sweep(tmp, demo, scheduler, **kw):
    kw = {"trials": 12, "sampler": "tpe", "seed": 3, "batch": 4} | kw
    return run_sweep(check_space(SPACE), "demo", demo, out=tmp, scheduler=scheduler, plot=False, **kw)


def _pareto(r):
    return [(p["trial"], p["params"], p["objectives"]) for p in r["pareto"]]


# -- the space -------------------------------------------------------------------------------------------

def test_builtin_space_size():
    s = load_space(None)
    assert list(s) == ["rows", "lanes", "acc_width", "weight_format", "bus_bytes", "wgt_depth", "clock_mhz", "memory"]
    n = 1
    for v in BUILTIN_SPACE.values():
        n *= len(v)
    assert n == 4 * 3 * 2 * 2 * 3 * 2 * 3 * 2 == 1728


@pytest.mark.parametrize("space, message", [
    ({}, "the space is empty"),
    ({"rowz": [1]}, "unknown parameter 'rowz'"),
    ({"rows": []}, "rows has no values"),
    ({"rows": 8}, "rows must be a list"),
    ({"rows": [8, 8]}, "rows lists 8 twice"),
    ({"rows": [0]}, "rows value 0 is not an integer in [1, 256]"),
    ({"memory": ["ddr9"]}, "memory value 'ddr9' is not one of ddr3"),
    ({"clock_mhz": [float("nan")]}, "clock_mhz value nan"),
])
def test_bad_space(space, message):
    with pytest.raises(SweepError) as e:
        check_space(space)
    assert message in str(e.value)


def test_space_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[space]\nrows = [8, 16]\nmemory = ["lpddr5"]\nclock_mhz = [100]\n')
    assert load_space(str(f)) == {"rows": [8, 16], "clock_mhz": [100.0], "memory": ["lpddr5"]}
    f.write_text('[spaces]\nrows = [8]\n')
    with pytest.raises(SweepError, match="unknown table or key 'spaces'"):
        load_space(str(f))


def test_named_space():
    s = load_space("2b4t_decode")
    assert s == load_space(str(ROOT / "sw" / "sweep" / "spaces" / "2b4t_decode.toml"))
    n = 1
    for v in s.values():
        n *= len(v)
    assert n == 3 * 2 * 2 * 2 * 2 * 2 * 3 * 2 * 2 == 1152
    with pytest.raises(SweepError, match="nosuchspace: no such file"):
        load_space("nosuchspace")


def test_objectives_and_constraints():
    assert parse_objectives("area,tokens_per_s") == ("area", "tokens_per_s")
    for bad in ("area,foo", "", "area,area"):
        with pytest.raises(SweepError):
            parse_objectives(bad)
    assert parse_constraints(["area<=0.5", "tokens_per_s >= 1e3"]) == (("area", "<=", 0.5), ("tokens_per_s", ">=", 1000.0))
    for bad in (["area<0.5"], ["cost<=1"], ["area<=inf"]):
        with pytest.raises(SweepError):
            parse_constraints(bad)


def test_pareto_front_brute_force():
    pts = [[1, 5], [2, 2], [5, 1], [3, 3], [2, 2.5], [1, 6]]
    # minimize both: [3,3] dominated by [2,2]; [2,2.5] by [2,2]; [1,6] by [1,5]
    assert pareto_front(pts, ["minimize", "minimize"]) == [0, 1, 2]
    # minimize the first, maximize the second: [1,6] dominates every other point
    got = pareto_front(pts, ["minimize", "maximize"])
    want = [i for i, p in enumerate(pts) if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in pts)]
    assert got == want == [5]


# -- the study --------------------------------------------------------------------------------------------

def test_objectives_equal_the_estimate(tmp_path, demo, cluster):
    r = _sweep(tmp_path / "s", demo, cluster.scheduler_address, trials=8, sampler="random")
    assert r["trials"] == 8 and r["total"] == 8 and r["duplicates"] == 0 and r["pareto"]
    for p in r["pareto"][:3]:
        prm = p["params"]
        e = estimate(demo, TernConfig(rows=prm["rows"], lanes=prm["lanes"]), clock_mhz=prm["clock_mhz"],
                     memory=prm["memory"])
        assert p["objectives"] == {"energy_per_token": e["energy_per_token_j"], "tokens_per_s": e["tokens_per_s"],
                                   "area": e["area_mm2"]}
    out = tmp_path / "s"
    saved = json.loads((out / "pareto.json").read_text())
    assert _pareto(saved) == _pareto(r)
    rows = (out / "pareto.csv").read_text().splitlines()
    assert rows[0] == "trial,rows,lanes,clock_mhz,memory,energy_per_token,tokens_per_s,area"
    assert len(rows) == 1 + len(r["pareto"])
    assert sorted(os.listdir(out / "trials")) == [f"{i:06d}" for i in range(8)]
    assert "best energy_per_token" in (out / "best.txt").read_text()


def test_grid_covers_the_space_once(tmp_path, demo, cluster):
    r = _sweep(tmp_path / "g", demo, cluster.scheduler_address, trials=100, sampler="grid")
    assert r["total"] == 24                           # capped at the grid's 3 x 2 x 2 x 2 points
    import optuna
    st = optuna.load_study(study_name="tern-sweep", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "g" / "study.log"))))
    seen = {tuple(sorted(t.params.items())) for t in st.trials}
    assert len(seen) == 24


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_same_pareto_for_1_and_2_workers(tmp_path, demo, sampler):
    from distributed import LocalCluster
    results = []
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
            results.append(_sweep(tmp_path / f"w{n}", demo, c.scheduler_address, sampler=sampler))
    assert results[0]["workers"] == 1 and results[1]["workers"] == 2
    assert _pareto(results[0]) == _pareto(results[1])
    assert results[0]["trials"] == results[1]["trials"] == 12


def test_constraints_filter_the_pareto_set(tmp_path, demo, cluster):
    free = _sweep(tmp_path / "a", demo, cluster.scheduler_address, trials=8, sampler="random")
    cap = sorted(p["objectives"]["area"] for p in free["pareto"])[len(free["pareto"]) // 2]
    r = _sweep(tmp_path / "b", demo, cluster.scheduler_address, trials=8, sampler="random",
               constraints=parse_constraints([f"area<={cap!r}"]))
    assert r["pareto"] and all(p["objectives"]["area"] <= cap for p in r["pareto"])
    assert r["infeasible"] > 0


def test_fits_a_board_constraint(tmp_path, demo, cluster):
    """fits=icebreaker: the Pareto set holds only configurations the FPGA model fits on the UP5K."""
    from hw.estimate.fpga import fpga_estimate
    space = check_space({"rows": [2, 4, 16], "lanes": [16, 64], "act_depth": [256], "wgt_depth": [64],
                         "out_depth": [8], "memory": ["ddr4"]})
    cons = parse_constraints(["fits=icebreaker"])
    assert cons == (("fits", "=", "icebreaker"),)
    r = run_sweep(space, "demo", demo, out=tmp_path / "f", scheduler=cluster.scheduler_address, plot=False,
                  trials=6, sampler="grid", seed=1, batch=3, constraints=cons)
    assert r["trials"] == 6 and r["constraints"] == ["fits=icebreaker"]
    # 2 x 64, 4 x 64, 16 x 16 and 16 x 64 need more than the UP5K's 5280 LUTs (model: 6.8k, 11k, 10k, 37k)
    assert r["infeasible"] == 4
    assert r["pareto"]
    for p in r["pareto"]:
        want = fpga_estimate(TernConfig(rows=p["params"]["rows"], lanes=p["params"]["lanes"], act_depth=256,
                                        wgt_depth=64, out_depth=8), "icebreaker")
        assert p["fpga"]["icebreaker"]["luts"] == want["luts"] < 5280 and p["fpga"]["icebreaker"]["fits"]
    with pytest.raises(SweepError, match="unknown FPGA board 'de10'"):
        parse_constraints(["fits=de10"])


def test_resume_after_interrupt_adds_no_duplicate(tmp_path, demo, cluster):
    whole = _sweep(tmp_path / "whole", demo, cluster.scheduler_address)
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path / "cut", demo, cluster.scheduler_address, progress=stop)
    assert calls == [4, 8]
    again = _sweep(tmp_path / "cut", demo, cluster.scheduler_address)
    assert again["evaluated_now"] == 4 and again["total"] == 12 and again["duplicates"] == 0
    assert _pareto(again) == _pareto(whole)
    more = _sweep(tmp_path / "cut", demo, cluster.scheduler_address, trials=16)
    assert more["evaluated_now"] == 4 and more["total"] == 16
    with pytest.raises(SweepError, match="holds a different sweep"):
        _sweep(tmp_path / "cut", demo, cluster.scheduler_address, seed=4)


def _journal_trials(out):
    import optuna
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.log")))
    return optuna.load_study(study_name="tern-sweep", storage=storage).get_trials()


@pytest.mark.parametrize("after", [0, 2])
def test_killed_mid_ask_resumes_the_same_trial(tmp_path, demo, cluster, monkeypatch, after):
    """A run stopped while it writes trial 5's parameters (after 0 or 2 of the 4) leaves that trial
    RUNNING with only those in the journal; the resumed run gives it the parameters an uninterrupted run
    gives it, and every other trial too."""
    import optuna
    whole = _sweep(tmp_path / "whole", demo, cluster.scheduler_address, sampler="nsga2")
    real = optuna.trial.Trial._suggest
    written = []

    def suggest(self, name, dist):
        if isinstance(self.storage, optuna.storages.JournalStorage) and self.number == 5 and not written:
            if len(self._cached_frozen_trial.params) == after:
                written.append(dict(self._cached_frozen_trial.params))
                raise KeyboardInterrupt
        return real(self, name, dist)
    monkeypatch.setattr(optuna.trial.Trial, "_suggest", suggest)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path / "cut", demo, cluster.scheduler_address, sampler="nsga2")
    cut = _journal_trials(tmp_path / "cut")
    assert [t.state.name for t in cut] == ["COMPLETE"] * 4 + ["RUNNING"] * 2
    assert len(cut[5].params) == after == len(written[0])
    again = _sweep(tmp_path / "cut", demo, cluster.scheduler_address, sampler="nsga2")
    assert again["total"] == 12 and again["duplicates"] == 0
    assert [t.params for t in _journal_trials(tmp_path / "cut")] == [t.params for t in _journal_trials(tmp_path / "whole")]
    assert _pareto(again) == _pareto(whole)


def test_one_sweep_at_a_time_per_folder(tmp_path, demo, cluster):
    import fcntl
    (tmp_path / "s").mkdir()
    with open(tmp_path / "s" / "sweep.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SweepError, match="in use by another tern sweep"):
            _sweep(tmp_path / "s", demo, cluster.scheduler_address, trials=2)
    assert _sweep(tmp_path / "s", demo, cluster.scheduler_address, trials=2)["total"] == 2


def test_trial_folder_result_is_reused(tmp_path, demo):
    from sw.sweep.study import evaluate_trial
    prm = {"rows": 8, "lanes": 32, "clock_mhz": 100.0, "memory": "ddr4"}
    trials = tmp_path / "trials"
    a = evaluate_trial(0, prm, demo, str(trials / "0"), 1, 16)
    e = estimate(demo, TernConfig(rows=8, lanes=32), clock_mhz=100.0, memory="ddr4", context=16)
    assert a["metrics"]["energy_per_token"] == e["energy_per_token_j"] and "cached" not in a
    mtime = (trials / "0" / "result.json").stat().st_mtime_ns
    assert evaluate_trial(0, prm, demo, str(trials / "0"), 1, 16) == a          # a retried trial
    assert (trials / "0" / "result.json").stat().st_mtime_ns == mtime
    b = evaluate_trial(1, prm, demo, str(trials / "1"), 1, 16)                  # the same point again
    assert b["cached"] is True and b["metrics"] == a["metrics"] and b["number"] == 1
    c = evaluate_trial(2, prm, demo, str(trials / "2"), 1, 17)                  # another context: priced
    assert "cached" not in c
    bad = evaluate_trial(3, {"rows": 8, "lanes": 256, "acc_width": 8}, demo, str(trials / "3"), 1, 16)
    assert "acc_width" in bad["error"]


# -- the command line ------------------------------------------------------------------------------------

def _tern(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "sw.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, **kw)


@pytest.mark.parametrize("args, message", [
    (["--objectives", "area,cost"], "unknown objective 'cost'"),
    (["--sampler", "anneal"], "unknown --sampler 'anneal'"),
    (["--space", "EMPTY"], "the space is empty"),
    (["--space", "UNKNOWN"], "unknown parameter 'rowz'"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--constraint", "fits=de10"], "unknown FPGA board 'de10'"),
    (["--constraint", "area<"], "is not NAME<=VALUE, NAME>=VALUE or fits=BOARD"),
])
def test_cli_bad_input(tmp_path, args, message):
    (tmp_path / "empty.toml").write_text("[space]\n")
    (tmp_path / "unknown.toml").write_text("[space]\nrowz = [1]\n")
    args = [{"EMPTY": str(tmp_path / "empty.toml"), "UNKNOWN": str(tmp_path / "unknown.toml")}.get(a, a) for a in args]
    r = _tern("sweep", "--model", "demo", "--out", str(tmp_path / "o"), "--quiet", *args)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_dask_scheduler_and_worker(tmp_path):
    """`dask scheduler` + `dask worker` processes on localhost give the local run's Pareto set; a
    sweep killed mid-batch (SIGKILL) resumes there with no duplicate trial."""
    port = _free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    bin_ = Path(sys.executable).parent
    procs = [subprocess.Popen([bin_ / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        time.sleep(3)
        procs.append(subprocess.Popen([bin_ / "dask", "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2",
                                       "--nthreads", "1", "--dashboard-address", ":0"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        common = ["sweep", "--model", "demo", "--trials", "16", "--batch", "4", "--sampler", "nsga2", "--seed", "5",
                  "--quiet", "--json", "--no-plot"]
        remote = _tern(*common, "--out", str(tmp_path / "r"), "--scheduler", f"tcp://127.0.0.1:{port}", env=env)
        assert remote.returncode == 0, remote.stderr
        local = _tern(*common, "--out", str(tmp_path / "l"), "--workers", "2", env=env)
        assert local.returncode == 0, local.stderr
        r, l_ = json.loads(remote.stdout), json.loads(local.stdout)
        assert r["workers"] == 2 and r["trials"] + r["failed"] == 16
        assert _pareto(r) == _pareto(l_)
        # killed mid-sweep, then resumed
        p = subprocess.Popen([sys.executable, "-m", "sw.cli", *common, "--out", str(tmp_path / "k"),
                              "--scheduler", f"tcp://127.0.0.1:{port}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        trials = tmp_path / "k" / "trials"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (trials.exists() and len(list(trials.glob("*/result.json"))) >= 6):
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        again = _tern(*common, "--out", str(tmp_path / "k"), "--scheduler", f"tcp://127.0.0.1:{port}", env=env)
        assert again.returncode == 0, again.stderr
        a = json.loads(again.stdout)
        assert a["total"] == 16 and a["duplicates"] == 0 and a["evaluated_now"] < 16
        assert _pareto(a) == _pareto(l_)
        # a worker process killed while the sweep runs: the scheduler reruns its tasks elsewhere (its
        # nanny starts a new one); no trial is lost or counted twice
        from distributed import Client
        p = subprocess.Popen([sys.executable, "-m", "sw.cli", *common, "--out", str(tmp_path / "w"),
                              "--scheduler", f"tcp://127.0.0.1:{port}"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        trials = tmp_path / "w" / "trials"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (trials.exists() and len(list(trials.glob("*/result.json"))) >= 2):
            time.sleep(0.02)
        with Client(f"tcp://127.0.0.1:{port}", timeout="10s") as c:
            pid = sorted(c.run(os.getpid).values())[0]
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        w = json.loads(stdout)
        assert w["total"] == 16 and w["duplicates"] == 0 and w["evaluated_now"] == 16
        assert _pareto(w) == _pareto(l_)
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
