"""Weight loader of the tern core, with the weight-bank scoreboard and the weight stream gate
(``docs/ARCHITECTURE.md``, "Weight loader and bank scoreboard").

The loader pops the loader queue (the popped MATMUL is the loader's from the next cycle), takes its
``k_words`` words from the decoder's ``words`` stream and writes word ``k`` to address ``k`` of its
bank (banks alternate 0, 1, 0, ... per MATMUL from reset). It may write word 0 of a bank only when
the bank is not *owned*; that write makes it owned, and the execute engine releases it in the cycle
of the MATMUL's last issue (``bank_release``, visible from the next cycle).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Module, Mux, Signal
from amaranth.lib import stream
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.buffers import weight_word_layout, wgt_addr_width
from hw.rtl.component import ConfigComponent
from hw.rtl.dispatch import load_entry_layout

__all__ = ["WeightLoader"]


class WeightLoader(ConfigComponent):
    """Weight loader + bank scoreboard (module docstring, docs/ARCHITECTURE.md).

    Ports (``sync`` domain)
    -----------------------
    load_q : In(stream.Signature(load_entry_layout(config)))
        The loader queue's head; taken when the loader has no MATMUL or writes its last word.
    words : In(stream.Signature(weight_word_layout(config)))
        Decoded weight words; ``words.ready = ld_valid & (ld_count != 0 | ~owned[ld_bank])``, from
        a register (``ld_ready``, loaded with that function of the next state: no cycle changes).
    wgt_w : In(WritePort.Signature(addr_width=log2(wgt_depth) + 1, shape=weight_word_layout))
        The weight buffer's write port, driven in the cycle of the ``words`` transfer; address
        ``ld_bank * wgt_depth + ld_count``.
    wgt_gate : Out(1)
        ``ld_valid`` (a register): the top level lets weight beats into the decoder only while it is
        high.
    bank_release : In(2)
        Bit ``b``: the execute engine issues the last step of the MATMUL that uses bank ``b`` in this
        cycle (``bank_owned[b]`` is cleared at its end).
    bank_owned : Out(2)
        The scoreboard: bank ``b`` holds (or is being filled with) the weights of a MATMUL the
        execute engine has not finished. Set by the write of word 0, cleared by ``bank_release``.
    bank0_fill, bank1_fill : Out(range(wgt_depth + 1))
        Words written into each bank for its current MATMUL (registers).
    bank_set : Out(2); bank_write : Out(2); write_word : Out(range(wgt_depth))
        This cycle's change of the scoreboard, for registers of the execute engine that hold
        functions of its next state: bit ``b`` of ``bank_write``, a word is written into bank ``b``
        in this cycle, its index ``write_word`` (``ld_count``: ``bank<b>_fill`` is
        ``write_word + 1`` in the next cycle); bit ``b`` of ``bank_set``, that word is word 0
        (``bank_owned[b]`` is set at the end of the cycle).

    Internal signals: ``ld_valid``, ``ld_bank``, ``ld_count`` (words written for the current
    MATMUL), ``ld_klast`` (``k_words - 1``), ``ld_at_last`` (``ld_count == ld_klast``,
    registered), ``ld_write``, ``ld_done``, ``ld_ready``, ``ld_owned_next``.
    """

    def __init__(self, config: TernConfig):
        wgt_l = weight_word_layout(config)
        super().__init__(config, {
            "load_q": In(stream.Signature(load_entry_layout(config))),
            "words": In(stream.Signature(wgt_l)),
            "wgt_w": In(WritePort.Signature(addr_width=wgt_addr_width(config), shape=wgt_l)),
            "wgt_gate": Out(1),
            "bank_release": In(2),
            "bank_owned": Out(2),
            "bank0_fill": Out(range(config.wgt_depth + 1)),
            "bank1_fill": Out(range(config.wgt_depth + 1)),
            "bank_set": Out(2),
            "bank_write": Out(2),
            "write_word": Out(range(config.wgt_depth)),
        })

    def elaborate(self, platform):
        m = Module()
        KW = wgt_addr_width(self.config) - 1
        owned = self.bank_owned
        fill0, fill1 = self.bank0_fill, self.bank1_fill

        ld_valid = Signal(name="ld_valid")
        ld_bank = Signal(name="ld_bank")
        ld_count = Signal(KW, name="ld_count")
        ld_last = Signal(KW, name="ld_klast")
        # ld_count == ld_klast while ld_valid (a register, kept by the updates below), so that the
        # loader queue's pop is a gate over flops and the decoder's word_valid
        at_last = Signal(name="ld_at_last")
        ld_write = Signal(name="ld_write")
        ld_done = Signal(name="ld_done")
        pop = Signal(name="ld_pop")
        # ``ld_ready`` (a register) = ld_valid & (ld_count != 0 | ~owned[ld_bank]) in every cycle: it
        # is loaded with that function of the registers' next values, so that ``words.ready`` (and
        # the decoder's ``beats.ready`` behind it) comes from a flip-flop, not from the scoreboard
        ld_ready = Signal(name="ld_ready")
        m.d.comb += [
            self.words.ready.eq(ld_ready),
            ld_write.eq(self.words.valid & self.words.ready),
            ld_done.eq(ld_write & at_last),
            self.wgt_w.en.eq(ld_write),
            self.wgt_w.addr.eq(Cat(ld_count, ld_bank)),
            self.wgt_w.data.eq(self.words.payload),
            self.load_q.ready.eq(~ld_valid | ld_done),
            pop.eq(self.load_q.valid & self.load_q.ready),
            self.wgt_gate.eq(ld_valid),
        ]
        with m.If(ld_write):
            m.d.sync += ld_count.eq(Mux(ld_done, 0, ld_count + 1))
        m.d.comb += self.write_word.eq(ld_count)
        for bank, fill in ((0, fill0), (1, fill1)):
            m.d.comb += self.bank_write[bank].eq(ld_write & (ld_bank == bank))
            with m.If(self.bank_write[bank]):
                m.d.sync += fill.eq(ld_count + 1)
        with m.If(ld_done):
            m.d.sync += ld_bank.eq(~ld_bank)
        with m.If(pop):
            m.d.sync += [ld_valid.eq(1), ld_last.eq(self.load_q.payload.k_last),
                         at_last.eq(self.load_q.payload.k_last == 0)]   # ld_count is 0 here
        with m.Elif(ld_done):
            m.d.sync += ld_valid.eq(0)
        with m.Elif(ld_write):
            m.d.sync += at_last.eq(ld_count + 1 == ld_last)
        if platform == "formal":
            m.d.comb += Assert(~ld_valid | (at_last == (ld_count == ld_last)))

        # bank ownership: set by the loader's write of word 0, cleared by the last issue
        owned_next = Signal(2, name="ld_owned_next")
        for bank in (0, 1):
            m.d.comb += [
                self.bank_set[bank].eq(ld_write & (ld_count == 0) & (ld_bank == bank)),
                owned_next[bank].eq(self.bank_set[bank] | (owned[bank] & ~self.bank_release[bank])),
            ]
        m.d.sync += owned.eq(owned_next)

        # next values of ld_valid, ld_count != 0 and ld_bank (the updates above, restated)
        valid_next = pop | (ld_valid & ~ld_done)
        count_nz_next = Mux(ld_write, ~ld_done, ld_count != 0)  # ld_count + 1 <= k_last: never 0
        bank_next = ld_bank ^ ld_done
        m.d.sync += ld_ready.eq(valid_next & (count_nz_next | ~Mux(bank_next, owned_next[1],
                                                                   owned_next[0])))
        return m
