"""Cycle-accurate simulator of :class:`hw.rtl.top.TernCore`: same results, same cycle of every transfer,
same performance counters as the RTL, for any program and any :class:`hw.timing.Timing`.

It does not step cycles. The RTL is a chain of in-order stages joined by queues, and every stage's
event times obey recurrences of the form ``t_i = max(t_{i-1} + d_i, E_i)`` ("the next event happens
``d_i`` cycles after the previous one at the earliest, and not before its own constraint ``E_i``").
Such a recurrence has the closed form ``t_i = S_i + max(t_{-1} - S_{-1}, max_{i' <= i}(E_{i'} - S_{i'}))``
with ``S`` the prefix sum of ``d`` (a cumulative maximum in numpy). The simulator walks the program
instruction by instruction and, per instruction, evaluates these recurrences for all of its beats,
steps and tokens at once. The equations and the RTL signals they model are in ``docs/SIMULATOR.md``
(and the RTL's own description in ``docs/ARCHITECTURE.md``); the pipeline latencies are read from
the RTL components (:func:`rtl_latencies`).

Results are computed per MATMUL with a matrix product of the activation words and the decoded
weight words (float32/float64 BLAS where that is exact, i.e. ``128 * K < 2**24`` / ``2**53``, int64
otherwise), wrapped to ``acc_width`` bits.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

import numpy as np

from hw.config import TernConfig
from hw.isa import FIELD_MAX, Op
from hw.program import wrap_signed
from hw.result import PERF_COUNTERS, RunResult, as_streams
from hw.timing import Timing

__all__ = ["simulate", "Latencies", "rtl_latencies", "SimError", "event_counts", "adder_tree_widths"]

NEG = -(1 << 62)   # "minus infinity" for cycle numbers


class SimError(ValueError):
    """The program cannot run to completion with the given streams (the message says why)."""


@dataclass(frozen=True)
class Latencies:
    """Pipeline parameters of the RTL that the timing equations use (see docs/SIMULATOR.md)."""
    queue_depth: int      # Q: execute / loader queue depth (hw.rtl.controller.QUEUE_DEPTH)
    decoder: int          # Ld: last beat of a word accepted in c -> word valid from c + Ld
    pe: int               # P: PE array latency (input with `last` -> result_valid)
    ram: int              # activation / weight buffer read latency (address -> data)
    fifo: int             # output FIFO: write in c -> `out.valid` from c + fifo

    @property
    def result(self) -> int:
        """Cycles from the issue of a token's last step to the first cycle its result can leave
        ``out``: RAM read + PE array + FIFO."""
        return self.ram + self.pe + self.fifo


_LAT_CACHE: dict = {}


def rtl_latencies(config: TernConfig) -> Latencies:
    """The latencies of ``config``'s RTL, read from the components' ``latency`` properties."""
    lat = _LAT_CACHE.get(config)
    if lat is None:
        from hw.rtl.buffers import ActBuffer, OutputFIFO, WeightBuffer
        from hw.rtl.controller import QUEUE_DEPTH
        from hw.rtl.decoder import WeightDecoder
        from hw.rtl.pe_array import PEArray
        comps = [PEArray(config), WeightDecoder(config), ActBuffer(config), WeightBuffer(config),
                 OutputFIFO.for_config(config)]
        for c in comps:
            c._MustUse__used = True   # only asked for their latency
        pe, dec, act, wgt, fifo = comps
        if act.latency != wgt.latency:
            raise SimError(f"the model assumes equal activation/weight RAM latencies "
                           f"({act.latency} != {wgt.latency})")
        lat = Latencies(queue_depth=QUEUE_DEPTH, decoder=dec.latency, pe=pe.latency, ram=act.latency,
                        fifo=fifo.latency)
        _LAT_CACHE[config] = lat
    return lat


def adder_tree_widths(lanes: int) -> dict:
    """``{width: adders}`` of one ternary dot unit's adder tree (``hw/rtl/dot.py``): a binary tree of
    ``ceil(log2 lanes)`` levels, nodes paired in order, an odd node passed through, each adder as
    wide as its range (``dot_width`` of the lanes it covers)."""
    from hw.rtl.dot import dot_width
    hist: dict = {}
    nodes = [1] * lanes
    while len(nodes) > 1:
        nxt = []
        for i in range(0, len(nodes), 2):
            pair = nodes[i:i + 2]
            if len(pair) == 2:
                w = dot_width(pair[0] + pair[1])
                hist[w] = hist.get(w, 0) + 1
            nxt.append(sum(pair))
        nodes = nxt
    return dict(sorted(hist.items()))


def _prefix(d: np.ndarray) -> np.ndarray:
    """S with S[0] = 0, S[i+1] = d[0] + ... + d[i]."""
    s = np.zeros(len(d) + 1, dtype=np.int64)
    np.cumsum(d, out=s[1:])
    return s


def _chain(prev: int, s: np.ndarray, lo: int, e: np.ndarray) -> np.ndarray:
    """Events ``i = lo .. lo+len(e)-1`` of ``t_i = max(t_{i-1} + d_i, e_i)`` with ``t_{lo-1} = prev``,
    given the prefix sums ``s`` of ``d`` (``s[i+1] - s[i] = d_i``)."""
    n = len(e)
    ss = s[lo + 1:lo + 1 + n]
    z = np.maximum.accumulate(e - ss)
    np.maximum(z, prev - s[lo], out=z)
    return ss + z


class _Stream:
    """Per-transfer parameters of one stream under a timing: ``d_i = 1 + gap_i`` (as prefix sums) and
    the bus bound ``nb_i = latency + floor(i / rate)``."""

    def __init__(self, timing: Timing, name: str, n: int):
        self.n = n
        self.s = _prefix(1 + timing.gaps(name, n))
        self.nb = timing.not_before(name, n)
        self.t = np.zeros(n, dtype=np.int64)   # transfer cycles, filled in by the simulation
        self.gate_free = timing.stream(name).is_ideal


def simulate(config: TernConfig, program=None, timing: Timing | None = None, *, words=None,
             act_beats=None, wgt_beats=None, latencies: Latencies | None = None) -> RunResult:
    """Simulate a program on the tern core. Arguments as :func:`hw.backends.amaranth.run_rtl`; returns the
    same :class:`RunResult` (``backend = "sim"``) plus ``events`` (energy event counts).

    The streams must hold exactly the beats that the program's valid instructions consume
    (:class:`SimError` otherwise: the RTL would never finish)."""
    wall0 = time.perf_counter()
    timing = Timing() if timing is None else timing
    if not isinstance(timing, Timing):
        raise TypeError(f"simulate: timing must be a hw.timing.Timing, not {timing!r}")
    st = as_streams(config, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
    lat = rtl_latencies(config) if latencies is None else latencies
    cfg = config
    R, L, A, AD, WD, OD = (cfg.rows, cfg.lanes, cfg.acc_width, cfg.act_depth, cfg.wgt_depth,
                           cfg.out_depth)
    bpw = cfg.beats_per_word
    Q = lat.queue_depth
    Ld = lat.decoder
    RL = lat.result

    # ---- decode and check the program (vectorized over the instruction words)
    w64 = np.array(st.words, dtype=np.uint64)
    ops = (w64 & np.uint64(0xF)).astype(np.int64)
    fa = ((w64 >> np.uint64(4)) & np.uint64(FIELD_MAX)).astype(np.int64)
    fb = ((w64 >> np.uint64(24)) & np.uint64(FIELD_MAX)).astype(np.int64)
    fc = ((w64 >> np.uint64(44)) & np.uint64(FIELD_MAX)).astype(np.int64)
    is_load = (ops == Op.LOAD_ACT.value) & (fb >= 1) & (fa + fb <= AD)
    is_mm = ((ops == Op.MATMUL.value) & (fb >= 1) & (fb <= WD) & (fc >= 1) & (fc <= AD)
             & (fa + fb * fc <= AD))
    is_bad = ~((ops == Op.NOP.value) | (ops == Op.SYNC.value) | is_load | is_mm)
    n_act = int(fb[is_load].sum())
    n_words = int(fb[is_mm].sum())
    n_wgt = n_words * bpw
    n_out = int(fc[is_mm].sum())
    if n_act != len(st.act_beats):
        raise SimError(f"the program's LOAD_ACTs take {n_act} activation beats, but the act stream "
                       f"holds {len(st.act_beats)}")
    if n_wgt != len(st.wgt_beats):
        raise SimError(f"the program's MATMULs take {n_words} weight words = {n_wgt} beats "
                       f"({bpw} per word), but the weight stream holds {len(st.wgt_beats)}")

    s_i = _Stream(timing, "instr", len(st.words))
    s_a = _Stream(timing, "act", n_act)
    s_w = _Stream(timing, "wgt", n_wgt)
    s_o = _Stream(timing, "out", n_out)
    ins_s, ins_nb = s_i.s, s_i.nb
    ins_t = s_i.t

    # ---- machine state
    actbuf = np.zeros((AD, L), dtype=np.int8)
    outputs = np.zeros((n_out, R), dtype=np.int64)
    x_word = np.zeros(n_words, dtype=np.int64)       # cycle each weight word is written
    tok_end = np.zeros(n_out, dtype=np.int64)        # cycle of each token's last issue
    q_pop: list = []                                 # execute queue pop cycle of each exec instr
    f_fin: list = []                                 # finish cycle of each exec instr
    lq_pop: list = []                                # loader queue pop cycle of each MATMUL
    gate_lo: list = []                               # loader holds MATMUL m in [gate_lo, gate_hi]
    gate_hi: list = []
    last_issue: list = []
    cnt = dict.fromkeys(PERF_COUNTERS, 0)
    current_cycles = 0                               # cycles with an instruction current
    a_prev, r_prev = -1, NEG
    o_last = -1
    ab = wb = g = n = 0                              # next act beat, weight beat, word, output
    cx_prev = NEG                                    # word-transfer bound of the previous word
    pending = []                                     # MATMULs whose results are still to compute
    ev = {"tokens": 0, "neg_terms": 0, "nonzero_terms": 0}

    def flush():
        _compute_results(cfg, pending, actbuf, st.wgt_beats, outputs, ev)
        pending.clear()

    gaps_i = 1 + timing.gaps("instr", len(st.words))
    for i in range(len(st.words)):
        a = max(a_prev + int(gaps_i[i]), int(ins_nb[i]), r_prev)
        ins_t[i] = a
        if is_bad[i]:
            r = a + 1
        elif ops[i] == Op.NOP.value:
            r = a + 1
        elif ops[i] == Op.SYNC.value:
            r = max(a + 1, (f_fin[-1] + 1) if f_fin else NEG, o_last + 1)
        else:
            j = len(q_pop)
            p = a + 1
            if j >= Q:
                p = max(p, q_pop[j - Q] + 1)
            mm = bool(is_mm[i])
            m = len(lq_pop)
            if mm and m >= Q:
                p = max(p, lq_pop[m - Q] + 1)
            r = p
            q = max(p + 1, f_fin[-1]) if f_fin else p + 1
            q_pop.append(q)
            addr = int(fa[i])
            if not mm:
                # ---- LOAD_ACT: act.ready from q+1 until the last beat
                count = int(fb[i])
                e = s_a.nb[ab:ab + count].copy()
                e[0] = max(e[0], q + 1)
                u = _chain(s_a.t[ab - 1] if ab else -1, s_a.s, ab, e)
                s_a.t[ab:ab + count] = u
                f = int(u[-1])
                if pending:
                    flush()
                actbuf[addr:addr + count] = st.act_beats[ab:ab + count]
                ab += count
                cnt["stall_act"] += f - q - count
            else:
                kw, T = int(fb[i]), int(fc[i])
                # ---- weight loader: holds MATMUL m from lo = lq_pop + 1 to its last word write
                lqp = max(p + 1, gate_hi[-1]) if m else p + 1
                lq_pop.append(lqp)
                lo = lqp + 1
                cx0 = max(lo, last_issue[m - 2] + 1) if m >= 2 else lo   # word 0: bank released
                nb = kw * bpw
                b0, b1 = wb, wb + nb
                e = s_w.nb[b0:b1].copy()
                # the last beat of word k waits for word k-1's transfer (decoder holds one word)
                hx = np.full(kw, lo, dtype=np.int64)
                hx[0] = cx_prev
                if kw > 1:
                    hx[1] = cx0
                lastb = e[bpw - 1::bpw]
                np.maximum(lastb, hx, out=lastb)
                # beats before `lo` can only be taken while an earlier MATMUL holds the loader
                w_prev = int(s_w.t[b0 - 1]) if b0 else -1
                b = b0
                while b < b1:
                    t0 = max(w_prev + int(s_w.s[b + 1] - s_w.s[b]), int(e[b - b0]))
                    if t0 >= lo:
                        break
                    k = bisect.bisect_left(gate_hi, t0)
                    w_b = max(t0, gate_lo[k]) if k < len(gate_hi) else lo
                    s_w.t[b] = w_b
                    w_prev = w_b
                    b += 1
                if b < b1:
                    s_w.t[b:b1] = _chain(w_prev, s_w.s, b, e[b - b0:])
                wt = s_w.t[b0:b1]
                last_beats = wt[bpw - 1::bpw]
                if Ld > bpw and kw > 1 and np.any(last_beats[1:] < last_beats[:-1] + Ld):
                    raise SimError("decoder latency > beats per word is not modelled")
                cxw = np.full(kw, lo, dtype=np.int64)
                cxw[0] = cx0
                xw = np.maximum(last_beats + Ld, cxw)
                x_word[g:g + kw] = xw
                cx_prev = int(cxw[-1])
                gate_lo.append(lo)
                gate_hi.append(int(xw[-1]))
                wb = b1
                # ---- execute engine: token 0 streams behind the loader, word by word
                wr = xw + 1                                     # word k readable from wr[k]
                n0 = n
                cr0 = int(s_o.t[n0 - OD]) + 1 if n0 >= OD else NEG
                ak = wr.copy()
                ak[0] = max(ak[0], q + 1)
                ak[-1] = max(ak[-1], cr0)
                kk = np.arange(kw, dtype=np.int64)
                iss = kk + np.maximum.accumulate(ak - kk)
                ready = np.empty(kw, dtype=np.int64)
                ready[0] = q + 1
                ready[1:] = iss[:-1] + 1
                sw = int(np.maximum(wr - ready, 0).sum())
                end = int(iss[-1])
                cnt["stall_weight"] += sw
                cnt["stall_out"] += end - q - kw - sw
                tok_end[n0] = end
                _outputs_chain(s_o, n0, n0 + 1, tok_end, RL)
                # ---- tokens 1..T-1: kw issues each, the last one waits for an output credit
                t = 1
                while t < T:
                    te = min(T, t + OD)
                    nn = np.arange(n0 + t, n0 + te, dtype=np.int64)
                    crd = np.where(nn >= OD, s_o.t[np.maximum(nn - OD, 0)] + 1, NEG)
                    tt = np.arange(t, te, dtype=np.int64) * kw
                    z = np.maximum.accumulate(crd - tt)
                    np.maximum(z, end - (t - 1) * kw, out=z)
                    ends = tt + z
                    cnt["stall_out"] += int(ends[-1] - end) - kw * (te - t)
                    tok_end[n0 + t:n0 + te] = ends
                    end = int(ends[-1])
                    _outputs_chain(s_o, n0 + t, n0 + te, tok_end, RL)
                    t = te
                f = end
                last_issue.append(f)
                n += T
                g += kw
                o_last = int(s_o.t[n - 1])
                cnt["busy"] += kw * T
                pending.append((addr, kw, T, g - kw, n0))
            f_fin.append(f)
            current_cycles += f - q
        a_prev, r_prev = a, r
    if pending:
        flush()

    if len(st.words):
        cycles = max(r_prev + 1, (f_fin[-1] + 1) if f_fin else 0, o_last + 1)
    else:
        cycles = 0
    cnt["cycles"] = cycles
    cnt["act_beats"] = n_act
    cnt["wgt_beats"] = n_wgt
    cnt["idle"] = cycles - current_cycles
    error = int(is_bad.any())
    if n_wgt:
        error |= 2 * int(_stream_has_invalid(cfg, st.wgt_beats))
    res = RunResult(backend="sim", config=cfg, outputs=outputs, cycles=cycles, counters=cnt,
                    error=error, instr_cycles=ins_t, act_cycles=s_a.t, wgt_cycles=s_w.t,
                    out_cycles=s_o.t)
    res.events = event_counts(cfg, res, n_instr=len(st.words), n_words=n_words, extra=ev)
    res.wall_s = time.perf_counter() - wall0
    return res


def _outputs_chain(s_o: _Stream, n0: int, n1: int, tok_end: np.ndarray, rl: int):
    """``out`` transfers of results ``n0 .. n1-1``: ``o_n = max(o_{n-1} + d_n, nb_n, L_n + rl)``."""
    e = np.maximum(s_o.nb[n0:n1], tok_end[n0:n1] + rl)
    s_o.t[n0:n1] = _chain(int(s_o.t[n0 - 1]) if n0 else -1, s_o.s, n0, e)


def _stream_has_invalid(cfg, beats) -> bool:
    """Whether any byte of the weight stream is invalid (2bit: a code 3; base3: a byte >= 243)."""
    b = np.asarray(beats, dtype=np.uint8)
    if cfg.weight_format == "2bit":
        return bool((b & (b >> 1) & 0x55).any())
    return bool((b >= 243).any())


_LUTS: dict = {}


def _trit_lut(fmt: str, dtype) -> np.ndarray:
    """(256, trits_per_byte) table: the weights a stream byte carries (invalid codes/bytes read 0),
    in the byte's code order (docs/RTL_CONTRACT.md)."""
    key = (fmt, np.dtype(dtype).str)
    lut = _LUTS.get(key)
    if lut is None:
        b = np.arange(256)
        if fmt == "2bit":
            codes = np.stack([(b >> (2 * q)) & 3 for q in range(4)], axis=1)
            lut = np.where(codes == 3, 0, codes - 1)
        else:
            from hw.formats import BASE3_TABLE
            lut = np.zeros((256, 5), dtype=np.int64)
            lut[:243] = BASE3_TABLE.astype(np.int64) - 1
        lut = lut.astype(dtype)
        _LUTS[key] = lut
    return lut


def _compute_results(cfg, jobs, actbuf, wgt_beats, outputs, ev):
    """Result vectors of the MATMULs in ``jobs`` (addr, kw, T, first word, first output); consecutive
    MATMULs over the same activation words share one matrix product. The weight words are decoded
    from the stream here with a byte -> weights table (invalid codes read as 0, as in the RTL
    decoder), directly into the float type of the (exact) matrix product."""
    R, L, bpw, B = cfg.rows, cfg.lanes, cfg.beats_per_word, cfg.bus_bytes
    i = 0
    while i < len(jobs):
        addr, kw, T, g0, n0 = jobs[i]
        j = i + 1
        while j < len(jobs) and jobs[j][:3] == (addr, kw, T):
            j += 1
        group = jobs[i:j]
        G = len(group)
        K = kw * L
        # |partial sums| <= 128 * K: exact in float32 below 2**24, in float64 below 2**53
        dt = np.float32 if 128 * K < (1 << 24) else np.float64
        x = actbuf[addr:addr + kw * T].reshape(T, K).astype(dt)
        # the group's words are consecutive in the weight stream
        raw = wgt_beats[g0 * bpw:(g0 + kw * G) * bpw].reshape(G * kw, bpw * B)
        w = _trit_lut(cfg.weight_format, dt)[raw].reshape(G * kw, -1)[:, :R * L]
        w = w.reshape(G, kw, R, L)
        wt = w.transpose(1, 3, 0, 2).reshape(K, G * R)                    # (K, G*R)
        d = (x @ wt).astype(np.int64)
        d = wrap_signed(d, cfg.acc_width).reshape(T, G, R)
        for gi, (_, _, _, _, nn) in enumerate(group):
            outputs[nn:nn + T] = d[:, gi]
        nz = int(np.count_nonzero(w))
        neg = int(np.count_nonzero(w < 0))
        ev["tokens"] += T * G
        ev["nonzero_terms"] += T * nz
        ev["neg_terms"] += T * neg
        i = j


def event_counts(cfg: TernConfig, res: RunResult, *, n_instr: int, n_words: int, extra: dict) -> dict:
    """Event counts of a run for the energy estimator (definitions in docs/SIMULATOR.md)."""
    R, L, A, B = cfg.rows, cfg.lanes, cfg.acc_width, cfg.bus_bytes
    c = res.counters
    busy = c["busy"]
    tokens = extra["tokens"]
    n_out = len(res.outputs)
    tree = adder_tree_widths(L)
    adds = {int(w): int(k) * busy * R for w, k in tree.items()}
    stall = c["stall_weight"] + c["stall_out"] + c["stall_act"]
    return {
        # PE array
        "pe_issues": busy,
        "dot_products": busy * R,
        "lane_terms": busy * R * L,                 # conditional-negation muxes evaluated
        "nonzero_terms": extra["nonzero_terms"],    # terms with a nonzero weight
        "negated_terms": extra["neg_terms"],        # terms with weight -1 (negations)
        "tree_adds_by_width": adds,                 # {adder width in bits: additions}
        "tree_adds": sum(adds.values()),
        "acc_adds": (busy - tokens) * R,            # A-bit accumulator additions
        "acc_loads": tokens * R,                    # accumulator loads (first step of a token)
        "acc_updates": busy * R,
        "acc_width": A,
        # on-chip SRAM traffic, bits
        "sram_bits": {
            "act_buffer": {"read": busy * 8 * L, "write": c["act_beats"] * 8 * L},
            "weight_buffer": {"read": busy * 2 * R * L, "write": n_words * 2 * R * L},
            "output_fifo": {"read": n_out * A * R, "write": n_out * A * R},
        },
        "weight_decoder_bytes": c["wgt_beats"] * B,
        # off-core streams
        "bus_bytes": {"instr": 8 * n_instr, "act": c["act_beats"] * L, "wgt": c["wgt_beats"] * B,
                      "out": n_out * R * (-(-A // 8))},
        "weight_words": n_words,
        "results": n_out,
        # cycles
        "cycles": c["cycles"],
        "active_cycles": busy + c["act_beats"],
        "stall_cycles": stall,
        "idle_cycles": c["idle"],
    }
