"""PE array: ``rows`` ternary dot units sharing one broadcast activation vector, each followed by a
wrapping accumulator. Additions and subtractions only; there is no multiplier.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib.data import ArrayLayout
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.component import ConfigComponent
from hw.rtl.dot import TernaryDotUnit

__all__ = ["PEArray"]


class PEArray(ConfigComponent):
    """``R`` ternary dot units of ``L`` lanes and ``R`` signed ``A``-bit accumulators.

    Parameters
    ----------
    config : TernConfig
        Uses ``rows`` (R), ``lanes`` (L), ``acc_width`` (A), ``tree_reg_every`` and ``dot_variant``
        (the dot units' micro-architecture; with ``carry`` each accumulator's adder takes the dot
        unit's left-over carry as its carry-in: ``acc + d + carry``).

    Ports (``sync`` domain; no stall, no handshake)
    ------------------------------------------------
    valid : In(1)
        The inputs of this cycle are a step to accumulate. Inputs with ``valid = 0`` are ignored
        (bubbles may appear anywhere, also inside an accumulation).
    first : In(1)
        With ``valid``: this step starts a new accumulation (``acc_r = d_r``).
    last : In(1)
        With ``valid``: this step ends an accumulation; its result is emitted. ``first`` and ``last``
        may both be set (a one-step accumulation).
    act : In(ArrayLayout(signed(8), L))
        Activation vector, broadcast to every row.
    codes : In(ArrayLayout(ArrayLayout(unsigned(2), L), R))
        ``codes[r][l]`` is row ``r``'s weight code for lane ``l`` (2: +1, 0: -1, 1 or 3: 0).
    result_valid : Out(1)
        High for exactly one cycle, :attr:`latency` (``config.pe_latency``) cycles after a step
        with ``valid & last``.
    result : Out(ArrayLayout(signed(A), R))
        The finished accumulations while ``result_valid`` is high (otherwise the previous ones, or
        with ``dot_latency = 0`` the running accumulators; do not use). ``result[r] = sum over the accumulation's steps of d_r``, wrapped
        to ``A`` bits two's complement, where ``d_r = sum_l t[r][l] * act[l]``.

    Timing: the step presented in cycle ``c`` reaches the accumulator stage in cycle
    ``c + config.dot_latency`` (``valid/first/last`` travel through a matching delay line); the
    accumulators are registers updated at the end of that cycle, so ``result``/``result_valid`` are
    registered outputs visible in cycle ``c + config.pe_latency`` (``dot_latency + 1``). Elaboration
    checks that the register stages it builds add up to ``config.pe_latency``.

    Accumulators: with ``dot_latency >= 1`` a step's ``first`` is seen one stage before the
    accumulator stage, where it clears the accumulator with the flip-flops' synchronous reset (the
    accumulator then adds ``d`` onto 0: one adder per bit, no multiplexer in front of it); a step
    with ``last`` loads its sum into the result register ``res_r{r}`` (so the clear of the next
    accumulation may come in the same cycle). With ``dot_latency = 0`` the accumulator is
    ``(first ? 0 : acc) + d`` and is the result.

    Internal signals: ``dot{r}_*`` (the dot units), ``d_r{r}`` (row r's dot product at the
    accumulator stage), ``acc_r{r}`` (row r's accumulator register), ``acc_sum_r{r}`` (``acc_r + d_r``),
    ``res_r{r}`` (row r's result register), ``valid_p{i}/first_p{i}/
    last_p{i}`` (the flag delay line, stage ``i``), ``acc_valid/acc_first/acc_last`` (the flags at the
    accumulator stage).
    """

    def __init__(self, config: TernConfig):
        R, L, A = config.rows, config.lanes, config.acc_width
        super().__init__(config, {
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "act": In(ArrayLayout(signed(8), L)),
            "codes": In(ArrayLayout(ArrayLayout(2, L), R)),
            "result_valid": Out(1),
            "result": Out(ArrayLayout(signed(A), R)),
        })
        #: The accumulator registers ``acc_r{r}``, one per row: internal (not ports), named here so
        #: that the formal proof can state its invariant over them (``hw.verify.formal``).
        self.acc_regs = [Signal(signed(A), name=f"acc_r{r}") for r in range(R)]

    @property
    def latency(self) -> int:
        """Cycles from a step with ``valid & last`` to its ``result_valid``: ``config.pe_latency``."""
        return self.config.pe_latency

    def elaborate(self, platform):
        cfg = self.config
        R, A = cfg.rows, cfg.acc_width
        m = Module()

        # Flag delay line matching the dot units' pipeline (each dot unit checks its own stages).
        valid, first, last = self.valid, self.first, self.last
        pre_valid = pre_first = None
        stages = 0
        for i in range(cfg.dot_latency):
            pre_valid, pre_first = valid, first
            stages += 1
            v = Signal(name=f"valid_p{i}")
            f = Signal(name=f"first_p{i}")
            la = Signal(name=f"last_p{i}")
            m.d.sync += [v.eq(valid), f.eq(first), la.eq(last)]
            valid, first, last = v, f, la
        acc_valid = Signal(name="acc_valid")
        acc_first = Signal(name="acc_first")
        acc_last = Signal(name="acc_last")
        m.d.comb += [acc_valid.eq(valid), acc_first.eq(first), acc_last.eq(last)]

        result_valid = Signal(name="result_valid_r")
        m.d.sync += result_valid.eq(acc_valid & acc_last)
        stages += 1  # the accumulators and result_valid_r
        self.check_built("pe_latency", stages)
        m.d.comb += self.result_valid.eq(result_valid)

        for r in range(R):
            split = cfg.dot_variant == "carry"   # the unit leaves one carry bit to the accumulator
            dot = TernaryDotUnit(cfg.lanes, cfg.tree_reg_every, variant=cfg.dot_variant,
                                 carry_out=split, name_prefix=f"dot{r}")
            m.submodules[f"dot{r}"] = dot
            self.check_built("dot_latency", dot.latency)
            m.d.comb += [dot.act.eq(self.act), dot.codes.eq(self.codes[r])]
            d = Signal(signed(A), name=f"d_r{r}")          # sign-extended dot product
            acc = self.acc_regs[r]
            m.d.comb += d.eq(dot.sum)
            carry = dot.carry if split else 0
            if pre_valid is None:
                with m.If(acc_valid):
                    m.d.sync += acc.eq(Mux(acc_first, 0, acc) + d + carry)
                m.d.comb += self.result[r].eq(acc)
            else:
                total = Signal(signed(A), name=f"acc_sum_r{r}")
                res = Signal(signed(A), name=f"res_r{r}")
                m.d.comb += total.eq(acc + d + carry)
                with m.If(acc_valid & acc_last):
                    m.d.sync += res.eq(total)
                with m.If(pre_valid & pre_first):
                    m.d.sync += acc.eq(0)
                with m.Elif(acc_valid):
                    m.d.sync += acc.eq(total)
                m.d.comb += self.result[r].eq(res)
        return m
