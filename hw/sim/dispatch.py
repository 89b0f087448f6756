"""Dispatch stage of the simulator (RTL: :class:`hw.rtl.dispatch.Dispatch`).

An instruction word taken from the ``instr`` stream in cycle ``t`` passes the check pipeline
(``check_stages`` registers ``V0 ..``) into the dispatch register D: it is in ``V0`` from ``t + 1``
and moves one stage per cycle while the stage ahead is empty or moves in the same cycle, so it is in D
from ``t + check_stages + 1`` at the earliest (``instr.ready`` = ``V0`` empty or moving). D holds the
registered verdict of the operand checks (:func:`hw.isa.check`, the one copy of the validity rules)
and retires its instruction

* at once if it is bad (error bit 0) or a NOP;
* when the machine is quiescent if it is a SYNC: the execute engine has finished every earlier
  instruction and every result has left ``out`` (``out_reserved == 0``);
* when it is pushed if it is a good LOAD_ACT (into the execute queue) or MATMUL (into the execute and
  loader queues): in its first cycle in D, unless a queue is full (``queue_depth`` entries); a queue
  entry is freed in the cycle its instruction is popped.

With ``E_k(i)`` the first cycle instruction ``i`` is in stage ``k`` (1: ``V0``, ..., ``p``: D) and
``r_i`` the cycle D retires it: ``t_i >= E_2(i-1) - 1``, ``E_1(i) = t_i + 1``,
``E_k(i) = max(E_{k-1}(i) + 1, E_{k+1}(i-1))`` and ``E_p(i) = max(E_{p-1}(i) + 1, r_{i-1} + 1)``.
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
        #: the first cycle the previous instruction was in each stage: V0 .. V(s-1), D
        self._in_stage = [NEG] * (config.check_stages + 1)

    def take(self, i: int) -> int:
        """Take instruction ``i`` (the stream offers it and ``V0`` is empty or moves on; the cycle is
        recorded in ``instr.t``) and return the first cycle it is in D."""
        prev = self._in_stage
        t = self.instr.next_on(max(self._taken + self._d[i], self._not_before[i], prev[1] - 1))
        self.instr.t[i] = t
        self._taken = t
        cur = [t + 1]
        for k in range(1, len(prev) - 1):
            cur.append(max(cur[-1] + 1, prev[k + 1]))
        cur.append(max(cur[-1] + 1, self.d_retire + 1))
        self._in_stage = cur
        return cur[-1]

    def push(self, in_d: int, matmul: bool, x_pop: list, ld_pop: list) -> int:
        """The cycle D pushes the instruction that is in D from ``in_d``: at once, once the execute
        queue (and, for a MATMUL, the loader queue) has room. ``x_pop`` / ``ld_pop``: the cycles the
        queues' earlier entries were popped."""
        q = self.queue_depth
        p = in_d
        j = len(x_pop)
        if j >= q:
            p = max(p, x_pop[j - q] + 1)
        m = len(ld_pop)
        if matmul and m >= q:
            p = max(p, ld_pop[m - q] + 1)
        return p

    @staticmethod
    def sync_retire(in_d: int, x_finish: list, out_empty: int) -> int:
        """The cycle D retires a SYNC that is in D from ``in_d``: the machine is quiescent (the last
        execute instruction finished before, every result has left ``out`` by ``out_empty``)."""
        return max(in_d, (x_finish[-1] + 1) if x_finish else NEG, out_empty)
