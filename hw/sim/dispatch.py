"""Dispatch stage of the simulator (RTL: :class:`hw.rtl.dispatch.Dispatch`).

The dispatch register D takes one instruction word from the ``instr`` stream when it is empty or
retires its instruction in the same cycle (``instr.ready = ~d_valid | d_retire``). D checks the
operands (:func:`hw.isa.check`, the one copy of the validity rules) and retires its instruction

* at once if it is bad (error bit 0) or a NOP;
* when the machine is quiescent if it is a SYNC: the execute engine has finished every earlier
  instruction and every result has left ``out`` (``out_reserved == 0``);
* when it is pushed if it is a good LOAD_ACT (into the execute queue) or MATMUL (into the execute and
  loader queues): in the cycle after it entered D, unless a queue is full (``queue_depth`` entries);
  a queue entry is freed in the cycle its instruction is popped.
"""

from __future__ import annotations

from hw.isa import Op, check, decode_words
from hw.sim.recurrence import NEG, SimError, StreamTimes

__all__ = ["Dispatch", "RETIRE", "SYNC", "LOAD_ACT", "MATMUL"]

#: What D does with an instruction (``Dispatch.kind``): retire at once (NOP, bad), wait for
#: quiescence (SYNC), push into the execute queue (LOAD_ACT) or into both queues (MATMUL).
RETIRE, SYNC, LOAD_ACT, MATMUL = 0, 1, 2, 3


class Dispatch:
    """Decodes and checks the whole program at once (vectorised), then times the ``instr`` transfers
    and the retirement of D instruction by instruction.

    Program facts: ``kind``, ``a``, ``b``, ``c`` (per instruction, Python lists for the hot loop),
    ``bad`` (bool array: error bit 0), ``n_act`` / ``n_words`` / ``n_results`` (beats, weight words
    and result vectors the good instructions move). State: ``instr.t`` (the cycle each word is taken
    into D) and ``d_retire`` (the cycle D retires its instruction, which frees ``instr.ready``)."""

    def __init__(self, config, timing, words, *, n_act_beats: int, n_wgt_beats: int):
        f = decode_words(words)
        op, a, b, c = f["op"], f["a"], f["b"], f["c"]
        good = check(config, op, a, b, c)
        self.bad = good.bad
        # the three cases are exclusive; everything else (NOP, bad) retires at once
        kind = SYNC * (op == Op.SYNC.value) + LOAD_ACT * good.load + MATMUL * good.matmul
        self.kind, self.a, self.b, self.c = kind.tolist(), a.tolist(), b.tolist(), c.tolist()
        self.n_act = int(b[good.load].sum())
        self.n_words = int(b[good.matmul].sum())
        self.n_results = int(c[good.matmul].sum())
        bpw = config.beats_per_word
        if self.n_act != n_act_beats:
            raise SimError(f"the program's LOAD_ACTs take {self.n_act} activation beats, but the act "
                           f"stream holds {n_act_beats}")
        if self.n_words * bpw != n_wgt_beats:
            raise SimError(f"the program's MATMULs take {self.n_words} weight words = "
                           f"{self.n_words * bpw} beats ({bpw} per word), but the weight stream holds "
                           f"{n_wgt_beats}")
        self.queue_depth = config.queue_depth
        self.instr = StreamTimes(timing, "instr", len(op))
        self._d, self._not_before = self.instr.d.tolist(), self.instr.not_before.tolist()
        self.d_retire = NEG       # retire cycle of the previous instruction in D
        self._taken = -1          # cycle the previous instruction word was taken

    def take(self, i: int) -> int:
        """The cycle instruction ``i`` is taken into D: offered by the stream and D free."""
        t = self.instr.next_on(max(self._taken + self._d[i], self._not_before[i], self.d_retire))
        self.instr.t[i] = t
        self._taken = t
        return t

    def push(self, taken: int, matmul: bool, x_pop: list, ld_pop: list) -> int:
        """The cycle D pushes the instruction it took in ``taken``: the next cycle, once the execute
        queue (and, for a MATMUL, the loader queue) has room. ``x_pop`` / ``ld_pop``: the cycles the
        queues' earlier entries were popped."""
        q = self.queue_depth
        p = taken + 1
        j = len(x_pop)
        if j >= q:
            p = max(p, x_pop[j - q] + 1)
        m = len(ld_pop)
        if matmul and m >= q:
            p = max(p, ld_pop[m - q] + 1)
        return p

    @staticmethod
    def sync_retire(taken: int, x_finish: list, out_empty: int) -> int:
        """The cycle D retires a SYNC taken in ``taken``: the machine is quiescent (the last
        execute instruction finished before, every result has left ``out`` by ``out_empty``)."""
        return max(taken + 1, (x_finish[-1] + 1) if x_finish else NEG, out_empty)
