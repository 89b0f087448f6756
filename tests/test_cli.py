"""``sw.cli`` and ``sw.cli.common``: the command-line contract (exit codes, one-line errors on bad input,
``TERN_DEBUG``) and the shared configuration flags. The command-line test helpers (``run``,
``run_json``, ``assert_one_line_error``, ``bad_input_test``, ``install_faulty_sim``) are in
``tests/helpers.py``."""

import argparse
import subprocess
import sys

import pytest

from hw.config import TernConfig
from sw.cli import main
from sw.cli.common import add_config_flags, config_flags_given, config_from_args

from helpers import assert_one_line_error, bad_input_test, run


test_bad_input_is_one_line_exit_2 = bad_input_test("""
    => required
    frobnicate => invalid choice: 'frobnicate'
    rtl -o x.v --rows 0 => rows must be between 1 and 256, not 0
    rtl -o x.v --rows four => invalid int value: 'four'
    rtl -o x.v --weight-format 3bit => weight_format must be one of 2bit, base3, not '3bit'
    rtl -o x.v --acc-width 8 => acc_width must be between 15 and 64, not 8
    rtl -o x.v --config /nonexistent/acc.toml => no such configuration file
""")


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


def test_tern_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("TERN_DEBUG", "1")
    with pytest.raises(ValueError, match="lanes must be between 1 and 256, not 0"):
        main(["rtl", "-o", "x.v", "--lanes", "0"])


def test_interrupt_exits_130(capsys, monkeypatch):
    import sw.cli.rtl

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sw.cli.rtl, "_cmd_rtl", interrupted)
    code, out, err = run(capsys, "rtl", "-o", "x.v")
    assert code == 130 and out == "" and err.strip() == "tern: interrupted"


def _config_args(*argv):
    p = argparse.ArgumentParser()
    add_config_flags(p)
    return p.parse_args(list(argv))


def test_configuration_flags_override_the_file(tmp_path):
    toml = tmp_path / "acc.toml"
    toml.write_text("rows = 8\nlanes = 32\n")
    assert not config_flags_given(_config_args())
    assert config_from_args(_config_args()) == TernConfig()
    args = _config_args("--config", str(toml), "--lanes", "16", "--weight-format", "base3")
    assert config_flags_given(args)
    assert config_from_args(args) == TernConfig(rows=8, lanes=16, weight_format="base3")
    # defaults (a board's configuration) stand in for the file; flags still win
    board = TernConfig(rows=4, lanes=16)
    assert config_from_args(_config_args("--rows", "2"), defaults=board) == TernConfig(rows=2, lanes=16)
    assert config_from_args(_config_args("--config", str(toml)), defaults=board) == TernConfig(rows=8, lanes=32)


@pytest.mark.parametrize("text", ["rows = " + "[" * 100_000 + "]" * 100_000 + "\n",
                                  "".join(f"[{'.'.join(['t'] * 100)}]\n"),
                                  "rows = " + "{x = " * 2_000 + "1" + "}" * 2_000 + "\n"])
def test_deeply_nested_toml_config_is_one_line_exit_2(capsys, tmp_path, text):
    """``--config`` nested deeper than the bounded reader accepts (arrays, tables, inline tables):
    one line naming the file, exit 2, no RecursionError traceback, no output file."""
    p = tmp_path / "deep.toml"
    p.write_text(text)
    out = tmp_path / "o.v"
    assert_one_line_error(*run(capsys, "rtl", "-o", str(out), "--config", str(p)),
                          f"{p}: accelerator configuration (TOML) is nested")
    assert not out.exists()
