"""Dispatch stage of the tern core: the dispatch register D, the operand checks, the execute and
loader queues it pushes, SYNC and the quiescence condition (``docs/ARCHITECTURE.md``, "Dispatch").

An instruction accepted from ``instr`` in cycle ``c`` sits in the dispatch register during ``c + 1``,
where it is checked with :func:`hw.isa.check` (the one set of validity rules). A good LOAD_ACT /
MATMUL is pushed into the execute queue (and a MATMUL also into the loader queue) in that cycle if
both queues have room, otherwise it waits there. NOP and bad instructions retire at once (a bad one
sets error bit 0). SYNC retires in the first cycle in which the machine is quiescent.
``instr.ready`` is high iff the dispatch register is empty or retires in the same cycle.

The product ``k_words * tokens`` of the MATMUL range check is a shift-and-add of the range-checked
(narrow) operands: nothing here multiplies two signals.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.isa import INSTR_LAYOUT, Op, check
from hw.rtl.buffers import act_addr_width
from hw.rtl.component import ConfigComponent

__all__ = ["Dispatch", "exec_entry_layout", "load_entry_layout"]


def _word_bits(config: TernConfig) -> int:
    """Bits of a weight word index (``log2(wgt_depth)``)."""
    return (config.wgt_depth - 1).bit_length()


def exec_entry_layout(config: TernConfig) -> data.StructLayout:
    """An execute queue entry (a good LOAD_ACT or MATMUL)."""
    AW, KW = act_addr_width(config), _word_bits(config)
    return data.StructLayout({
        "mm": 1,                 # 1: MATMUL, 0: LOAD_ACT
        "addr": AW,              # activation address
        "n_m1": max(AW, KW),     # LOAD_ACT: count - 1; MATMUL: k_words - 1
        "t_m1": AW,              # MATMUL: tokens - 1
    })


def load_entry_layout(config: TernConfig) -> data.StructLayout:
    """A loader queue entry (a good MATMUL): the index of its last weight word."""
    return data.StructLayout({"k_last": _word_bits(config)})   # k_words - 1


class Dispatch(ConfigComponent):
    """Stage D: instruction checks, queue pushes, SYNC (module docstring, docs/ARCHITECTURE.md).

    Ports (``sync`` domain)
    -----------------------
    instr : In(stream.Signature(INSTR_LAYOUT))
        Instruction words.
    exec_q : Out(stream.Signature(exec_entry_layout(config)))
        The head of the execute queue (``config.queue_depth`` entries, an
        :class:`amaranth.lib.fifo.SyncFIFO`): LOAD_ACT and MATMUL in program order. An entry pushed in
        cycle ``c`` is ``valid`` from ``c + 1``; a transfer pops it.
    load_q : Out(stream.Signature(load_entry_layout(config)))
        The head of the loader queue (same depth and timing): one entry per MATMUL.
    engine_idle : In(1)
        The execute engine has no current instruction and no output credit is reserved.
    idle : Out(1)
        Nothing in D, the execute queue empty and ``engine_idle`` (a SYNC would retire).
    bad_instr : Out(1)
        Sticky error bit 0: a bad instruction was skipped.

    Internal signals: ``d_valid``, ``d_instr`` (the dispatch register), ``d_retire``, ``d_is_*``,
    ``d_load_ok``, ``d_matmul_ok``, ``d_bad``, ``d_wants_push``, ``d_can_push``, ``d_span`` (the
    shift-and-add ``k_words * tokens``), ``quiescent``, ``xq_in``/``lq_in`` (the pushed entries),
    ``err_bad_instr``.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, {
            "instr": In(stream.Signature(INSTR_LAYOUT)),
            "exec_q": Out(stream.Signature(exec_entry_layout(config))),
            "load_q": Out(stream.Signature(load_entry_layout(config))),
            "engine_idle": In(1),
            "idle": Out(1),
            "bad_instr": Out(1),
        })

    def _span(self, m, b, c):
        """``b * c`` of the operands narrowed to their legal ranges, by shift-and-add: one partial
        product per bit of ``b``, summed in a balanced tree."""
        cfg = self.config
        kb, cb = cfg.wgt_depth.bit_length(), cfg.act_depth.bit_length()
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
        span = Signal(kb + cb, name="d_span")
        m.d.comb += span.eq(terms[0])
        return span

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        # From instr to current in an engine: register D, the queue (a push in c is popped in
        # c + 1 at the earliest), the engine's current-instruction register.
        self.check_built("dispatch_latency", 3)
        AW = act_addr_width(cfg)
        # The queues: entries pushed in c can be popped from c + 1.
        xq_l, lq_l = exec_entry_layout(cfg), load_entry_layout(cfg)
        m.submodules.exec_queue = xq = SyncFIFO(width=xq_l.size, depth=cfg.queue_depth)
        m.submodules.load_queue = lq = SyncFIFO(width=lq_l.size, depth=cfg.queue_depth)

        d_valid = Signal(name="d_valid")
        d = Signal(INSTR_LAYOUT, name="d_instr")
        d_retire = Signal(name="d_retire")

        op, a, b, c = d.op, d.a, d.b, d.c
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
        rules = check(cfg, op, a, b, c, span=self._span(m, b, c))
        load_ok = Signal(name="d_load_ok")       # a good LOAD_ACT
        mm_ok = Signal(name="d_matmul_ok")       # a good MATMUL
        bad = Signal(name="d_bad")
        m.d.comb += [load_ok.eq(rules.load), mm_ok.eq(rules.matmul), bad.eq(rules.bad)]
        wants_push = Signal(name="d_wants_push")
        m.d.comb += wants_push.eq(load_ok | mm_ok)
        can_push = Signal(name="d_can_push")
        m.d.comb += can_push.eq(xq.w_rdy & (lq.w_rdy | ~is_mm))

        quiescent = Signal(name="quiescent")
        m.d.comb += d_retire.eq(d_valid & (bad | is_nop | (is_sync & quiescent)
                                           | (wants_push & can_push)))

        xq_in = Signal(xq_l, name="xq_in")
        lq_in = Signal(lq_l, name="lq_in")
        m.d.comb += [
            xq_in.mm.eq(is_mm),
            xq_in.addr.eq(a[:AW]),
            xq_in.n_m1.eq(b - 1),
            xq_in.t_m1.eq(c - 1),
            lq_in.k_last.eq(b - 1),
            xq.w_data.eq(xq_in),
            xq.w_en.eq(d_valid & wants_push & can_push),
            lq.w_data.eq(lq_in),
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

        # The queue heads, as streams of their entry layouts.
        m.d.comb += [
            self.exec_q.valid.eq(xq.r_rdy),
            self.exec_q.payload.eq(xq.r_data),
            xq.r_en.eq(self.exec_q.ready),
            self.load_q.valid.eq(lq.r_rdy),
            self.load_q.payload.eq(lq.r_data),
            lq.r_en.eq(self.load_q.ready),
            quiescent.eq(self.engine_idle & ~xq.r_rdy),
            self.idle.eq(~d_valid & quiescent),
            self.bad_instr.eq(err_bad),
        ]
        return m
