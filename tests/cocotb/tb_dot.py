"""cocotb testbench of hw.rtl.dot.TernaryDotUnit (runs inside Verilator; driven by test_cocotb_dot.py).

Input ``$TERN_TB_IN``: ``{"latency": P, "act": [packed], "codes": [packed]}``: one input vector per
cycle. Output ``$TERN_TB_OUT``: ``{"sum": [...]}``: ``sum`` sampled ``P`` cycles after each input
(for P = 0, a purely combinational unit without a clock, after the inputs settled).
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, Timer

from hw.flows.cocotb import bench_input, bench_output


@cocotb.test()
async def dot_unit(dut):
    spec = bench_input()
    acts, codes, lat = spec["act"], spec["codes"], spec["latency"]
    n = len(acts)
    sums = []
    if lat == 0:
        for a, c in zip(acts, codes):
            dut.act.value = a
            dut.codes.value = c
            await Timer(1, unit="ns")
            await ReadOnly()
            sums.append(dut.sum.value.to_signed())
            await Timer(1, unit="ns")
    else:
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 0
        for i in range(n + lat):
            await FallingEdge(dut.clk)
            if i < n:
                dut.act.value = acts[i]
                dut.codes.value = codes[i]
            await ReadOnly()
            if i >= lat:
                sums.append(dut.sum.value.to_signed())
    bench_output({"sum": sums})
