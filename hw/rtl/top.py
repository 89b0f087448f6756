"""Top level of the tern core: controller, buffers, weight decoder, PE array and output FIFO.

See ``docs/ARCHITECTURE.md`` for the block diagram and the exact timing, ``docs/ISA.md`` for the
instruction semantics and ``docs/RTL_CONTRACT.md`` for the stream formats.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.isa import INSTR_LAYOUT
from hw.rtl.buffers import (ActBuffer, OutputFIFO, WeightBuffer, act_word_layout, result_layout)
from hw.rtl.controller import PERF_COUNTERS, PERF_WIDTH, Controller

__all__ = ["TernCore", "wgt_beat_layout"]


def wgt_beat_layout(config: TernConfig):
    from amaranth.lib import data
    return data.ArrayLayout(8, config.bus_bytes)


class TernCore(wiring.Component):
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
    perf_cycles, perf_busy, perf_act_beats, perf_stall_weight, perf_stall_act, perf_stall_out,
    perf_idle, perf_wgt_beats : Out(48)
        Performance counters (definitions in docs/ARCHITECTURE.md).

    :attr:`result_latency`: cycles from the issue of a token's last step to ``out.valid`` of its
    result (with the output FIFO otherwise empty) = 1 (RAM read) + PE array latency + 1 (FIFO).
    """

    def __init__(self, config: TernConfig):
        if not isinstance(config, TernConfig):
            self._MustUse__used = True
            raise TypeError(f"TernCore: config must be a hw.config.TernConfig, not {config!r}")
        self._config = config
        ports = {
            "instr": In(stream.Signature(INSTR_LAYOUT)),
            "act": In(stream.Signature(act_word_layout(config))),
            "wgt": In(stream.Signature(wgt_beat_layout(config))),
            "out": Out(stream.Signature(result_layout(config))),
            "error": Out(2),
            "idle": Out(1),
        }
        for name in PERF_COUNTERS:
            ports[f"perf_{name}"] = Out(PERF_WIDTH)
        super().__init__(ports)

    @property
    def config(self) -> TernConfig:
        return self._config

    @property
    def pe_latency(self) -> int:
        """Latency of the PE array (input with ``last`` to ``result_valid``)."""
        from hw.rtl.pe_array import PEArray
        return PEArray(self._config).latency

    @property
    def decoder_latency(self) -> int:
        from hw.rtl.decoder import WeightDecoder
        return WeightDecoder(self._config).latency

    @property
    def result_latency(self) -> int:
        return 1 + self.pe_latency + 1

    def elaborate(self, platform):
        from hw.rtl.decoder import WeightDecoder
        from hw.rtl.pe_array import PEArray

        m = Module()
        cfg = self._config
        m.submodules.ctrl = ctrl = Controller(cfg)
        m.submodules.act_buf = act_buf = ActBuffer(cfg)
        m.submodules.wgt_buf = wgt_buf = WeightBuffer(cfg)
        m.submodules.decoder = dec = WeightDecoder(cfg)
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.out_fifo = fifo = OutputFIFO.for_config(cfg)

        wiring.connect(m, wiring.flipped(self.instr), ctrl.instr)
        wiring.connect(m, wiring.flipped(self.act), ctrl.act)

        # weight stream -> decoder, admitted only while the loader holds a MATMUL
        m.d.comb += [
            dec.beats.valid.eq(self.wgt.valid & ctrl.wgt_gate),
            dec.beats.payload.eq(self.wgt.payload),
            self.wgt.ready.eq(dec.beats.ready & ctrl.wgt_gate),
            ctrl.wgt_beat.eq(self.wgt.valid & self.wgt.ready),
            ctrl.dec_error.eq(dec.error),
        ]
        wiring.connect(m, dec.words, ctrl.words)

        m.d.comb += [
            act_buf.w_en.eq(ctrl.act_w_en),
            act_buf.w_addr.eq(ctrl.act_w_addr),
            act_buf.w_data.eq(ctrl.act_w_data),
            act_buf.r_addr.eq(ctrl.act_r_addr),
            wgt_buf.w_en.eq(ctrl.wgt_w_en),
            wgt_buf.w_bank.eq(ctrl.wgt_w_bank),
            wgt_buf.w_addr.eq(ctrl.wgt_w_addr),
            wgt_buf.w_data.eq(ctrl.wgt_w_data),
            wgt_buf.r_bank.eq(ctrl.wgt_r_bank),
            wgt_buf.r_addr.eq(ctrl.wgt_r_addr),

            pe.valid.eq(ctrl.pe_valid),
            pe.first.eq(ctrl.pe_first),
            pe.last.eq(ctrl.pe_last),
            pe.act.eq(act_buf.r_data),
            pe.codes.eq(wgt_buf.r_data),

            # The credit scheme guarantees the FIFO has room for every result (never checked here).
            fifo.w.valid.eq(pe.result_valid),
            fifo.w.payload.eq(pe.result),
        ]
        wiring.connect(m, fifo.r, wiring.flipped(self.out))
        m.d.comb += [
            ctrl.out_pop.eq(self.out.valid & self.out.ready),
            self.error.eq(ctrl.error),
            self.idle.eq(ctrl.idle),
        ]
        for name in PERF_COUNTERS:
            m.d.comb += getattr(self, f"perf_{name}").eq(getattr(ctrl, f"perf_{name}"))
        return m
