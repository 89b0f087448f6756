"""Weight loader stage of the simulator (RTL: :class:`hw.rtl.loader.WeightLoader`, with the weight
decoder :class:`hw.rtl.decoder.WeightDecoder` in front of it).

The loader pops a MATMUL from the loader queue when it has none or writes its current MATMUL's last
word; it holds the MATMUL (``ld_valid``) from the next cycle until that last word is written. Weight
word ``ld_count`` goes into bank ``ld_bank``; the bank scoreboard's ``bank_owned`` / ``bank_fill``
tell the execute engine which words are there:

* word 0 of MATMUL ``m`` may be written only into a bank that is not owned, i.e. from the cycle after
  the execute engine's last issue of MATMUL ``m - 2`` (the same bank);
* the decoder holds one finished word: the last beat of word ``k`` waits until word ``k - 1`` can
  be taken, and word ``k`` is written ``decoder_latency`` cycles after its last beat;
* weight stream gate: ``wgt`` beats are admitted only while the loader holds a MATMUL, so beats the
  stream offers before ``ld_valid`` of MATMUL ``m`` are taken only inside an earlier MATMUL's
  ``ld_valid`` interval (the decoder buffers them).
"""

from __future__ import annotations

import bisect

import numpy as np

from hw.sim.recurrence import NEG, SimError, StreamTimes, chain

__all__ = ["WeightLoader"]


class WeightLoader:
    """Times the ``wgt`` beats and the write of every weight word, MATMUL by MATMUL.

    State: ``wgt.t`` (cycle of every beat), ``ld_write`` (the cycle each weight word is written:
    ``bank_fill`` counts it from the next cycle), ``ld_pop`` (the cycle each MATMUL was popped from
    the loader queue), ``ld_valid_from`` / ``ld_valid_until`` (the cycles the loader holds each
    MATMUL: the weight stream gate is open in between), ``n_words`` (words written so far)."""

    def __init__(self, config, timing, n_words: int):
        self.bpw = config.beats_per_word
        self.decoder_latency = config.decoder_latency
        self.wgt = StreamTimes(timing, "wgt", n_words * self.bpw)
        self.ld_write = np.zeros(n_words, dtype=np.int64)
        self.ld_pop: list = []
        self.ld_valid_from: list = []
        self.ld_valid_until: list = []
        self.n_words = 0
        self._beat = 0                  # next weight beat
        self._word_ready_prev = NEG     # cycle from which the previous word could be taken

    def load(self, push: int, k_words: int, bank_release: list) -> np.ndarray:
        """Load the next MATMUL's ``k_words`` words (pushed into the loader queue in ``push``;
        ``bank_release[m]`` is the cycle of MATMUL ``m``'s last issue). Returns the write cycles of
        its words."""
        bpw, wgt = self.bpw, self.wgt
        m = len(self.ld_pop)
        pop = max(push + 1, self.ld_valid_until[-1]) if m else push + 1
        self.ld_pop.append(pop)
        lo = pop + 1                                       # ld_valid from here
        # word 0 is written into a bank that is not owned; later words follow freely
        ready0 = max(lo, bank_release[m - 2] + 1) if m >= 2 else lo
        b0, b1 = self._beat, self._beat + k_words * bpw
        e = wgt.not_before[b0:b1].copy()
        # the last beat of word k waits for word k-1's transfer (the decoder holds one word): word
        # 0's for the previous MATMUL's last word, word 1's for word 0 (ready0), the others' from lo
        last_beat_bound = e[bpw - 1::bpw]
        first = int(last_beat_bound[0])
        second = int(last_beat_bound[1]) if k_words > 1 else 0
        np.maximum(last_beat_bound, lo, out=last_beat_bound)
        last_beat_bound[0] = max(first, self._word_ready_prev)
        if k_words > 1:
            last_beat_bound[1] = max(second, ready0)
        # weight stream gate: a beat offered before `lo` is taken only while an earlier MATMUL holds
        # the loader (in the next cycle of an ld_valid interval), else at `lo`
        t_prev = int(wgt.t[b0 - 1]) if b0 else -1
        b = b0
        if wgt.withdraws:
            # beat by beat: the first cycle the gate is open (an earlier MATMUL's ld_valid interval,
            # or from `lo` on) and the stream does not withdraw valid
            for b in range(b0, b1):
                c = max(t_prev + int(wgt.d[b]), int(e[b - b0]))
                while True:
                    k = bisect.bisect_left(self.ld_valid_until, c)
                    g = max(c, self.ld_valid_from[k] if k < m else lo)
                    c = wgt.next_on(g)
                    if c == g:
                        break
                t_prev = wgt.t[b] = c
            b = b1
        if m and b < b1:
            # beats offered before the previous MATMUL's interval opened, one at a time (rare: the
            # stream is then far ahead of the loader)
            opened = self.ld_valid_from[-1]
            while b < b1:
                t0 = max(t_prev + int(wgt.d[b]), int(e[b - b0]))
                if t0 >= opened:
                    break
                k = bisect.bisect_left(self.ld_valid_until, t0)
                t_prev = wgt.t[b] = max(t0, self.ld_valid_from[k])
                b += 1
        if b < b1:
            # the rest at once: the beats inside the previous MATMUL's interval as offered, the first
            # one offered after it (gate closed) and before `lo` at `lo`, the rest behind it
            t = chain(t_prev, wgt.s, b, e[b - b0:])
            # (a beat after the previous interval and before lo needs lo > that interval's end + 1)
            if t[0] < lo and (not m or lo > self.ld_valid_until[-1] + 1):
                closed = int(np.searchsorted(t, self.ld_valid_until[-1] if m else NEG, side="right"))
                if closed < len(t) and t[closed] < lo:
                    e_rest = e[b - b0 + closed:].copy()
                    e_rest[0] = lo
                    t[closed:] = chain(int(t[closed - 1]) if closed else t_prev, wgt.s, b + closed,
                                       e_rest)
            wgt.t[b:b1] = t
        last_beats = wgt.t[b0:b1][bpw - 1::bpw]
        ld = self.decoder_latency
        if ld > bpw and k_words > 1 and np.any(last_beats[1:] < last_beats[:-1] + ld):
            raise SimError("decoder latency > beats per word is not modelled")
        # word 0 is written once its bank is free (ready0 >= lo), the others from lo on
        writes = np.maximum(last_beats + ld, lo)
        writes[0] = max(int(last_beats[0]) + ld, ready0)
        g = self.n_words
        self.ld_write[g:g + k_words] = writes
        self._word_ready_prev = lo if k_words > 1 else ready0
        self.ld_valid_from.append(lo)
        self.ld_valid_until.append(int(writes[-1]))
        self._beat = b1
        self.n_words = g + k_words
        return writes
