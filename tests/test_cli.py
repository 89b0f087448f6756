"""Command-line contract (SPEC section 5): exit codes and one-line errors on bad input."""

import json
import subprocess
import sys

import pytest

from sw.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, needle):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,needle", [
    ((), "required"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
    (("rtl",), "-o/--output"),
    (("rtl", "-o", "x.v", "--rows", "0"), "rows must be between 1 and 256, not 0"),
    (("rtl", "-o", "x.v", "--rows", "four"), "invalid int value: 'four'"),
    (("rtl", "-o", "x.v", "--weight-format", "3bit"), "weight_format must be one of 2bit, base3, not '3bit'"),
    (("rtl", "-o", "x.v", "--acc-width", "8"), "acc_width must be between 15 and 64, not 8"),
    (("rtl", "-o", "x.v", "--config", "/nonexistent/acc.toml"), "no such configuration file"),
    (("rtl", "-o", "out.txt"), "must end in .v"),
    (("rtl", "-o", "/nonexistent-dir/out.v"), "does not exist"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert_one_line_error(*run(capsys, *argv), needle)


def test_bad_toml_is_one_line_exit_2(capsys, tmp_path):
    p = tmp_path / "acc.toml"
    p.write_text("lanes = 32\nrows = [1, 2]\n")
    assert_one_line_error(*run(capsys, "rtl", "-o", str(tmp_path / "o.v"), "--config", str(p)),
                          "rows must be an integer, not [1, 2]")
    assert not (tmp_path / "o.v").exists()


def test_console_entry_point_reports_usage_error():
    r = subprocess.run([sys.executable, "-m", "sw.cli", "rtl", "-o", "x.v", "--lanes", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == "tern: error: flags: lanes must be between 1 and 256, not 0"


# -- tern verify -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (("verify", "--backend", "vhdl"), "unknown backend 'vhdl'"),
    (("verify", "--programs", "0"), "--programs must be between 1 and 1000000, not 0"),
    (("verify", "--programs", "ten"), "invalid int value: 'ten'"),
    (("verify", "--max-instr", "0"), "--max-instr must be between 1 and 1000, not 0"),
    (("verify", "--start", "-1"), "--start must be between 0 and 2**31, not -1"),
    (("verify", "--lanes", "0"), "lanes must be"),
])
def test_verify_bad_input(capsys, argv, needle):
    assert_one_line_error(*run(capsys, *argv), needle)


def test_verify_json_contract(capsys):
    code, out, err = run(capsys, "verify", "--backend", "amaranth", "--programs", "5", "--seed", "11",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert (r["programs"], r["mismatches"], r["cycle_mismatches"], r["seed"]) == (5, 0, 0, 11)
    assert r["cycles"] > 0 and r["first_failure"] is None


def test_verify_fixed_configuration(capsys):
    code, out, _ = run(capsys, "verify", "--programs", "3", "--rows", "3", "--lanes", "5",
                       "--weight-format", "base3", "--bus-bytes", "2", "--act-depth", "16",
                       "--wgt-depth", "4", "--out-depth", "2")
    assert code == 0
    assert "3 random programs on amaranth" in out and "0 output mismatches, 0 cycle mismatches" in out


def test_verify_mismatch_exits_1_and_names_the_replay(capsys, monkeypatch):
    """A simulator whose PE pipeline is one cycle too deep: exit code 1, the first failure named with
    a command line that replays it alone, and the replay fails the same way."""
    import dataclasses

    import hw.sim.machine as machine
    real = machine.rtl_latencies
    monkeypatch.setattr(machine, "rtl_latencies",
                        lambda cfg: dataclasses.replace(real(cfg), pe=real(cfg).pe + 1))
    code, out, _ = run(capsys, "verify", "--programs", "6", "--seed", "3")
    assert code == 1
    assert "0 output mismatches" in out and "0 cycle mismatches" not in out
    replay = out.split("replay: tern ")[1].split(")")[0].split()
    assert replay[:2] == ["verify", "--backend"] and "--start" in replay
    code, out, _ = run(capsys, *replay, "--json")
    r = json.loads(out)
    assert code == 1 and r["programs"] == 1 and r["cycle_mismatches"] == 1


# -- tern bench --------------------------------------------------------------------------------------

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
