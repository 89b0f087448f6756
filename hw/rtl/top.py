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
        pe = PEArray(self._config)
        pe._MustUse__used = True  # only asked for its latency
        return pe.latency

    @property
    def decoder_latency(self) -> int:
        from hw.rtl.decoder import WeightDecoder
        dec = WeightDecoder(self._config)
        dec._MustUse__used = True  # only asked for its latency
        return dec.latency

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


# ---------------------------------------------------------------------------------------------------
# Amaranth-simulation driver (used by the tests, the throughput benchmark and the Amaranth backend)

class SimResult:
    """What :func:`simulate_program` observed. Cycle numbers count from 0 = the first cycle after
    (the last) reset; ``cycles`` = the cycle of the last ``out`` transfer + 1 (0 if no outputs)."""

    def __init__(self):
        self.outputs = []          # result vectors (lists of ints), in order
        self.out_cycles = []       # cycle of each `out` transfer
        self.instr_cycles = []     # cycle of each `instr` transfer
        self.act_cycles = []       # cycle of each `act` transfer
        self.wgt_cycles = []       # cycle of each `wgt` transfer
        self.cycles = 0
        self.counters = {}
        self.error = 0
        self.idle_cycle = None     # first cycle at which everything was done and `idle` was high
        self.rows = 0

    def outputs_array(self):
        """The result vectors as an (n, rows) int64 array."""
        import numpy as np
        return np.array(self.outputs, dtype=np.int64).reshape(len(self.outputs), self.rows)


def simulate_program(config: TernConfig, programs, *, seed: int = 0, p_instr: float = 0.0,
                     p_act: float = 0.0, p_wgt: float = 0.0, p_out: float = 0.0,
                     reset_after=(), max_cycles: int = 50_000) -> SimResult:
    """Run one or more :class:`hw.program.Program` s on :class:`TernCore` in Amaranth's simulator.

    All four streams are driven from cycle 0; before each transfer a stream waits a geometric number
    of cycles (probability ``p_*`` of each extra idle cycle; ``p_out`` stalls ``out.ready``), seeded
    by ``seed``. With several programs, program ``i`` runs for ``reset_after[i]`` cycles (or to
    completion if that is None), then the synchronous reset is asserted for one cycle and the next
    program starts from scratch; the result describes the last program. A program is complete when
    all its instructions and data were taken, all its expected outputs came out and ``idle`` is high.
    """
    import random

    from amaranth.hdl import ClockDomain
    from amaranth.sim import Simulator

    if not isinstance(programs, (list, tuple)):
        programs = [programs]
    reset_after = list(reset_after) + [None] * (len(programs) - len(reset_after))
    core = TernCore(config)
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.core = core
    rng = random.Random(seed)
    R, A = config.rows, config.acc_width
    results = []

    def gap(p):
        n = 0
        while p and rng.random() < p:
            n += 1
        return n

    def pack(values, bits):
        v = 0
        for i, x in enumerate(values):
            v |= (int(x) & ((1 << bits) - 1)) << (bits * i)
        return v

    def unpack(v, bits, n):
        out = []
        for i in range(n):
            x = (v >> (bits * i)) & ((1 << bits) - 1)
            out.append(x - (1 << bits) if x >> (bits - 1) else x)
        return out

    async def tb(ctx):
        for pi, prog in enumerate(programs):
            res = SimResult()
            res.rows = R
            instrs = prog.words
            acts = [pack(b, 8) for b in prog.act_beats]
            wgts = [pack(b, 8) for b in prog.wgt_beats]
            n_out = len(prog.expected)
            ptr = {"i": 0, "a": 0, "w": 0}
            waits = {"i": gap(p_instr), "a": gap(p_act), "w": gap(p_wgt), "o": gap(p_out)}
            limit = reset_after[pi]
            for cycle in range(max_cycles):
                if limit is not None and cycle == limit:
                    break
                offer = {}
                for key, port, items, p in (("i", core.instr, instrs, p_instr),
                                            ("a", core.act, acts, p_act),
                                            ("w", core.wgt, wgts, p_wgt)):
                    ok = ptr[key] < len(items) and waits[key] == 0
                    offer[key] = ok
                    ctx.set(port.valid, ok)
                    if ok:
                        ctx.set(port.payload.as_value(), items[ptr[key]])
                ctx.set(core.out.ready, waits["o"] == 0)
                i_x = offer["i"] and ctx.get(core.instr.ready)
                a_x = offer["a"] and ctx.get(core.act.ready)
                w_x = offer["w"] and ctx.get(core.wgt.ready)
                o_x = waits["o"] == 0 and ctx.get(core.out.valid)
                if o_x:
                    res.outputs.append(unpack(ctx.get(core.out.payload.as_value()), A, R))
                    res.out_cycles.append(cycle)
                done = (ptr["i"] == len(instrs) and ptr["a"] == len(acts) and ptr["w"] == len(wgts)
                        and len(res.outputs) >= n_out and ctx.get(core.idle))
                if done and res.idle_cycle is None:
                    res.idle_cycle = cycle
                    res.counters = {n: ctx.get(getattr(core, f"perf_{n}")) for n in PERF_COUNTERS}
                    res.error = ctx.get(core.error)
                    break
                await ctx.tick()
                for key, xfer, stamps in (("i", i_x, res.instr_cycles), ("a", a_x, res.act_cycles),
                                          ("w", w_x, res.wgt_cycles)):
                    if xfer:
                        stamps.append(cycle)
                        ptr[key] += 1
                        waits[key] = gap({"i": p_instr, "a": p_act, "w": p_wgt}[key])
                    elif waits[key]:
                        waits[key] -= 1
                if o_x:
                    waits["o"] = gap(p_out)
                elif waits["o"]:
                    waits["o"] -= 1
            if limit is None and res.idle_cycle is None:
                raise RuntimeError(f"simulate_program: program {pi} did not finish within {max_cycles} "
                                   f"cycles (seed={seed}; {len(res.outputs)} of {n_out} outputs)")
            res.cycles = res.out_cycles[-1] + 1 if res.out_cycles else 0
            results.append(res)
            if pi + 1 < len(programs):
                for port in (core.instr, core.act, core.wgt):
                    ctx.set(port.valid, 0)
                ctx.set(core.out.ready, 0)
                ctx.set(cd.rst, 1)
                await ctx.tick()
                ctx.set(cd.rst, 0)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results[-1]
