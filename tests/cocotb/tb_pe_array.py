"""cocotb testbench of hw.rtl.pe_array.PEArray (runs inside Verilator; driven by
test_cocotb_pe_array.py).

Input ``$TERN_TB_IN``: ``{"steps": [[valid, first, last, act_packed, codes_packed], ...]}``, one per
cycle from cycle 0 after a reset, then ``drain`` idle cycles. Output: ``{"results": [[cycle,
result_packed], ...]}`` for every cycle with ``result_valid`` high.
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from hw.flows.cocotb import bench_input, bench_output, start_bench


@cocotb.test()
async def pe_array(dut):
    spec = bench_input()
    await start_bench(dut, valid=0)
    out = []
    steps = spec["steps"]
    for c in range(len(steps) + spec["drain"]):
        if c < len(steps):
            v, f, la, a, k = steps[c]
            dut.valid.value, dut.first.value, dut.last.value = v, f, la
            dut.act.value, dut.codes.value = a, k
        else:
            dut.valid.value = 0
        await ReadOnly()
        if int(dut.result_valid.value):
            out.append([c, dut.result.value.to_unsigned()])
        await FallingEdge(dut.clk)
    bench_output({"results": out})
