"""cocotb testbench of hw.rtl.decoder.WeightDecoder (runs inside Verilator; driven by
test_cocotb_decoder.py).

Input ``$TERN_TB_IN``: ``{"cases": [{"beats": [packed], "n_words": n, "timing": Timing dict}]}``. Each
case starts from a one-cycle reset; the beats are offered by a :class:`hw.backends.verilator.StreamSource`
replaying the timing's ``wgt`` stream (random valid gaps), the words are taken by a
:class:`hw.backends.verilator.StreamSink` replaying its ``out`` stream (random backpressure). The case ends
when every beat was accepted and ``n_words`` words were taken, plus 3 idle cycles in which the sticky
error flag is still watched. Output: per case the words (unsigned ints), the cycle of every word and
beat transfer, the first cycle with ``error`` high (or null) and ``error`` at the end.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hw.flows.cocotb import bench_input, bench_output
from hw.backends.verilator import StreamSink, StreamSource
from hw.timing import Timing


async def _case(dut, case):
    timing = Timing.from_dict(case["timing"])
    src = StreamSource(dut.beats__valid, dut.beats__ready, dut.beats__payload, case["beats"], timing, "wgt")
    sink = StreamSink(dut.words__valid, dut.words__ready, dut.words__payload, timing, "out")
    dut.rst.value = 1
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    err_first, tail, c = None, 0, 0
    while tail < 3 and c < 100000:
        src.drive(c)
        sink.drive(c)
        await ReadOnly()
        fb, fw = src.fires(), sink.fires()
        if fw:
            sink.take(c)
        if err_first is None and int(dut.error.value):
            err_first = c
        err_last = int(dut.error.value)
        if src.done and sink.n + fw >= case["n_words"]:
            tail += 1
        await FallingEdge(dut.clk)
        if fb:
            src.commit(c)
        if fw:
            sink.commit(c)
        c += 1
    src.release()
    sink.release()
    return {"words": sink.items, "word_cycles": sink.stamps, "beat_cycles": src.stamps,
            "error_first": err_first, "error_last": err_last, "cycles": c}


@cocotb.test()
async def decoder(dut):
    spec = bench_input()
    Clock(dut.clk, 10, unit="ns").start()
    dut.beats__valid.value = 0
    dut.words__ready.value = 0
    await FallingEdge(dut.clk)
    results = [await _case(dut, case) for case in spec["cases"]]
    bench_output({"results": results})
