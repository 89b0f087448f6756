"""Output FIFO and ``out`` stream of the simulator (RTL: :class:`hw.rtl.buffers.OutputFIFO`).

The result of a token whose last step issued in cycle ``c`` is written into the FIFO after the RAM
read and the PE array, and can leave ``out`` from ``c + result_latency`` on (RAM read + PE array +
FIFO); results leave in order, each when the ``out`` stream takes it. Every ``out`` transfer returns
the output credit its result took (``out_reserved -= 1`` at the end of that cycle), so result ``n``'s
credit is free from the cycle after the transfer of result ``n - out_depth``.
"""

from __future__ import annotations

import numpy as np

from hw.sim.recurrence import NEG, StreamTimes

__all__ = ["OutputFIFO"]


class OutputFIFO:
    """Times the ``out`` transfers. State: ``out.t`` (cycle of every transfer), ``n`` (results
    written so far), ``last`` (cycle of the latest transfer, -1 before the first)."""

    def __init__(self, config, timing, n_results: int):
        self.result_latency = config.result_latency
        self.depth = config.out_depth
        self.out = StreamTimes(timing, "out", n_results)
        self.n = 0
        self.last = -1

    def credit_free(self, n: int) -> int:
        """The first cycle in which result ``n`` can take an output credit (``out_reserved <
        out_depth``)."""
        return int(self.out.t[n - self.depth]) + 1 if n >= self.depth else NEG

    def credits_free(self, n0: int, n1: int) -> np.ndarray:
        """:meth:`credit_free` of results ``n0 .. n1-1`` (``n1 <= n0 + out_depth``: their credits
        come back from results before ``n0``)."""
        k = self.depth
        if n0 >= k:
            return self.out.t[n0 - k:n1 - k] + 1
        free = np.full(n1 - n0, NEG, dtype=np.int64)
        if n1 > k:
            free[k - n0:] = self.out.t[:n1 - k] + 1
        return free

    def write_one(self, last_issue: int) -> None:
        """:meth:`write` of one result, whose token's last step issued in ``last_issue``, in
        scalars (a decode MATMUL's result): ``o_n = next_on(max(o_{n-1} + d_n, not_before_n,
        last_issue + result_latency))``."""
        n, out = self.n, self.out
        t = max(self.last + int(out.d[n]), int(out.not_before[n]), last_issue + self.result_latency)
        t = out.next_on(t)
        out.t[n] = t
        self.n = n + 1
        self.last = t

    def write(self, last_issue: np.ndarray) -> None:
        """Results ``n .. n+len(last_issue)-1``, whose tokens' last steps issued in ``last_issue``:
        ``o_n = max(o_{n-1} + d_n, not_before_n, last_issue_n + result_latency)``."""
        n0, n1 = self.n, self.n + len(last_issue)
        out = self.out
        e = np.maximum(out.not_before[n0:n1], last_issue + self.result_latency)
        out.t[n0:n1] = out.chain(int(out.t[n0 - 1]) if n0 else -1, n0, e)
        self.n = n1
        self.last = int(out.t[n1 - 1])
