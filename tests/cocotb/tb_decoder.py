"""cocotb testbench of hw.rtl.decoder.WeightDecoder (runs inside Verilator; driven by
test_cocotb_decoder.py).

Input ``$TERN_TB_IN``: ``{"cases": [{"beats": [packed], "n_words": n, "timing": Timing dict}]}``. Each
case starts from a one-cycle reset and is driven by the stream-drive policy
(:mod:`hw.backends.drive`, cocotb adapter): the beats are offered by a ``Source`` replaying the
timing's ``wgt`` stream (random valid gaps), the words are taken by a ``Sink`` replaying its ``out``
stream (random backpressure). The case ends in the third cycle after every beat was accepted and
``n_words`` words were taken (the sticky error flag is still watched meanwhile). Output: per case
the words (unsigned ints), the cycle of every word and beat transfer, the first cycle with
``error`` high (or null) and ``error`` at the end.
"""

import cocotb

from hw.backends.drive import CocotbBench, Sink, Source, drive_streams, release
from hw.flows.cocotb import bench_input, bench_output, start_bench
from hw.timing import Timing


async def _case(bench, dut, case):
    timing = Timing.from_dict(case["timing"])
    src, sink = Source(timing, "wgt", case["beats"]), Sink(timing, "out")
    streams = [(src, bench.port("beats"))], [(sink, bench.port("words"))]
    seen = {"error_first": None, "tail": 0}

    def until(c):
        err = int(dut.error.value)
        if seen["error_first"] is None and err:
            seen["error_first"] = c
        seen["error_last"] = err
        if src.done and sink.n >= case["n_words"]:
            seen["tail"] += 1
        return seen["tail"] == 3

    await bench.reset()
    _, c = await drive_streams(bench, *streams, until=until, max_cycles=100000)
    await release(bench, *streams)
    return {"words": sink.payloads, "word_cycles": sink.cycles, "beat_cycles": src.cycles,
            "error_first": seen["error_first"], "error_last": seen["error_last"], "cycles": c + 1}


@cocotb.test()
async def decoder(dut):
    spec = bench_input()
    await start_bench(dut, beats__valid=0, words__ready=0)
    bench = CocotbBench(dut)
    results = [await _case(bench, dut, case) for case in spec["cases"]]
    bench_output({"results": results})
