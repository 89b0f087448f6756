"""``tern rtl`` (sw/cli/rtl.py): bad output paths are one line with exit code 2, and the two output
files (OUT.v, OUT.json) are all-or-nothing: existing ones survive any failure (writing Verilog is
tested in tests/test_export.py)."""

import json
import os

import pytest

from helpers import assert_one_line_error, bad_input_test, run

test_bad_output_is_one_line_exit_2 = bad_input_test("""
    rtl => -o/--output
    rtl -o out.txt => must end in .v
    rtl -o /nonexistent-dir/out.v => does not exist
""")

RTL = ("--rows", "2", "--lanes", "4", "--act-depth", "16", "--wgt-depth", "4", "--out-depth", "2")


def test_sidecar_folder_leaves_the_existing_verilog(capsys, tmp_path):
    """OUT.json is a folder: one line, exit 2, and the existing OUT.v is untouched (no temporary left)."""
    v = tmp_path / "x.v"
    v.write_text("old verilog\n")
    (tmp_path / "x.json").mkdir()
    assert_one_line_error(*run(capsys, "rtl", "-o", str(v), *RTL), "x.json' is a folder")
    assert v.read_text() == "old verilog\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.v"]


@pytest.mark.parametrize("failing", [".v", ".json"])
def test_failed_rename_puts_both_old_files_back(capsys, tmp_path, monkeypatch, failing):
    """A rename into place that fails (the first or the second): both existing files keep their old
    contents, nothing else is left in the folder, one line and exit 2."""
    v, js = tmp_path / "x.v", tmp_path / "x.json"
    v.write_text("old verilog\n")
    js.write_text('{"old": true}\n')
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(failing) and ".tmp" in str(src):
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, out, err = run(capsys, "rtl", "-o", str(v), *RTL)
    assert_one_line_error(code, out, err, "Permission denied")
    assert v.read_text() == "old verilog\n" and json.loads(js.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.v"]


def test_failed_rename_removes_a_file_that_did_not_exist(capsys, tmp_path, monkeypatch):
    """No old files: a failure of the second rename removes the first new file too."""
    v = tmp_path / "x.v"
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space left"))
                        if str(dst).endswith(".json") else real(src, dst))
    assert_one_line_error(*run(capsys, "rtl", "-o", str(v), *RTL), "No space left")
    assert list(tmp_path.iterdir()) == []


def test_both_files_replace_the_old_ones(capsys, tmp_path):
    v, js = tmp_path / "x.v", tmp_path / "x.json"
    v.write_text("old verilog\n")
    js.write_text("{}\n")
    code, out, err = run(capsys, "rtl", "-o", str(v), *RTL)
    assert code == 0, err
    assert "module" in v.read_text() and json.loads(js.read_text())["config"]["rows"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.v"]
