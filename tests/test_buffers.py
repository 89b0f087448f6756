"""Buffers: activation buffer, double-buffered weight buffer, output FIFO (cycle-exact models)."""

import collections
import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.config import TernConfig
from hw.rtl.buffers import ActBuffer, OutputFIFO, WeightBuffer, result_layout


def _run(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("seed", [1, 2])
def test_act_buffer_random_read_write(seed):
    rng = random.Random(seed)
    cfg = TernConfig(rows=2, lanes=rng.choice([1, 3, 8]), act_depth=16)
    dut = ActBuffer(cfg)
    assert dut.latency == 1
    model = {}

    async def tb(ctx):
        for cycle in range(300):
            w_en = rng.random() < 0.5
            w_addr = rng.randrange(cfg.act_depth)
            w_word = [rng.randrange(-128, 128) for _ in range(cfg.lanes)]
            r_addr = rng.randrange(cfg.act_depth)
            if rng.random() < 0.2:
                r_addr = w_addr  # same-address read/write: not transparent, returns the old word
            ctx.set(dut.write.en, w_en)
            ctx.set(dut.write.addr, w_addr)
            ctx.set(dut.write.data, w_word)
            ctx.set(dut.read.addr, r_addr)
            expect = model.get(r_addr)
            await ctx.tick()
            if w_en:
                model[w_addr] = w_word
            if expect is not None:
                got = [ctx.get(dut.read.data[i]) for i in range(cfg.lanes)]
                assert got == expect, f"seed={seed} cycle={cycle} addr={r_addr}: {got} != {expect}"

    _run(dut, tb)


@pytest.mark.parametrize("seed", [3, 4])
def test_weight_buffer_banks(seed):
    rng = random.Random(seed)
    cfg = TernConfig(rows=rng.choice([1, 3]), lanes=rng.choice([2, 5]), wgt_depth=4)
    dut = WeightBuffer(cfg)
    model = {}

    def rand_word():
        return [[rng.randrange(4) for _ in range(cfg.lanes)] for _ in range(cfg.rows)]

    async def tb(ctx):
        for cycle in range(300):
            w_en = rng.random() < 0.6
            wb, wa, word = rng.randrange(2), rng.randrange(cfg.wgt_depth), rand_word()
            rb, ra = rng.randrange(2), rng.randrange(cfg.wgt_depth)
            # word k of bank b is at address b * wgt_depth + k
            ctx.set(dut.write.en, w_en)
            ctx.set(dut.write.addr, wb * cfg.wgt_depth + wa)
            ctx.set(dut.write.data, word)
            ctx.set(dut.read.addr, rb * cfg.wgt_depth + ra)
            expect = model.get((rb, ra))
            await ctx.tick()
            if w_en:
                model[(wb, wa)] = word
            if expect is not None:
                got = [[ctx.get(dut.read.data[r][l]) for l in range(cfg.lanes)] for r in range(cfg.rows)]
                assert got == expect, f"seed={seed} cycle={cycle} bank={rb} addr={ra}"
        # both banks were written independently
        assert {b for b, _ in model} == {0, 1}, f"seed={seed}"

    _run(dut, tb)


@pytest.mark.parametrize("seed,depth,p_w,p_r", [(5, 2, 0.7, 0.5), (6, 3, 0.9, 0.3), (7, 5, 0.4, 0.9),
                                                (8, 1, 0.8, 0.8)])
def test_output_fifo_cycle_exact(seed, depth, p_w, p_r):
    """Every cycle, w.ready/r.valid/r.payload/level equal a deque model updated at each edge:
    capacity exactly ``depth``, one cycle from a write to the read side, nothing lost or duplicated."""
    rng = random.Random(seed)
    cfg = TernConfig(rows=2, lanes=4, acc_width=16, out_depth=max(depth, 2))
    dut = OutputFIFO(result_layout(cfg), depth)
    assert dut.latency == 1 and dut.depth == depth
    model = collections.deque()
    sent, received = [], []

    async def tb(ctx):
        nxt = 0
        for cycle in range(600):
            w_valid = rng.random() < p_w
            value = [nxt & 0x7FFF, -(nxt & 0x7FFF)]
            r_ready = rng.random() < p_r
            ctx.set(dut.w.valid, w_valid)
            ctx.set(dut.w.payload, value)
            ctx.set(dut.r.ready, r_ready)
            w_ready, r_valid = ctx.get(dut.w.ready), ctx.get(dut.r.valid)
            assert ctx.get(dut.level) == len(model), f"seed={seed} cycle={cycle}"
            assert w_ready == (len(model) < depth), f"seed={seed} cycle={cycle}"
            assert r_valid == (len(model) > 0), f"seed={seed} cycle={cycle}"
            if r_valid:
                got = [ctx.get(dut.r.payload[i]) for i in range(2)]
                assert got == model[0], f"seed={seed} cycle={cycle}: {got} != {model[0]}"
            await ctx.tick()
            if r_valid and r_ready:
                received.append(model.popleft())
            if w_valid and w_ready:
                model.append(value)
                sent.append(value)
                nxt += 1
        assert received == sent[:len(received)] and len(sent) - len(received) == len(model)
        assert len(received) > 100, f"seed={seed}: too few transfers to be a meaningful test"

    _run(dut, tb)


def test_bad_parameters():
    with pytest.raises(TypeError, match="TernConfig"):
        ActBuffer({"rows": 2})
    with pytest.raises(TypeError, match="TernConfig"):
        WeightBuffer(None)
    with pytest.raises(ValueError, match="depth"):
        OutputFIFO(data.ArrayLayout(8, 2), 0)
