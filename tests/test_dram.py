"""hw.dram: the DRAM channel model (bursts, banks and rows, refresh, one shared channel) and the Timing
it produces, replayed bit- and cycle-exactly by hw.sim and both RTL backends."""

import math

import numpy as np
import pytest

from hw.config import TernConfig
from hw.dram import (DEFAULT_FIFO_BYTES, DRAMS, _Channels, check_schedule, get_dram, markdown_table,
                     schedule_program, sequential_efficiency)
from hw.estimate.memory import MEMORIES
from hw.program import linear_program
from hw.sim import simulate
from hw.timing import StreamTiming, Timing
from tests.helpers import assert_same_as_sim


def test_every_memory_has_dram_parameters_matching_its_peak():
    """The same technologies; one unit's peak from rate x width x channels equals the memory table's."""
    assert list(DRAMS) == list(MEMORIES)
    for name, p in DRAMS.items():
        assert p.peak_gb_s == pytest.approx(MEMORIES[name].bandwidth_gb_s, rel=1e-12), name
        assert set(p.kinds) == {"organization", "timings", "refresh"}
        assert all(k in ("primary", "secondary", "derived", "assumption") for k, _ in p.kinds.values())
        # a sequential stream rotates over the bank groups: tCCD_L never binds it
        assert p.bank_groups * p.burst_ns >= p.tCCD_L - 1e-9, name
        assert p.page_bytes % p.burst_bytes == 0 and p.banks % p.bank_groups == 0


def test_lpddr4x_burst_numbers_by_hand():
    p = get_dram("lpddr4x")
    assert p.burst_bytes == 32                       # 16 bits x BL16
    assert p.burst_ns == pytest.approx(16 / 4.266)   # 16 transfers at 4266 MT/s
    with pytest.raises(ValueError, match="unknown memory 'gddr7'"):
        get_dram("gddr7")


@pytest.mark.parametrize("name", list(DRAMS))
def test_sequential_efficiency_is_refresh_bound(name):
    """A long sequential read with bank lookahead loses (almost) only refresh: about
    (tRP + tRFC + the row reopen) per tREFI, computed by hand from the parameters."""
    p = get_dram(name)
    e = sequential_efficiency(name)
    refresh_only = 1 - (p.tRP + p.tRFC) / p.tREFI
    reopen = (p.tRCD + p.tCL) / p.tREFI              # the first burst after a refresh
    assert refresh_only - reopen - 0.01 <= e <= refresh_only + 1e-9, (name, e, refresh_only)


def test_row_hits_and_misses_by_hand():
    """One LPDDR4X channel: a 2 KB row holds 64 bursts; bursts 0..63 are bank 0 row 0, 64.. bank 1.
    A hit waits only for the bus; a closed bank costs tRCD + tCL before the first data."""
    p = get_dram("lpddr4x")
    ch = _Channels(p, 1)
    assert ch.locate(0) == (0, 0, 0, 0) and ch.locate(63) == (0, 0, 0, 0)
    assert ch.locate(64) == (0, 0, 1, 0) and ch.locate(64 * 8) == (0, 0, 0, 1)
    e0 = ch.access(0, False, 0.0)
    assert e0 == pytest.approx(p.tRCD + p.tCL + p.burst_ns)
    e1 = ch.access(1, False, 0.0)
    assert e1 == pytest.approx(e0 + p.burst_ns)                      # a hit: back to back
    # row 1 of bank 0 (a conflict): precharge after tRTP from the last read, tRP, then tRCD + tCL
    e2 = ch.access(64 * 8, False, e1)
    last_cas = e1 - p.burst_ns - p.tCL
    act = max(e1, last_cas + p.tRTP) + p.tRP
    assert e2 == pytest.approx(max(act, e1) + p.tRCD + p.tCL + p.burst_ns)
    assert (ch.hits, ch.misses) == (1, 2)


def test_refresh_blocks_the_channel():
    p = get_dram("ddr4")
    ch = _Channels(p, 1)
    t = p.tREFI + 1.0                                                # just after the first refresh is due
    end = ch.access(0, False, t)
    assert ch.refreshes == 1
    assert end == pytest.approx(p.tREFI + p.tRP + p.tRFC + p.tRCD + p.tCL + p.burst_ns)


def test_an_idle_channel_refreshes_every_interval():
    """Ten intervals of idle: ten refreshes counted; the access waits only for the last one if it
    is still running, then reopens its row."""
    p = get_dram("lpddr4x")
    ch = _Channels(p, 1)
    t = 10 * p.tREFI + 5.0                                           # inside the 10th refresh
    end = ch.access(0, False, t)
    assert ch.refreshes == 10
    assert end == pytest.approx(10 * p.tREFI + p.tRP + p.tRFC + p.tRCD + p.tCL + p.burst_ns)


def _demo_case():
    cfg = TernConfig(rows=4, lanes=16, bus_bytes=4, act_depth=64, wgt_depth=8, out_depth=4)
    rng = np.random.default_rng(7)
    prog = linear_program(cfg, rng.integers(-128, 128, (3, 40)), rng.integers(-1, 2, (14, 40)))
    return cfg, prog


def _schedule(cfg, prog, memory, clock_mhz, **kw):
    ideal = simulate(cfg, prog)
    cycles = {s: getattr(ideal, f"{s}_cycles") for s in ("instr", "act", "wgt", "out")}
    item = {s: ideal.events["bus_bytes"][s] // max(1, len(c)) for s, c in cycles.items()}
    return ideal, item, schedule_program(cycles, item, memory, clock_mhz=clock_mhz, **kw)


@pytest.mark.parametrize("memory", ["lpddr4x", "hbm2"])
def test_schedule_is_a_replayable_timing(memory):
    """The schedule is a Timing of explicit earliest cycles (``at``): it survives to_dict/from_dict
    (what the Verilator bench receives), every item is offered no earlier than the DRAM delivered
    it, and the run under it gives the ideal run's outputs, later."""
    cfg, prog = _demo_case()
    ideal, item, sched = _schedule(cfg, prog, memory, 400.0)
    t = sched.timing
    assert Timing.from_dict(t.to_dict()) == t
    assert t.out.is_ideal and not t.wgt.is_ideal
    run = simulate(cfg, prog, t)
    assert all(np.array_equal(a, b) for a, b in zip(run.outputs, ideal.outputs))
    assert run.cycles > ideal.cycles
    for s in ("instr", "act", "wgt"):
        x = getattr(run, f"{s}_cycles")
        assert np.all(x >= np.asarray(t.stream(s).at)), s
    first = int(math.ceil((get_dram(memory).tRCD + get_dram(memory).tCL) * 0.4))
    assert min(run.instr_cycles[0], run.act_cycles[0], run.wgt_cycles[0]) >= first
    chk = check_schedule(sched, run, item)
    assert chk["early_writes"] == 0
    assert all(0 <= v <= DEFAULT_FIFO_BYTES for v in chk["fifo_peak_bytes"].values())


def test_fifo_peak_counted_cycle_by_cycle():
    """check_schedule's FIFO occupancy equals a cycle-by-cycle count (items offered by cycle c minus
    items taken by cycle c); a smaller FIFO never lets the DRAM run further ahead."""
    cfg, prog = _demo_case()
    peaks = []
    for fifo in (64, 1024):
        _, item, sched = _schedule(cfg, prog, "ddr4", 100.0, fifo_bytes=fifo)
        run = simulate(cfg, prog, sched.timing)
        chk = check_schedule(sched, run, item)
        for s in ("instr", "act", "wgt"):
            at = list(sched.timing.stream(s).at)
            x = list(getattr(run, f"{s}_cycles"))
            peak = max(sum(a <= c for a in at) - sum(t <= c for t in x) for c in range(run.cycles + 1))
            assert chk["fifo_peak_bytes"][s] == peak * item[s], (fifo, s)
        peaks.append(chk["fifo_peak_bytes"]["wgt"])
    assert peaks[0] <= peaks[1]
    with pytest.raises(ValueError, match="fifo_bytes"):
        _schedule(cfg, prog, "ddr4", 100.0, fifo_bytes=0)


def test_stream_timing_at_field():
    st = StreamTiming(at=[0, 5, 5, 9])
    t = Timing(wgt=st)
    assert t.not_before("wgt", 6).tolist() == [0, 5, 5, 9, 4, 5]       # max(i, at_i); 0 past its end
    assert t.avail("wgt", 1, 0) == 5 and t.avail("wgt", 4, 9) == 10
    assert StreamTiming(at=[0, 1, 2]).is_ideal and not st.is_ideal
    assert StreamTiming.from_dict(st.to_dict()) == st
    with pytest.raises(ValueError, match="at must be"):
        StreamTiming(at=[1, -1])


def test_amaranth_replays_the_dram_timing():
    """Three-way exactness, Amaranth side: the RTL under the DRAM model's Timing gives hw.sim's
    outputs, cycles, counters and every transfer cycle."""
    from hw.backends.amaranth import run_rtl
    cfg, prog = _demo_case()
    for memory, clock in (("lpddr4x", 400.0), ("ddr3", 800.0)):
        _, _, sched = _schedule(cfg, prog, memory, clock)
        assert_same_as_sim(cfg, prog, sched.timing, run_rtl(cfg, prog, sched.timing), hint=memory)


@pytest.mark.slow
def test_verilator_replays_the_dram_timing():
    """Three-way exactness, Verilator side (cocotb bench, the Timing through to_dict/from_dict)."""
    from hw.backends.verilator import run_verilator
    cfg, prog = _demo_case()
    _, _, sched = _schedule(cfg, prog, "lpddr4x", 400.0)
    assert_same_as_sim(cfg, prog, sched.timing, run_verilator(cfg, prog, sched.timing), hint="verilator")


def test_markdown_table_names_every_memory_and_source():
    md = markdown_table()
    for name in DRAMS:
        assert f"| `{name}` |" in md
    for src in ("DRAMsim3", "Ramulator2", "JEDEC"):
        assert f"**[{src}]**" in md


def test_docs_render_the_dram_table():
    from pathlib import Path
    doc = Path(__file__).resolve().parent.parent / "docs" / "ESTIMATE.md"
    assert markdown_table() in doc.read_text(encoding="utf-8")
