"""Command-line contract (SPEC section 5): exit codes and one-line errors on bad input."""

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
