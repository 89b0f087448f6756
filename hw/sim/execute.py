"""Execute engine stage of the simulator (RTL: :class:`hw.rtl.execute.ExecuteEngine`).

The engine pops the execute queue when it has no current instruction or its current one finishes;
the popped instruction is current (``x_valid``) from the next cycle, with no bubble between
instructions.

* LOAD_ACT: ``act.ready`` while it is current; the transfer of its last beat finishes it.
* MATMUL: step ``(t, k)`` issues when word ``k`` is in bank ``x_bank`` (written in an earlier cycle:
  ``x_k < bank_fill``) and, for a token's last step, an output credit is free (``out_reserved <
  out_depth``). Token 0 therefore streams behind the weight loader word by word; tokens ``1 ..
  T-1`` find every word there and issue ``k_words`` steps each, the last waiting for its credit. The
  last step of the last token finishes the MATMUL and releases its bank (``bank_owned`` cleared).
"""

from __future__ import annotations

import numpy as np

from hw.sim.recurrence import StreamTimes

__all__ = ["ExecuteEngine"]


class ExecuteEngine:
    """Times the ``act`` beats and every issue step. State: ``act.t`` (cycle of every ``act``
    beat), ``x_pop`` / ``x_finish`` (the cycle each execute instruction was popped / finished: it is
    current from ``x_pop + 1`` to ``x_finish``), ``bank_release`` (each MATMUL's last issue, after
    which its bank is no longer owned), ``credit_take`` (the cycle of each result's last issue, when
    it takes its output credit)."""

    def __init__(self, config, timing, n_act: int, n_results: int, output, counters, datapath):
        self.act = StreamTimes(timing, "act", n_act)
        self.x_pop: list = []
        self.x_finish: list = []
        self.bank_release: list = []
        self.credit_take = np.zeros(n_results, dtype=np.int64)
        self.output, self.counters, self.datapath = output, counters, datapath
        self._beat = 0                  # next activation beat
        self._steps = np.arange(config.wgt_depth, dtype=np.int64)     # 0 .. k_words-1 of a MATMUL

    def pop(self, push: int) -> int:
        """The cycle the instruction pushed in ``push`` is popped (current from the next cycle)."""
        x_pop = max(push + 1, self.x_finish[-1]) if self.x_finish else push + 1
        self.x_pop.append(x_pop)
        return x_pop

    def load_act(self, x_pop: int, addr: int, count: int) -> None:
        """LOAD_ACT ``addr, count`` popped in ``x_pop``: ``act.ready`` from ``x_pop + 1`` until the
        last beat."""
        act, ab = self.act, self._beat
        e = act.not_before[ab:ab + count].copy()
        e[0] = max(e[0], x_pop + 1)
        t = act.chain(act.t[ab - 1] if ab else -1, ab, e)
        act.t[ab:ab + count] = t
        x_finish = int(t[-1])
        self.datapath.load_act(addr, ab, count)
        self._beat = ab + count
        c = self.counters
        c.stall_act += x_finish - x_pop - count
        c.x_valid += x_finish - x_pop
        self.x_finish.append(x_finish)

    def matmul(self, x_pop: int, addr: int, k_words: int, tokens: int, ld_write: np.ndarray,
               first_word: int) -> None:
        """MATMUL ``addr, k_words, tokens`` popped in ``x_pop``, whose weight words (from
        ``first_word`` on) are written in the cycles ``ld_write``."""
        out, c, kw = self.output, self.counters, k_words
        depth = out.depth
        n0 = out.n
        # ---- token 0: step k issues once word k is readable (x_k < bank_fill, from its write + 1),
        #      the first once popped, the last once a credit is free:
        #      issue_k = max(issue_{k-1} + 1, bound_k) = k + cummax(bound - k)
        kk = self._steps[:kw]
        rel = ld_write - kk                                # readable_k - k - 1
        first, last = int(rel[0]), int(rel[-1])
        rel[0] = max(first, x_pop)
        rel[-1] = max(int(rel[-1]), out.credit_free(n0) - kw)
        issue = np.maximum.accumulate(rel)
        end = int(issue[-1]) + kw
        # weight stalls: cycles step k was ready (step k-1 issued, or the MATMUL current) before word
        # k was readable, i.e. max(readable_k - ready_k, 0) with ready_0 = x_pop + 1 and
        # ready_k = issue_{k-1} + 1: in the shifted form, (rel_k - issue_{k-1})+
        stall_weight = max(first - x_pop, 0)
        if kw > 1:
            rel[-1] = last
            wait = rel[1:] - issue[:-1]
            stall_weight += int(np.maximum(wait, 0, out=wait).sum())
        c.stall_weight += stall_weight
        c.stall_out += end - x_pop - kw - stall_weight
        self.credit_take[n0] = end
        out.write_one(end)
        # ---- tokens 1..T-1: k_words issues each, the last one waits for an output credit
        #      (in blocks of out_depth tokens, whose credits are all freed by earlier results)
        t = 1
        while t < tokens:
            te = min(tokens, t + depth)
            credit = out.credits_free(n0 + t, n0 + te)
            steps = np.arange(t, te, dtype=np.int64) * kw
            credit -= steps
            z = np.maximum.accumulate(credit, out=credit)
            np.maximum(z, end - (t - 1) * kw, out=z)
            ends = self.credit_take[n0 + t:n0 + te]
            np.add(steps, z, out=ends)
            c.stall_out += int(ends[-1] - end) - kw * (te - t)
            end = int(ends[-1])
            out.write(ends)
            t = te
        self.bank_release.append(end)
        c.busy += kw * tokens
        c.x_valid += end - x_pop
        self.x_finish.append(end)
        self.datapath.matmul(addr, kw, tokens, first_word, n0)
