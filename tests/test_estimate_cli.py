"""``tern estimate``: JSON contract (SPEC section 5), table output and bad input (exit 2, one line)."""

import json

import pytest

from sw.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(capsys):
    code, out, err = run(capsys, "estimate", "--model", "demo", "--json")
    assert code == 0, err
    r = json.loads(out)
    for key in ("energy_per_token_j", "tokens_per_s", "area_mm2", "breakdown"):
        assert key in r
    assert r["energy_per_token_j"] > 0 and r["tokens_per_s"] > 0 and r["area_mm2"] > 0
    assert r["energy_per_token_j"] == pytest.approx(sum(r["breakdown"].values()), rel=1e-12)
    assert r["node"] == "7nm" and r["clock_mhz"] == 200.0 and r["tokens"] == 1


def test_configuration_flags_and_options(capsys):
    code, out, _ = run(capsys, "estimate", "--model", "demo", "--json", "--rows", "8", "--lanes", "32",
                       "--node", "45nm", "--clock-mhz", "100", "--tokens", "4", "--dram-pj-per-bit", "5")
    assert code == 0
    r = json.loads(out)
    assert r["config"]["rows"] == 8 and r["config"]["lanes"] == 32
    assert r["node"] == "45nm" and r["clock_mhz"] == 100.0 and r["tokens"] == 4
    assert r["energy_table"]["dram_pj_per_bit"] == 5.0


def test_table_output(capsys):
    code, out, _ = run(capsys, "estimate", "--model", "demo")
    assert code == 0
    assert "dram_weights" in out and "total" in out and "tokens/s" in out and "mm^2" in out


def test_default_clock_is_the_drivers():
    from hw.estimate.cli import DEFAULT_CLOCK_MHZ
    from sw.driver.runtime import DEFAULT_CLOCK_MHZ as DRIVER
    assert DEFAULT_CLOCK_MHZ == DRIVER


@pytest.mark.parametrize("argv,needle", [
    (["--model", "nonsense"], "no such checkpoint folder"),
    (["--model", "demo", "--clock-mhz", "0"], "--clock-mhz"),
    (["--model", "demo", "--clock-mhz", "nan"], "--clock-mhz"),
    (["--model", "demo", "--node", "3nm"], "3nm"),
    (["--model", "demo", "--tokens", "0"], "--tokens"),
    (["--model", "demo", "--dram-pj-per-bit", "-1"], "--dram-pj-per-bit"),
    (["--model", "demo", "--rows", "0"], "rows"),
    (["--model", "2b4t", "--wgt-depth", "64"], "wgt_depth"),
    (["--node", "7nm"], "--model"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "estimate", *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err
