"""Execute engine of the tern core: the in-order engine that runs LOAD_ACT and issues the MATMUL
steps to the PE array, with the output credits (``docs/ARCHITECTURE.md``, "Execute engine").

The engine pops the execute queue when it has no current instruction or its current one finishes in
this cycle (the popped one is current from the next cycle). LOAD_ACT accepts one ``act`` beat per
cycle. MATMUL issues one (token, k) step per cycle when word k of its bank is loaded (bank owned and
``fill > k``, registered) and, for the last k of a token, an output credit is free
(``out_reserved < out_depth``, registered). An issue reads the activation word
``act_addr + t*k_words + k`` and weight word ``k``; ``pe_valid/first/last`` follow one cycle later,
aligned with the RAM data (``pe_act``/``pe_codes``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.buffers import (act_addr_width, act_word_layout, weight_word_layout,
                            wgt_addr_width)
from hw.rtl.component import ConfigComponent
from hw.rtl.dispatch import exec_entry_layout

__all__ = ["ExecuteEngine", "EXECUTE_EVENTS", "execute_events_layout"]

#: The performance counter events the execute engine decides (``hw.config.PERF_COUNTERS``).
EXECUTE_EVENTS = ("busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle")


def execute_events_layout() -> data.StructLayout:
    """One bit per event of :data:`EXECUTE_EVENTS`; exactly one of them holds in every cycle."""
    return data.StructLayout({name: 1 for name in EXECUTE_EVENTS})


class ExecuteEngine(ConfigComponent):
    """In-order LOAD_ACT / MATMUL execution (module docstring, docs/ARCHITECTURE.md).

    Ports (``sync`` domain)
    -----------------------
    exec_q : In(stream.Signature(exec_entry_layout(config)))
        The execute queue's head.
    act : In(stream.Signature(ArrayLayout(signed(8), lanes)))
        Activation beats; ``act.ready`` is high only while a LOAD_ACT is current.
    act_w : In(WritePort.Signature(addr_width=log2(act_depth), shape=act_word_layout))
        The activation buffer's write port, driven in the cycle of the ``act`` transfer.
    act_r : In(ReadPort.Signature(addr_width=log2(act_depth), shape=act_word_layout))
        The activation buffer's read port: the address of the step issued in this cycle; its data
        (next cycle) is passed on as ``pe_act``.
    wgt_r : In(ReadPort.Signature(addr_width=log2(wgt_depth) + 1, shape=weight_word_layout))
        The weight buffer's read port (address ``x_bank * wgt_depth + x_k``); data -> ``pe_codes``.
    bank_owned : In(2); bank0_fill, bank1_fill : In(range(wgt_depth + 1))
        The loader's bank scoreboard (registers).
    bank_set : In(2); bank_write : In(2); write_word : In(range(wgt_depth))
        This cycle's change of the scoreboard (:class:`hw.rtl.loader.WeightLoader`): ``x_word_ok``
        is a register loaded with its definition evaluated on the next state.
    bank_release : Out(2)
        Bit ``b``: the last step of the MATMUL using bank ``b`` issues in this cycle.
    out_pop : In(1)
        A result vector left the ``out`` stream this cycle (returns one output credit).
    pe_valid, pe_first, pe_last : Out(1)
        PE array controls, registered: high in the cycle after an issue.
    pe_act : Out(act_word_layout); pe_codes : Out(weight_word_layout)
        The buffers' read data, aligned with ``pe_valid``.
    engine_idle : Out(1)
        No current instruction and no output credit reserved (part of the dispatch's quiescence).
    events : Out(execute_events_layout())
        The counter events of this cycle (docs/ARCHITECTURE.md, "Performance counters").

    Internal signals: ``x_valid``, ``x_act_addr``, ``x_left`` (LOAD_ACT: beats left
    - 1; MATMUL: ``k_words - 1``), ``x_k``, ``x_tokens_left`` (tokens still to start after the
    current one), ``x_bank``, ``out_reserved`` (output credits in use), ``x_issue``, ``x_finish``,
    ``x_word_ok``, ``x_credit_ok``, ``x_matmul_last``, ``credit_take``, and the
    registered comparisons ``x_k_last_r`` (``x_k == x_left``), ``x_tokens_left_zero``,
    ``x_credit_free`` (``out_reserved < out_depth``), ``out_reserved_zero``, ``x_act_mode`` (a
    LOAD_ACT is current: set by the pop of an entry whose ``mm`` bit is 0), ``x_mm_mode`` (a MATMUL
    is current: set by the pop of an entry whose ``mm`` bit is 1), ``x_left_zero`` (``x_left ==
    0``), ``x_step_last`` (``x_k_last_r & x_tokens_left_zero``) and ``x_word_ok`` (``bank_owned[x_bank] &
    (x_k < bank<x_bank>_fill)``).
    """

    def __init__(self, config: TernConfig):
        act_l, wgt_l = act_word_layout(config), weight_word_layout(config)
        AW, WA = act_addr_width(config), wgt_addr_width(config)
        super().__init__(config, {
            "exec_q": In(stream.Signature(exec_entry_layout(config))),
            "act": In(stream.Signature(act_l)),
            "act_w": In(WritePort.Signature(addr_width=AW, shape=act_l)),
            "act_r": In(ReadPort.Signature(addr_width=AW, shape=act_l)),
            "wgt_r": In(ReadPort.Signature(addr_width=WA, shape=wgt_l)),
            "bank_owned": In(2),
            "bank0_fill": In(range(config.wgt_depth + 1)),
            "bank1_fill": In(range(config.wgt_depth + 1)),
            "bank_set": In(2),
            "bank_write": In(2),
            "write_word": In(range(config.wgt_depth)),
            "bank_release": Out(2),
            "out_pop": In(1),
            "pe_valid": Out(1),
            "pe_first": Out(1),
            "pe_last": Out(1),
            "pe_act": Out(act_l),
            "pe_codes": Out(wgt_l),
            "engine_idle": Out(1),
            "events": Out(execute_events_layout()),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        AW = act_addr_width(cfg)
        KW = wgt_addr_width(cfg) - 1
        entry = self.exec_q.payload

        cur_valid = Signal(name="x_valid")
        cur_addr = Signal(AW, name="x_act_addr")
        cur_left = Signal(len(entry.n_m1), name="x_left")
        cur_k = Signal(KW, name="x_k")
        cur_tleft = Signal(AW, name="x_tokens_left")
        x_bank = Signal(name="x_bank")
        reserved = Signal(range(cfg.out_depth + 1), name="out_reserved")

        act_xfer = Signal(name="x_act_xfer")
        load_last = Signal(name="x_load_last")
        word_ok = Signal(name="x_word_ok")          # a register: see below
        credit_ok = Signal(name="x_credit_ok")
        issue = Signal(name="x_issue")
        mm_last = Signal(name="x_matmul_last")
        finish = Signal(name="x_finish")
        pop = Signal(name="x_pop")
        # registered comparisons, kept equal to their definitions by the updates below (so that the
        # issue decision has no comparator of these registers in front of it)
        k_last_r = Signal(name="x_k_last_r")          # x_k == x_left (the step is a token's last)
        tleft_zero = Signal(name="x_tokens_left_zero")  # x_tokens_left == 0
        credit_free = Signal(init=1, name="x_credit_free")  # out_reserved < out_depth
        reserved_zero = Signal(init=1, name="out_reserved_zero")  # out_reserved == 0
        # registered conditions, kept equal to their definitions by the updates below (so that the
        # issue, finish and pop decisions are a few gates over flip-flops)
        act_mode = Signal(name="x_act_mode")          # a LOAD_ACT is current
        mm_mode = Signal(name="x_mm_mode")            # a MATMUL is current
        left_zero = Signal(name="x_left_zero")        # x_left == 0
        step_last = Signal(name="x_step_last")        # x_k_last_r & x_tokens_left_zero
        m.d.comb += [
            self.act.ready.eq(act_mode),
            act_xfer.eq(self.act.valid & self.act.ready),
            load_last.eq(left_zero),
            self.act_w.en.eq(act_xfer),
            self.act_w.addr.eq(cur_addr),
            self.act_w.data.eq(self.act.payload),

            credit_ok.eq(~k_last_r | credit_free),
            issue.eq(mm_mode & word_ok & credit_ok),
            mm_last.eq(mm_mode & word_ok & credit_free & step_last),    # issue & k_last_r & tleft_zero
            finish.eq((act_xfer & load_last) | mm_last),
            self.bank_release.eq(Mux(mm_last, Mux(x_bank, 0b10, 0b01), 0)),

            self.act_r.addr.eq(cur_addr),
            self.wgt_r.addr.eq(Cat(cur_k, x_bank)),
            self.pe_act.eq(self.act_r.data),
            self.pe_codes.eq(self.wgt_r.data),
            self.exec_q.ready.eq(~cur_valid | finish),
            pop.eq(self.exec_q.valid & self.exec_q.ready),
        ]
        with m.If(act_xfer):
            m.d.sync += [cur_addr.eq(cur_addr + 1), cur_left.eq(cur_left - 1),
                         left_zero.eq(cur_left == 1)]
        with m.If(issue):
            k_last_next = Mux(k_last_r, cur_left[:KW] == 0, cur_k + 1 == cur_left[:KW])
            tleft_zero_next = Mux(k_last_r, cur_tleft == 1, tleft_zero)
            m.d.sync += [cur_addr.eq(cur_addr + 1), cur_k.eq(Mux(k_last_r, 0, cur_k + 1)),
                         k_last_r.eq(k_last_next), tleft_zero.eq(tleft_zero_next),
                         step_last.eq(k_last_next & tleft_zero_next)]
            with m.If(k_last_r):
                m.d.sync += cur_tleft.eq(cur_tleft - 1)
        with m.If(mm_last):
            m.d.sync += x_bank.eq(~x_bank)
        with m.If(pop):
            m.d.sync += [
                cur_valid.eq(1),
                act_mode.eq(~entry.mm),
                mm_mode.eq(entry.mm),
                cur_addr.eq(entry.addr),
                cur_left.eq(entry.n_m1),
                left_zero.eq(entry.n_zero),
                cur_k.eq(0),
                cur_tleft.eq(entry.t_m1),
                # a MATMUL's n_m1 = k_words - 1 < wgt_depth: n_m1[:KW] == 0 iff n_m1 == 0
                k_last_r.eq(entry.n_zero),
                tleft_zero.eq(entry.t_zero),
                step_last.eq(entry.n_zero & entry.t_zero),
            ]
        with m.Elif(finish):
            m.d.sync += [cur_valid.eq(0), act_mode.eq(0), mm_mode.eq(0)]

        # x_word_ok = bank_owned[x_bank] & (x_k < fill of x_bank) in every cycle: loaded with that
        # function of the next state, chosen by the issue decision among its four next values of
        # (x_bank, x_k) (the release of a bank only comes with the switch to the other one, so the
        # bank read is owned in the next cycle iff it is owned now or its word 0 is written now).
        # The next fill of bank b is write_word + 1 if a word is written into it now, else its
        # fill: each comparison is made against both over registers, and the write picks one, so
        # that the loader's write (behind the decoder's word_valid) is a late input.
        owned_next = self.bank_owned | self.bank_set
        fills = (self.bank0_fill, self.bank1_fill)

        def word_ok_next(bank, k_lt_fill, k_le_write):
            """``owned_next[bank] & (k < next fill of bank)``, from ``k < fill`` per bank and
            ``k <= write_word``."""
            return Mux(bank, owned_next[1] & Mux(self.bank_write[1], k_le_write, k_lt_fill[1]),
                       owned_next[0] & Mux(self.bank_write[0], k_le_write, k_lt_fill[0]))

        k_next = cur_k + 1
        ok_same = word_ok_next(x_bank, [cur_k < f for f in fills], cur_k <= self.write_word)
        ok_step = word_ok_next(x_bank, [k_next < f for f in fills], k_next <= self.write_word)
        fill_nz = [f != 0 for f in fills]
        ok_first_this = word_ok_next(x_bank, fill_nz, 1)
        ok_first_other = word_ok_next(~x_bank, fill_nz, 1)
        m.d.sync += word_ok.eq(
            Mux(issue,
                Mux(k_last_r, Mux(tleft_zero, ok_first_other, ok_first_this), ok_step),
                ok_same))

        # output credits: reserved by the issue of a token's last k, returned by an `out` transfer
        take = Signal(name="credit_take")
        m.d.comb += take.eq(issue & k_last_r)
        with m.If(take & ~self.out_pop):
            m.d.sync += [reserved.eq(reserved + 1), credit_free.eq(reserved != cfg.out_depth - 1),
                         reserved_zero.eq(0)]
        with m.Elif(self.out_pop & ~take):
            m.d.sync += [reserved.eq(reserved - 1), credit_free.eq(1),
                         reserved_zero.eq(reserved == 1)]

        # PE controls, one cycle after the issue (aligned with the buffers' read data)
        m.d.sync += [
            self.pe_valid.eq(issue),
            self.pe_first.eq(issue & (cur_k == 0)),
            self.pe_last.eq(take),
        ]

        ev = self.events
        m.d.comb += [
            self.engine_idle.eq(~cur_valid & reserved_zero),
            ev.busy.eq(issue),
            ev.act_beats.eq(act_xfer),
            ev.stall_weight.eq(mm_mode & ~word_ok),
            ev.stall_act.eq(act_mode & ~self.act.valid),
            ev.stall_out.eq(mm_mode & word_ok & ~credit_ok),
            ev.idle.eq(~cur_valid),
        ]
        return m
