"""Controller of the tern core: instruction dispatch, weight loader and in-order execute engine.

The exact cycle behaviour implemented here is specified in ``docs/ARCHITECTURE.md`` (section "Timing")
and the instruction semantics in ``docs/ISA.md``; the cycle-accurate Python simulator follows those
documents. In brief:

* **Dispatch** (stage D). An instruction accepted from ``instr`` in cycle ``c`` sits in the dispatch
  register during ``c + 1``, where it is checked. A good LOAD_ACT / MATMUL is pushed into the execute
  queue (and a MATMUL also into the loader queue) in that cycle if both queues have room, otherwise it
  waits there. NOP and bad instructions retire at once (a bad one sets error bit 0). SYNC retires in
  the first cycle in which the machine is quiescent. ``instr.ready`` is high iff the dispatch register
  is empty or retires in the same cycle.
* **Weight loader.** Pops the loader queue (the popped MATMUL is the loader's from the next cycle),
  takes ``k_words`` words from the decoder's ``words`` stream and writes word ``k`` to address ``k`` of
  its bank (banks alternate 0, 1, 0, ... per MATMUL from reset). It may write word 0 of a bank only
  when the bank is not *owned*; that write makes it owned, and the execute engine releases it in the
  cycle of the MATMUL's last issue (visible from the next cycle).
* **Execute engine.** Pops the execute queue when it has no current instruction or its current one
  finishes in this cycle (the popped one is current from the next cycle). LOAD_ACT accepts one ``act``
  beat per cycle. MATMUL issues one (token, k) step per cycle when word k of its bank is loaded (bank
  owned and ``fill > k``, registered) and, for the last k of a token, an output credit is free
  (``reserved < out_depth``, registered). An issue reads the activation word ``act_addr + t*k_words + k``
  and weight word ``k``; ``pe_valid/first/last`` follow one cycle later, aligned with the RAM data.

Nothing in here multiplies two signals: the operand range check of MATMUL (``a + b*c <= act_depth``)
uses an explicit shift-and-add of the (narrow) operands.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hw.config import PERF_COUNTERS, TernConfig
from hw.isa import INSTR_LAYOUT, Op
from hw.rtl.buffers import act_word_layout, weight_word_layout

__all__ = ["Controller", "PERF_COUNTERS", "PERF_WIDTH", "QUEUE_DEPTH", "ERR_BAD_INSTR", "ERR_WEIGHT_CODE"]

#: Depth of the execute queue and of the loader queue (instructions).
QUEUE_DEPTH = 4
#: Width of every performance counter.
PERF_WIDTH = 48
#: Error flag bits.
ERR_BAD_INSTR = 0
ERR_WEIGHT_CODE = 1


def _bits(n: int) -> int:
    """Bits of an unsigned value in 0..n-1 (n a power of two >= 2)."""
    return (n - 1).bit_length()


class Controller(wiring.Component):
    """Dispatch + weight loader + execute engine (see the module docstring and docs/ARCHITECTURE.md).

    Ports (all synchronous to the ``sync`` domain)
    ------------------------------------------------
    instr : In(stream.Signature(INSTR_LAYOUT))
        Instruction words.
    act : In(stream.Signature(ArrayLayout(signed(8), lanes)))
        Activation beats; ``act.ready`` is high only while a LOAD_ACT is current.
    words : In(stream.Signature(weight word layout))
        Decoded weight words from the WeightDecoder; ``words.ready`` per the loader rule.
    act_w_en, act_w_addr, act_w_data : Out
        Activation buffer write (same cycle as the ``act`` transfer).
    wgt_w_en, wgt_w_bank, wgt_w_addr, wgt_w_data : Out
        Weight buffer write (same cycle as the ``words`` transfer).
    act_r_addr : Out(range(act_depth)); wgt_r_bank : Out(1); wgt_r_addr : Out(range(wgt_depth))
        Buffer read addresses, valid in an issue cycle.
    pe_valid, pe_first, pe_last : Out(1)
        PE array controls, registered: high in the cycle after an issue, aligned with the buffers'
        read data.
    wgt_gate : Out(1)
        Registered; high while the loader holds a MATMUL. The top level lets weight beats into the
        decoder only while it is high.
    wgt_beat : In(1)
        A weight beat was accepted from the ``wgt`` stream this cycle (counted in ``perf_wgt_beats``).
    out_pop : In(1)
        A result vector left the ``out`` stream this cycle (returns one output credit).
    dec_error : In(1)
        The decoder's sticky invalid-code flag.
    error : Out(2)
        Bit 0: a bad instruction was skipped (sticky). Bit 1: ``dec_error``.
    idle : Out(1)
        Nothing dispatched, queued, executing or waiting in the output path (a SYNC would retire).
    perf_<name> : Out(48)
        Performance counters, see :data:`PERF_COUNTERS`.
    """

    def __init__(self, config: TernConfig):
        if not isinstance(config, TernConfig):
            self._MustUse__used = True
            raise TypeError(f"Controller: config must be a hw.config.TernConfig, not {config!r}")
        self._config = config
        act_l = act_word_layout(config)
        wgt_l = weight_word_layout(config)
        ports = {
            "instr": In(stream.Signature(INSTR_LAYOUT)),
            "act": In(stream.Signature(act_l)),
            "words": In(stream.Signature(wgt_l)),
            "act_w_en": Out(1),
            "act_w_addr": Out(range(config.act_depth)),
            "act_w_data": Out(act_l),
            "wgt_w_en": Out(1),
            "wgt_w_bank": Out(1),
            "wgt_w_addr": Out(range(config.wgt_depth)),
            "wgt_w_data": Out(wgt_l),
            "act_r_addr": Out(range(config.act_depth)),
            "wgt_r_bank": Out(1),
            "wgt_r_addr": Out(range(config.wgt_depth)),
            "pe_valid": Out(1),
            "pe_first": Out(1),
            "pe_last": Out(1),
            "wgt_gate": Out(1),
            "wgt_beat": In(1),
            "out_pop": In(1),
            "dec_error": In(1),
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
    def dispatch_latency(self) -> int:
        """Cycles from an instruction's acceptance on ``instr`` to the first cycle in which it can be
        current in the execute engine / the loader (when the queues and engines are free)."""
        return 3

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        AW = _bits(cfg.act_depth)   # act address bits
        KW = _bits(cfg.wgt_depth)   # weight word index bits
        NW = max(AW, KW)

        # ---------------------------------------------------------------- dispatch (stage D)
        d_valid = Signal(name="d_valid")
        d = Signal(INSTR_LAYOUT, name="d_instr")
        d_retire = Signal(name="d_retire")

        xq_layout = data.StructLayout({
            "mm": 1,            # 1: MATMUL, 0: LOAD_ACT
            "addr": AW,         # act address
            "n_m1": NW,         # LOAD_ACT: count - 1; MATMUL: k_words - 1
            "t_m1": AW,         # MATMUL: tokens - 1
        })
        m.submodules.exec_queue = xq = SyncFIFO(width=xq_layout.size, depth=QUEUE_DEPTH)
        m.submodules.load_queue = lq = SyncFIFO(width=KW, depth=QUEUE_DEPTH)

        op = d.op
        is_nop = Signal(name="d_is_nop")
        is_load = Signal(name="d_is_load")
        is_mm = Signal(name="d_is_matmul")
        is_sync = Signal(name="d_is_sync")
        m.d.comb += [
            is_nop.eq(op == Op.NOP.value),
            is_load.eq(op == Op.LOAD_ACT.value),
            is_mm.eq(op == Op.MATMUL.value),
            is_sync.eq(op == Op.SYNC.value),
        ]
        a, b, c = d.a, d.b, d.c
        # LOAD_ACT: count >= 1 and addr + count <= act_depth.
        load_ok = Signal(name="d_load_ok")
        m.d.comb += load_ok.eq((b != 0) & (a + b <= cfg.act_depth))
        # MATMUL: 1 <= k_words <= wgt_depth, 1 <= tokens <= act_depth, act_addr + k_words*tokens
        # <= act_depth. The product of the range-checked operands is formed by shift-and-add.
        kb = cfg.wgt_depth.bit_length()
        cb = cfg.act_depth.bit_length()
        b_n = Signal(kb, name="d_kwords_narrow")
        c_n = Signal(cb, name="d_tokens_narrow")
        m.d.comb += [b_n.eq(b[:kb]), c_n.eq(c[:cb])]
        terms = []
        for i in range(kb):
            term = Signal(kb + cb, name=f"d_span_term{i}")
            m.d.comb += term.eq(Mux(b_n[i], c_n << i, 0))
            terms.append(term)
        level = 0
        while len(terms) > 1:
            nxt = []
            for j in range(0, len(terms) - 1, 2):
                s = Signal(kb + cb, name=f"d_span_sum{level}_{j // 2}")
                m.d.comb += s.eq(terms[j] + terms[j + 1])
                nxt.append(s)
            if len(terms) % 2:
                nxt.append(terms[-1])
            terms = nxt
            level += 1
        span = terms[0]
        mm_ok = Signal(name="d_matmul_ok")
        m.d.comb += mm_ok.eq((b != 0) & (b <= cfg.wgt_depth) & (c != 0) & (c <= cfg.act_depth)
                             & (a + span <= cfg.act_depth))
        bad = Signal(name="d_bad")
        m.d.comb += bad.eq(~(is_nop | is_load | is_mm | is_sync) | (is_load & ~load_ok)
                           | (is_mm & ~mm_ok))
        wants_push = Signal(name="d_wants_push")
        m.d.comb += wants_push.eq((is_load & load_ok) | (is_mm & mm_ok))
        can_push = Signal(name="d_can_push")
        m.d.comb += can_push.eq(xq.w_rdy & (lq.w_rdy | ~is_mm))

        quiescent = Signal(name="quiescent")
        m.d.comb += d_retire.eq(d_valid & (bad | is_nop | (is_sync & quiescent)
                                           | (wants_push & can_push)))

        xq_in = Signal(xq_layout, name="xq_in")
        m.d.comb += [
            xq_in.mm.eq(is_mm),
            xq_in.addr.eq(a[:AW]),
            xq_in.n_m1.eq(b - 1),
            xq_in.t_m1.eq(c - 1),
            xq.w_data.eq(xq_in),
            xq.w_en.eq(d_valid & wants_push & can_push),
            lq.w_data.eq(b - 1),
            lq.w_en.eq(d_valid & wants_push & can_push & is_mm),
            self.instr.ready.eq(~d_valid | d_retire),
        ]
        with m.If(self.instr.valid & self.instr.ready):
            m.d.sync += [d_valid.eq(1), d.eq(self.instr.payload)]
        with m.Elif(d_retire):
            m.d.sync += d_valid.eq(0)

        err_bad = Signal(name="err_bad_instr")
        with m.If(d_valid & bad):
            m.d.sync += err_bad.eq(1)
        m.d.comb += self.error.eq(Cat(err_bad, self.dec_error))

        # ---------------------------------------------------------------- bank scoreboard
        owned = Signal(2, name="bank_owned")
        fill0 = Signal(range(cfg.wgt_depth + 1), name="bank0_fill")
        fill1 = Signal(range(cfg.wgt_depth + 1), name="bank1_fill")

        # ---------------------------------------------------------------- weight loader
        ld_valid = Signal(name="ld_valid")
        ld_bank = Signal(name="ld_bank")
        ld_count = Signal(KW, name="ld_count")
        ld_last = Signal(KW, name="ld_klast")
        ld_write = Signal(name="ld_write")
        ld_done = Signal(name="ld_done")
        ld_bank_owned = Signal(name="ld_bank_owned")
        m.d.comb += [
            ld_bank_owned.eq(Mux(ld_bank, owned[1], owned[0])),
            self.words.ready.eq(ld_valid & ((ld_count != 0) | ~ld_bank_owned)),
            ld_write.eq(self.words.valid & self.words.ready),
            ld_done.eq(ld_write & (ld_count == ld_last)),
            self.wgt_w_en.eq(ld_write),
            self.wgt_w_bank.eq(ld_bank),
            self.wgt_w_addr.eq(ld_count),
            self.wgt_w_data.eq(self.words.payload),
            lq.r_en.eq(~ld_valid | ld_done),
            self.wgt_gate.eq(ld_valid),
        ]
        with m.If(ld_write):
            m.d.sync += ld_count.eq(Mux(ld_done, 0, ld_count + 1))
            with m.If(ld_bank):
                m.d.sync += fill1.eq(ld_count + 1)
            with m.Else():
                m.d.sync += fill0.eq(ld_count + 1)
        with m.If(ld_done):
            m.d.sync += ld_bank.eq(~ld_bank)
        with m.If(lq.r_en & lq.r_rdy):
            m.d.sync += [ld_valid.eq(1), ld_last.eq(lq.r_data)]
        with m.Elif(ld_done):
            m.d.sync += ld_valid.eq(0)

        # ---------------------------------------------------------------- execute engine
        cur_valid = Signal(name="x_valid")
        cur_mm = Signal(name="x_matmul")
        cur_addr = Signal(AW, name="x_act_addr")
        cur_left = Signal(NW, name="x_left")       # LOAD_ACT beats left - 1; MATMUL k_words - 1
        cur_k = Signal(KW, name="x_k")
        cur_tleft = Signal(AW, name="x_tokens_left")  # tokens still to start after this one
        x_bank = Signal(name="x_bank")
        reserved = Signal(range(cfg.out_depth + 1), name="out_reserved")

        xq_out = Signal(xq_layout, name="xq_out")
        m.d.comb += xq_out.eq(xq.r_data)

        act_xfer = Signal(name="x_act_xfer")
        load_last = Signal(name="x_load_last")
        word_ok = Signal(name="x_word_ok")
        k_last = Signal(name="x_k_last")
        credit_ok = Signal(name="x_credit_ok")
        issue = Signal(name="x_issue")
        mm_last = Signal(name="x_matmul_last")
        finish = Signal(name="x_finish")
        x_fill = Signal(range(cfg.wgt_depth + 1), name="x_bank_fill")
        x_owned = Signal(name="x_bank_owned")
        m.d.comb += [
            self.act.ready.eq(cur_valid & ~cur_mm),
            act_xfer.eq(self.act.valid & self.act.ready),
            load_last.eq(cur_left == 0),
            self.act_w_en.eq(act_xfer),
            self.act_w_addr.eq(cur_addr),
            self.act_w_data.eq(self.act.payload),

            x_fill.eq(Mux(x_bank, fill1, fill0)),
            x_owned.eq(Mux(x_bank, owned[1], owned[0])),
            word_ok.eq(x_owned & (cur_k < x_fill)),
            k_last.eq(cur_k == cur_left[:KW]),
            credit_ok.eq(~k_last | (reserved < cfg.out_depth)),
            issue.eq(cur_valid & cur_mm & word_ok & credit_ok),
            mm_last.eq(issue & k_last & (cur_tleft == 0)),
            finish.eq((act_xfer & load_last) | mm_last),

            self.act_r_addr.eq(cur_addr),
            self.wgt_r_bank.eq(x_bank),
            self.wgt_r_addr.eq(cur_k),
            xq.r_en.eq(~cur_valid | finish),
        ]
        with m.If(act_xfer):
            m.d.sync += [cur_addr.eq(cur_addr + 1), cur_left.eq(cur_left - 1)]
        with m.If(issue):
            m.d.sync += [cur_addr.eq(cur_addr + 1), cur_k.eq(Mux(k_last, 0, cur_k + 1))]
            with m.If(k_last):
                m.d.sync += cur_tleft.eq(cur_tleft - 1)
        with m.If(mm_last):
            m.d.sync += x_bank.eq(~x_bank)
        with m.If(xq.r_en & xq.r_rdy):
            m.d.sync += [
                cur_valid.eq(1),
                cur_mm.eq(xq_out.mm),
                cur_addr.eq(xq_out.addr),
                cur_left.eq(xq_out.n_m1),
                cur_k.eq(0),
                cur_tleft.eq(xq_out.t_m1),
            ]
        with m.Elif(finish):
            m.d.sync += cur_valid.eq(0)

        # bank ownership: set by the loader's write of word 0, cleared by the last issue
        for bank in (0, 1):
            with m.If(ld_write & (ld_count == 0) & (ld_bank == bank)):
                m.d.sync += owned[bank].eq(1)
            with m.Elif(mm_last & (x_bank == bank)):
                m.d.sync += owned[bank].eq(0)

        # output credits: reserved by the issue of a token's last k, returned by an `out` transfer
        take = Signal(name="credit_take")
        m.d.comb += take.eq(issue & k_last)
        with m.If(take & ~self.out_pop):
            m.d.sync += reserved.eq(reserved + 1)
        with m.Elif(self.out_pop & ~take):
            m.d.sync += reserved.eq(reserved - 1)

        # PE controls, one cycle after the issue (aligned with the buffers' read data)
        m.d.sync += [
            self.pe_valid.eq(issue),
            self.pe_first.eq(issue & (cur_k == 0)),
            self.pe_last.eq(take),
        ]

        # ---------------------------------------------------------------- status
        m.d.comb += [
            quiescent.eq(~cur_valid & ~xq.r_rdy & (reserved == 0)),
            self.idle.eq(~d_valid & quiescent),
        ]

        # ---------------------------------------------------------------- performance counters
        events = {
            "cycles": Const(1),
            "busy": issue,
            "act_beats": act_xfer,
            "stall_weight": cur_valid & cur_mm & ~word_ok,
            "stall_act": cur_valid & ~cur_mm & ~self.act.valid,
            "stall_out": cur_valid & cur_mm & word_ok & ~credit_ok,
            "idle": ~cur_valid,
            "wgt_beats": self.wgt_beat,
        }
        for name in PERF_COUNTERS:
            counter = Signal(PERF_WIDTH, name=f"perf_{name}_q")
            ev = Signal(name=f"perf_{name}_event")
            m.d.comb += [ev.eq(events[name]), getattr(self, f"perf_{name}").eq(counter)]
            with m.If(ev):
                m.d.sync += counter.eq(counter + 1)
        return m
