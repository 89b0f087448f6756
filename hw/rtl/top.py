"""Top level of the tern core: controller, buffers, weight decoder, PE array and output FIFO.

See ``docs/ARCHITECTURE.md`` for the block diagram and the exact timing, ``docs/ISA.md`` for the
instruction semantics and ``docs/FORMATS.md`` for the weight stream formats.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.isa import INSTR_LAYOUT
from hw.rtl.buffers import (ActBuffer, OutputFIFO, WeightBuffer, act_word_layout,
                            result_layout)
from hw.rtl.component import ConfigComponent
from hw.rtl.controller import Controller
from hw.rtl.counters import counters_layout
from hw.rtl.decoder import WeightDecoder, wgt_beat_layout
from hw.rtl.pe_array import PEArray

__all__ = ["TernCore", "core_streams", "wgt_beat_layout"]


def core_streams(config: TernConfig) -> dict:
    """The four stream members of :class:`TernCore`'s signature (``instr``, ``act``, ``wgt`` in,
    ``out`` out); a host-side block takes them flipped."""
    return {
        "instr": In(stream.Signature(INSTR_LAYOUT)),
        "act": In(stream.Signature(act_word_layout(config))),
        "wgt": In(stream.Signature(wgt_beat_layout(config))),
        "out": Out(stream.Signature(result_layout(config))),
    }


class TernCore(ConfigComponent):
    """The tern accelerator core for one :class:`TernConfig`.

    Ports (``sync`` domain; a synchronous reset returns everything to the reset state)
    -------------------------------------------------------------------------------------
    instr : In(stream.Signature(INSTR_LAYOUT))
        64-bit instruction words (``hw.isa``).
    act : In(stream.Signature(ArrayLayout(signed(8), lanes)))
        Activation beats, consumed by LOAD_ACT (one per cycle at most).
    wgt : In(stream.Signature(ArrayLayout(unsigned(8), bus_bytes)))
        Weight stream beats (``hw.formats``), consumed by the weight loader for MATMULs in order;
        ``wgt.ready`` is high only while the loader holds a MATMUL and the decoder can take a beat.
    out : Out(stream.Signature(ArrayLayout(signed(acc_width), rows)))
        One result vector per MATMUL token, in program order.
    error : Out(2)
        Sticky error flags: bit 0 a bad instruction was skipped, bit 1 an invalid weight byte/code.
    idle : Out(1)
        High when no instruction is pending anywhere and every result has left ``out``.
    perf : Out(counters_layout(config))
        The performance counters as one struct: a ``perf_width``-bit field per name of
        ``config.perf_counters`` (definitions in docs/ARCHITECTURE.md). In Verilog one port ``perf``
        of ``len(perf_counters) * perf_width`` bits, counter ``i`` in bits ``i*perf_width`` up.

    Latencies are those of the configuration (``config.operand_latency``: the register between the
    controller's ``pe_*`` and the PE array; ``config.pe_latency``, ``config.decoder_latency``,
    ``config.result_latency``: cycles from the issue of a token's last step to ``out.valid`` of its
    result with the output FIFO otherwise empty); each block checks its own at elaboration.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, {**core_streams(config), "error": Out(2), "idle": Out(1),
                                  "perf": Out(counters_layout(config))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.ctrl = ctrl = Controller(cfg)
        m.submodules.act_buf = act_buf = ActBuffer(cfg)
        m.submodules.wgt_buf = wgt_buf = WeightBuffer(cfg)
        m.submodules.decoder = dec = WeightDecoder(cfg)
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.out_fifo = fifo = OutputFIFO.for_config(cfg)

        wiring.connect(m, wiring.flipped(self.instr), ctrl.instr)
        wiring.connect(m, wiring.flipped(self.act), ctrl.act)
        wiring.connect(m, ctrl.act_w, act_buf.write)
        wiring.connect(m, ctrl.act_r, act_buf.read)
        wiring.connect(m, ctrl.wgt_w, wgt_buf.write)
        wiring.connect(m, ctrl.wgt_r, wgt_buf.read)
        wiring.connect(m, dec.words, ctrl.words)
        wiring.connect(m, fifo.r, wiring.flipped(self.out))

        # the operand register: the buffers' read data and the step's controls, one cycle on, so
        # that no path runs from a RAM's output into the PE array's logic
        self.check_built("operand_latency", 1)
        m.d.sync += [
            pe.valid.eq(ctrl.pe_valid),
            pe.first.eq(ctrl.pe_first),
            pe.last.eq(ctrl.pe_last),
            pe.act.eq(ctrl.pe_act),
            pe.codes.eq(ctrl.pe_codes),
        ]

        m.d.comb += [
            # weight stream -> decoder, admitted only while the loader holds a MATMUL
            dec.beats.valid.eq(self.wgt.valid & ctrl.wgt_gate),
            dec.beats.payload.eq(self.wgt.payload),
            self.wgt.ready.eq(dec.beats.ready & ctrl.wgt_gate),
            ctrl.wgt_beat.eq(self.wgt.valid & self.wgt.ready),
            ctrl.dec_error.eq(dec.error),


            # The credit scheme guarantees the FIFO has room for every result (never checked here).
            fifo.w.valid.eq(pe.result_valid),
            fifo.w.payload.eq(pe.result),

            ctrl.out_pop.eq(self.out.valid & self.out.ready),
            self.error.eq(ctrl.error),
            self.idle.eq(ctrl.idle),
            self.perf.eq(ctrl.perf),
        ]
        return m
