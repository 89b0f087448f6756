"""``tern verify`` (sw/cli/verify.py): JSON contract, a fixed configuration, bad input, and a mismatch
that exits 1 and names the command line that replays it."""

import json

from helpers import bad_input_test, run

test_verify_bad_input = bad_input_test("""
    verify --backend vhdl => unknown backend 'vhdl'
    verify --programs 0 => --programs must be between 1 and 1000000, not 0
    verify --programs ten => invalid int value: 'ten'
    verify --max-instr 0 => --max-instr must be between 1 and 1000, not 0
    verify --start -1 => --start must be between 0 and 2**31, not -1
    verify --lanes 0 => lanes must be
    verify --mutants --mutant nope => unknown mutant 'nope'
    verify --formal --property nope => unknown property 'nope'
    verify --all => --all and --property go with --formal
    verify --formal --rows 2 => the properties fix their own configurations
""")


def test_verify_formal_json(capsys):
    from hw.verify.formal import tools_available
    if not tools_available():
        import pytest
        pytest.skip("yowasp-sby / yices not installed")
    code, out, err = run(capsys, "verify", "--formal", "--property", "out_fifo_d2", "--json", "-q")
    r = json.loads(out)
    assert code == 0 and err == ""
    assert (r["properties"], r["proved"], r["failed"]) == (1, 1, [])
    assert r["results"][0]["name"] == "out_fifo_d2" and r["results"][0]["mode"] == "bmc"


def test_verify_json_contract(capsys):
    code, out, err = run(capsys, "verify", "--backend", "amaranth", "--programs", "5", "--seed", "11",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert (r["programs"], r["mismatches"], r["cycle_mismatches"], r["seed"]) == (5, 0, 0, 11)
    assert r["cycles"] > 0 and r["first_failure"] is None
    # coverage: what the cases reached, recounted here from the same cases
    from hw.isa import is_valid
    from hw.verify.generate import random_case
    cases = [random_case(11, i) for i in range(5)]
    assert r["wraps"] == sum(c.wraps > 0 for c in cases)
    assert r["resets"] == sum(c.interrupt is not None for c in cases)
    assert r["bad_instructions"] == sum(not is_valid(c.config, i) for c in cases for i in c.program.instrs)
    assert r["configs"] == len({c.config for c in cases}) == 5
    assert r["invalid_bytes"] >= 0 and r["withdrawals"] >= 0


def test_verify_fixed_configuration(capsys):
    code, out, _ = run(capsys, "verify", "--programs", "3", "--rows", "3", "--lanes", "5",
                       "--weight-format", "base3", "--bus-bytes", "2", "--act-depth", "16",
                       "--wgt-depth", "4", "--out-depth", "2")
    assert code == 0
    assert "3 random programs on amaranth" in out and "0 output mismatches, 0 cycle mismatches" in out


def test_verify_mismatch_exits_1_and_names_the_replay(capsys, monkeypatch):
    """A simulator whose results leave ``out`` one cycle late (as if its PE pipeline were one cycle too
    deep): exit code 1, the first failure named with a command line that replays it alone, and the
    replay fails the same way."""
    import dataclasses

    import hw.verify.differential as differential
    real = differential.simulate

    def late_simulate(config, program=None, timing=None, **streams):
        res = real(config, program, timing, **streams)
        if len(res.out_cycles) == 0:
            return res
        return dataclasses.replace(res, cycles=res.cycles + 1, out_cycles=res.out_cycles + 1)

    monkeypatch.setattr(differential, "simulate", late_simulate)
    code, out, _ = run(capsys, "verify", "--programs", "6", "--seed", "3")
    assert code == 1
    assert "0 output mismatches" in out and "0 cycle mismatches" not in out
    replay = out.split("replay: tern ")[1].split(")")[0].split()
    assert replay[:2] == ["verify", "--backend"] and "--start" in replay
    code, out, _ = run(capsys, *replay, "--json")
    r = json.loads(out)
    assert code == 1 and r["programs"] == 1 and r["cycle_mismatches"] == 1


def test_verify_mutants_json(capsys):
    """The mutation gate on two mutants: both killed (exit 0), the first killing case named."""
    code, out, _ = run(capsys, "verify", "--mutants", "--mutant", "rows_swapped", "--mutant", "minus_128_as_127",
                       "--programs", "6", "--seed", "3", "--json")
    r = json.loads(out)
    assert code == 0 and r["mutants"] == ["rows_swapped", "minus_128_as_127"]
    assert r["killed"] == r["mutants"] and r["survived"] == []
    assert all(0 <= r["cases"][n] < 6 for n in r["mutants"])
