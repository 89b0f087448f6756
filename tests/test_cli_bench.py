"""``tern bench`` (sw/cli/bench.py): an unknown benchmark is one line with exit code 2; the simulator
benchmark's JSON through ``tern bench``."""

import json

from sw.cli import main
from helpers import assert_one_line_error, run


def test_bench_unknown_name(capsys):
    assert_one_line_error(*run(capsys, "bench", "--only", "nope"), "unknown benchmark 'nope'")


def test_bench_sim_quick_json(capfd):
    """The simulator benchmark through ``tern bench``: identical results on both simulators, and a
    speed ratio that is a measured number (its size is reported, not asserted)."""
    code = main(["bench", "--only", "sim", "--quick", "--json"])
    out, _ = capfd.readouterr()
    r = json.loads(out)
    assert code == 0 and r["failed"] == []
    rows = r["benchmarks"]["sim"]["compare"]
    assert len(rows) == 2 and all(x["equal"] and x["cycles"] > 0 and x["speedup"] > 0 for x in rows)
    (layer,) = r["benchmarks"]["sim"]["layer_2b4t"]
    assert layer["T"] == 1 and layer["cycles"] > 1_000_000
    from hw.sim.results import int8_dot_cpu
    assert r["benchmarks"]["sim"]["sim_product"] == ("int8" if int8_dot_cpu() else "float")


def test_bench_help_lists_every_benchmark(capsys):
    """``tern bench --help`` names every bench/bench_NAME.py with the first words of its docstring."""
    import ast

    import pytest

    from sw.cli.bench import bench_dir
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "benchmarks (--only NAME):" in out
    scripts = sorted(bench_dir().glob("bench_*.py"))
    assert len(scripts) >= 5
    text = " ".join(out.split())
    for s in scripts:
        first = " ".join(ast.get_docstring(ast.parse(s.read_text())).split()[:6])
        assert f" {s.stem.removeprefix('bench_')} {first}" in text, s.name
