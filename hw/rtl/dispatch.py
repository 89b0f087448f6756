"""Dispatch stage of the tern core: the check pipeline, the dispatch register D, the execute and
loader queues it pushes, SYNC and the quiescence condition (``docs/ARCHITECTURE.md``, "Dispatch").

An instruction accepted from ``instr`` in cycle ``c`` enters the **check pipeline**: registers
``V0 .. V(s-1)`` (``s = config.check_stages``), one per cycle while the stage ahead has room, that
evaluate the validity rules of :func:`hw.isa.check` one adder level at a time, so that it reaches the
dispatch register D (at the earliest in ``c + s + 1``) with its verdict registered. A good LOAD_ACT /
MATMUL in D is pushed into the execute queue (and a MATMUL also into the loader queue) if both queues
have room, otherwise it waits there. NOP and bad instructions retire at once (a bad one sets error
bit 0). SYNC retires in the first cycle in which the machine is quiescent. Every stage moves when the
stage ahead is empty or moves in the same cycle; ``instr.ready`` is high iff ``V0`` is empty or moves.

The product ``k_words * tokens`` of the MATMUL range check is a shift-and-add of the range-checked
(narrow) operands, summed together with ``act_addr`` in a balanced tree with a register after every
adder level: nothing here multiplies two signals, and no cycle holds more than one adder.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Module, Mux, Signal
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
        "n_zero": 1,             # n_m1 == 0 (decided in the check pipeline, so that the execute
        "t_zero": 1,             # t_m1 == 0  engine's pop loads its flags without a comparator)
    })


def load_entry_layout(config: TernConfig) -> data.StructLayout:
    """A loader queue entry (a good MATMUL): the index of its last weight word."""
    return data.StructLayout({"k_last": _word_bits(config)})   # k_words - 1


def _queue_flags(m: Module, fifo: SyncFIFO, name: str, platform) -> tuple[Signal, Signal]:
    """Registered copies of ``fifo``'s ``~w_rdy`` (full) and ``~r_rdy`` (empty), kept from its push
    and pop: the same values as the FIFO's comparisons of its level, one flop each, so that the
    decisions that read them (D's retire, the execute engine's pop) start at a flop. A formal
    harness asserts the equality in every cycle."""
    full = Signal(name=f"{name}_full")
    empty = Signal(name=f"{name}_empty", init=1)
    do_write = fifo.w_en & fifo.w_rdy
    do_read = fifo.r_en & fifo.r_rdy
    with m.If(do_write & ~do_read):
        m.d.sync += [full.eq(fifo.level == fifo.depth - 1), empty.eq(0)]
    with m.If(do_read & ~do_write):
        m.d.sync += [full.eq(0), empty.eq(fifo.level == 1)]
    if platform == "formal":
        m.d.comb += [Assert(full == ~fifo.w_rdy), Assert(empty == ~fifo.r_rdy)]
    return full, empty


class Dispatch(ConfigComponent):
    """Check pipeline + stage D: instruction checks, queue pushes, SYNC (module docstring,
    docs/ARCHITECTURE.md).

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
        Nothing in the check pipeline or D, the execute queue empty and ``engine_idle`` (a SYNC
        would retire).
    bad_instr : Out(1)
        Sticky error bit 0: a bad instruction was skipped.

    Internal signals: ``v<k>_valid`` and ``v<k>_*`` (check stage ``k``), ``v<k>_ready`` (stage
    ``k`` takes the instruction of the stage behind it), ``v<k>_hole`` (registered: stage ``k`` or
    one ahead of it is empty), ``d_valid``, ``d_retire``, the registered verdict (each flag implies
    ``d_valid``) ``d_skip`` (NOP or bad), ``d_bad``, ``d_sync``, ``d_push``, ``d_matmul``, ``d_can_push``,
    ``quiescent``, ``xq_in``/``lq_in`` (the entries D pushes), ``err_bad_instr``, ``xq_full``,
    ``xq_empty``, ``lq_full``, ``lq_empty`` (the queues' flags, registered: :func:`_queue_flags`).
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

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        AW, KW = act_addr_width(cfg), _word_bits(cfg)
        kb, cb = cfg.wgt_depth.bit_length(), cfg.act_depth.bit_length()
        SW = kb + cb                        # span tree width: act_addr + k_words * tokens
        xq_l, lq_l = exec_entry_layout(cfg), load_entry_layout(cfg)

        # -- the check pipeline: V0 holds the raw word; V0 -> V1 evaluates every rule of hw.isa.check
        #    but the span, and the first adder level of act_addr + k_words * tokens; each later stage
        #    one more adder level; the last level and the span comparison go into D.
        stages = []                          # per stage: (valid, registers, their inputs)
        # the data registers of the stages have no reset: their valid bits say when they hold
        # something (so that a reset does not widen their enables)
        v0 = Signal(INSTR_LAYOUT, name="v0_instr", reset_less=True)
        stages.append((Signal(name="v0_valid"), [v0], [self.instr.payload]))
        op, a, b, c = v0.op, v0.a, v0.b, v0.c
        # every rule but the span; ``a + 0 <= AD`` of a MATMUL is ``a <= AD``, implied by the full
        # rule and what narrows ``a`` into the tree. The rules see the operands' low ``nb`` bits
        # (2**nb > act_depth, wgt_depth): an operand with a higher bit set breaks every rule it
        # takes part in (it exceeds each bound), so those bits only veto, beside short adders.
        nb = max(cfg.act_depth, cfg.wgt_depth).bit_length()
        high = {name: x[nb:].any() for name, x in (("a", a), ("b", b), ("c", c))}
        narrow = check(cfg, op, a[:nb], b[:nb], c[:nb], span=0)
        pre_load = narrow.load & ~high["a"] & ~high["b"]
        pre_mm = narrow.matmul & ~high["a"] & ~high["b"] & ~high["c"]
        b_n, c_n = b[:kb], c[:cb]
        nodes = [a[:AW + 1]] + [Mux(b_n[i], c_n << i, 0) for i in range(kb)]
        self.check_built("check_stages", (len(nodes) - 1).bit_length())

        def tree_level(nodes):
            pairs = [x + y for x, y in zip(nodes[0::2], nodes[1::2])]
            return pairs + ([nodes[-1]] if len(nodes) % 2 else [])

        carried = {
            # (b - 1)[:W] == 0 is b[:W] == 1: the flags need no subtraction
            "xq": (xq_l, Cat(op == Op.MATMUL.value, a[:AW], (b - 1)[:max(AW, KW)], (c - 1)[:AW],
                             b[:max(AW, KW)] == 1, c[:AW] == 1)),
            "lq": (lq_l, (b - 1)[:KW]),
            "nop": (1, op == Op.NOP.value), "sync": (1, op == Op.SYNC.value),
            "load": (1, pre_load), "mm": (1, pre_mm),
        }
        for k in range(1, cfg.check_stages):
            nodes = tree_level(nodes)
            regs = {n: Signal(shape, name=f"v{k}_{n}", reset_less=True)
                    for n, (shape, _) in carried.items()}
            tree = [Signal(SW, name=f"v{k}_node{j}", reset_less=True) for j in range(len(nodes))]
            stages.append((Signal(name=f"v{k}_valid"), [*regs.values(), *tree],
                           [value for _, value in carried.values()] + nodes))
            carried = {n: (shape, regs[n]) for n, (shape, _) in carried.items()}
            nodes = tree
        nodes = tree_level(nodes)
        span_ok = nodes[0] <= cfg.act_depth          # act_addr + k_words * tokens <= act_depth

        # -- D: the registered verdict; each flag includes d_valid (it is loaded with the valid of
        #    the stage behind), so that d_retire is two gate levels over flops
        d_valid = Signal(name="d_valid")
        d_retire = Signal(name="d_retire")
        d_skip = Signal(name="d_skip")                # valid, NOP or bad: retires at once
        d_bad = Signal(name="d_bad")                  # valid and bad
        d_sync = Signal(name="d_sync")                # valid SYNC
        d_push = Signal(name="d_push")                # valid, a good LOAD_ACT or MATMUL
        d_mm = Signal(name="d_matmul", reset_less=True)   # a good MATMUL
        xq_in = Signal(xq_l, name="xq_in", reset_less=True)
        lq_in = Signal(lq_l, name="lq_in", reset_less=True)
        f = {n: value for n, (_, value) in carried.items()}
        mm_ok = f["mm"] & span_ok
        good = f["nop"] | f["sync"] | f["load"] | mm_ok
        arriving = stages[-1][0]
        d_in = [d_skip.eq(arriving & (f["nop"] | ~good)), d_bad.eq(arriving & ~good),
                d_sync.eq(arriving & f["sync"]), d_push.eq(arriving & (f["load"] | mm_ok)),
                d_mm.eq(mm_ok),
                xq_in.eq(f["xq"]), lq_in.eq(f["lq"])]

        # -- the queues: entries pushed in c can be popped from c + 1
        m.submodules.exec_queue = xq = SyncFIFO(width=xq_l.size, depth=cfg.queue_depth)
        m.submodules.load_queue = lq = SyncFIFO(width=lq_l.size, depth=cfg.queue_depth)
        xq_full, xq_empty = _queue_flags(m, xq, "xq", platform)
        lq_full, lq_empty = _queue_flags(m, lq, "lq", platform)
        can_push = Signal(name="d_can_push")
        quiescent = Signal(name="quiescent")
        push = Signal(name="d_push_now")
        m.d.comb += [
            can_push.eq(~xq_full & (~lq_full | ~d_mm)),
            push.eq(d_push & can_push),
            d_retire.eq(d_skip | (d_sync & quiescent) | push),
            xq.w_data.eq(xq_in),
            xq.w_en.eq(push),
            lq.w_data.eq(lq_in),
            lq.w_en.eq(push & d_mm),
        ]

        # -- the ready chain: a stage takes the one behind it when it is empty or moves on, i.e.
        #    when it or a stage ahead of it is empty (a hole) or D retires. The holes are registers,
        #    loaded with their definition over the stages' next valid bits, so that every stage's
        #    ready is one gate after d_retire and none waits for the ready of the stage ahead; their
        #    next values are computed for both outcomes of d_retire, which picks one at the end.
        d_ready = Signal(name="d_ready")
        m.d.comb += d_ready.eq(~d_valid | d_retire)
        valids = [s[0] for s in stages] + [d_valid]        # V0 .. V(s-1), D
        behind = [self.instr.valid] + valids[:-1]
        holes = []
        for k, (valid, regs, inputs) in enumerate(stages):
            hole = Signal(init=1, name=f"v{k}_hole")       # ~(v<k>_valid & ... & d_valid)
            ready = Signal(name=f"v{k}_ready")
            m.d.comb += ready.eq(hole | d_retire)
            if k == 0:
                m.d.comb += self.instr.ready.eq(ready)
            with m.If(ready):
                m.d.sync += valid.eq(behind[k])
                m.d.sync += [r.eq(x) for r, x in zip(regs, inputs)]
            holes.append(hole)

        def holes_next(retire: bool):
            """The holes' next values if D retires now (``retire``) or not: over registers only."""
            ready = [(h | retire) for h in holes] + [~d_valid | retire]
            valid_next = [Mux(r, b, v) for r, b, v in zip(ready, behind, valids)]
            return [~Cat(*valid_next[k:]).all() for k in range(len(holes))]

        # d_retire (the latest input) selects between the two: one gate after it
        for k, (hole, if_retire, if_not) in enumerate(zip(holes, holes_next(True),
                                                           holes_next(False))):
            m.d.sync += hole.eq(Mux(d_retire, if_retire, if_not))
            if platform == "formal":
                m.d.comb += Assert(hole == ~Cat(*valids[k:]).all())
        with m.If(d_ready):
            m.d.sync += [d_valid.eq(arriving), *d_in]

        err_bad = Signal(name="err_bad_instr")
        with m.If(d_bad):
            m.d.sync += err_bad.eq(1)

        # The queue heads, as streams of their entry layouts.
        m.d.comb += [
            self.exec_q.valid.eq(~xq_empty),
            self.exec_q.payload.eq(xq.r_data),
            xq.r_en.eq(self.exec_q.ready),
            self.load_q.valid.eq(~lq_empty),
            self.load_q.payload.eq(lq.r_data),
            lq.r_en.eq(self.load_q.ready),
            quiescent.eq(self.engine_idle & xq_empty),
            self.idle.eq(~d_valid & ~Cat(s[0] for s in stages).any() & quiescent),
            self.bad_instr.eq(err_bad),
        ]
        return m
