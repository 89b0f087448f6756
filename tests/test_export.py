"""Verilog export: files, port list, configuration sidecar, atomic writes, CLI."""

import json
import os
import re

import pytest

from hw.config import TernConfig
from hw.flows import export
from hw.flows.export import TOP_NAME, write_verilog
from sw.cli import main as cli_main

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CFG = TernConfig(rows=3, lanes=5, acc_width=18, bus_bytes=3, act_depth=16, wgt_depth=4, out_depth=3,
                 weight_format="base3")


def _module_ports(text, module):
    """(direction, width) of every port of ``module`` as declared in the Verilog text."""
    body = text.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    ports = {}
    for direction, rng, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports[name] = (direction, int(rng) + 1 if rng else 1)
    return ports


def test_write_verilog_and_sidecar(tmp_path):
    out = tmp_path / "core.v"
    info = write_verilog(CFG, out)
    text = out.read_text()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert info["top"] == TOP_NAME and meta["top"] == TOP_NAME
    assert meta["config"] == CFG.to_dict()
    assert TernConfig.from_dict(meta["config"]) == CFG
    declared = _module_ports(text, TOP_NAME)
    listed = {p["name"]: (p["direction"], p["width"]) for p in meta["ports"]}
    assert listed == declared
    assert info["ports"] == len(listed)
    # widths fixed by the contract, computed here from the configuration by hand
    assert listed["instr__payload"] == ("input", 64)
    assert listed["act__payload"] == ("input", 8 * 5)
    assert listed["wgt__payload"] == ("input", 8 * 3)
    assert listed["out__payload"] == ("output", 18 * 3)
    assert listed["out__ready"] == ("input", 1) and listed["wgt__ready"] == ("output", 1)
    assert listed["error"] == ("output", 2)
    # the counters struct: 8 counters of 48 bits in one port
    assert listed["perf"] == ("output", 8 * 48)
    assert not [name for name in listed if name.startswith("perf_")]
    assert set(meta["latency"]) == {"pe_array", "decoder", "result"}
    # no multiplication of two signals anywhere in the netlist (attributes/comments stripped)
    code = re.sub(r"\(\*.*?\*\)", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))
    const = r"(?:\d+'[sS]?[hdbo][0-9a-fA-FxzXZ_]+|\d+)"
    products = re.findall(r"([\\\w$.:]+|\))\s*\*\s*([\\\w$.:']+|\()", code.replace("@*", ""))
    assert [p for p in products if not (re.fullmatch(const, p[0]) or re.fullmatch(const, p[1]))] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_bad_arguments_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"\.v"):
        write_verilog(CFG, tmp_path / "core.txt")
    with pytest.raises(ValueError, match="does not exist"):
        write_verilog(CFG, tmp_path / "missing" / "core.v")
    with pytest.raises(TypeError, match="TernConfig"):
        write_verilog({"rows": 2}, tmp_path / "core.v")
    assert list(tmp_path.iterdir()) == []


def test_failure_during_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def broken_convert(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(export.verilog, "convert", broken_convert)
    with pytest.raises(RuntimeError, match="synthetic"):
        write_verilog(CFG, tmp_path / "core.v")
    assert calls and list(tmp_path.iterdir()) == []


def test_failure_while_writing_keeps_old_files(tmp_path, monkeypatch):
    out = tmp_path / "core.v"
    out.write_text("old verilog")
    import hw.fileio as fileio
    real_replace = fileio.os.replace
    seen = []

    def replace_then_fail(src, dst):
        seen.append(dst)
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    # the .v rename happens before the .json one: simulate a failure on the second rename
    monkeypatch.setattr(fileio.os, "replace", replace_then_fail)
    with pytest.raises(OSError):
        write_verilog(CFG, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"


def test_cli_rtl(tmp_path, capsys):
    out = tmp_path / "t.v"
    rc = cli_main(["rtl", "-o", str(out), "--rows", "2", "--lanes", "4", "--acc-width", "16",
                   "--act-depth", "16", "--wgt-depth", "4", "--json"])
    assert rc == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["rows"] == 2 and meta["config"]["lanes"] == 4
    assert f"module {TOP_NAME}(" in out.read_text()
    capsys.readouterr()
    bad = tmp_path / "bad.v"
    rc = cli_main(["rtl", "-o", str(bad), "--rows", "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "rows" in err and len(err.strip().splitlines()) == 1
    assert not bad.exists() and not bad.with_suffix(".json").exists()
