"""A DRAM channel model for the core's streams: bursts, banks and row buffers, refresh, one channel
shared by instructions, activations, weights and results, turned into a :class:`hw.timing.Timing`.

What it models
--------------
The core sits behind a memory controller with one **prefetch FIFO per input stream** (``fifo_bytes``
each) and a **write buffer** for results. The program's buffers lie in DRAM one after the other, each
in the order its stream sends it (the compiler lays out the instruction words, the activation words
and the weight stream of :mod:`hw.tiling` that way; a weight re-streamed for the next group of tokens
reads the same bytes again), each region starting on a fresh row of bank 0. A byte address maps, low
bits to high, to ``[offset in burst | channel | bank group | column | bank | row]``: consecutive bursts
rotate over the channels and bank groups (so a sequential stream never waits on ``tCCD_L``), a row is
read out completely before the next bank is opened, and the next row of a stream is in another bank,
whose precharge and activation the controller issues ahead while the current row streams (bank
lookahead). The controller serves bursts **in the program's demand order** (all four streams merged
by the cycle each item is wanted, see below) without reordering:

* a read burst may be issued once its FIFO has room for it (the item ``fifo_bytes`` earlier was
  consumed); its data is in the FIFO when the burst has crossed the data bus;
* a row miss precharges the bank (``tRTP`` / ``tWR`` after its last access, then ``tRP``) and
  activates the row (``tRRD`` after the previous activation, then ``tRCD`` to the column command);
  a hit goes straight to the column command; data follow ``tCL`` (reads) or ``tCWL`` (writes) later
  and hold the bus ``burst_length / data rate``; a read after a write waits ``tWTR``, a write after a
  read ``tRTW``;
* every ``tREFI`` the channel is refreshed: all banks precharged (``tRP``), then ``tRFC`` with no
  access, then every row must be reopened;
* a result burst enters the write buffer when its last result left the core (the buffer accepts every
  result at once); the controller drains the buffer ``write_batch`` bursts at a time, between reads,
  once that many are due (and at the end), so the read/write turnaround is paid once per batch.

The schedule is **precomputed**, not reactive: the availability of every item does not depend on
the core's cycle-by-cycle behaviour, so the same :class:`hw.timing.Timing` (``at`` = the cycle each
item is in its FIFO) replays unchanged on :mod:`hw.sim` and both RTL backends, bit- and cycle-exact.
The controller's only knowledge of the core is a prediction of when each item is consumed, taken from
a first run with an ideal bus: item ``i`` is wanted at its ideal cycle plus the delay the memory has
caused so far (``lag``, the largest ``available - ideal`` seen), which is exact for a stream-bound
core. The prediction sets when a FIFO has room and when a result burst is written;
:func:`check_schedule` measures, after the real run, how far the prediction was off: the deepest
FIFO occupancy the real run needed and how many result bursts were scheduled before their data
existed. Both are reported by the estimator.

Clocks: DRAM times are in nanoseconds (each technology's own clock is folded into its parameters);
an item in the FIFO at ``t`` ns is offered from core cycle ``ceil(t * clock_mhz / 1000)`` on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from hw.timing import StreamTiming, Timing

__all__ = ["DramParams", "DRAMS", "DRAM_SOURCES", "get_dram", "Schedule", "schedule_program",
           "check_schedule", "sequential_efficiency", "DEFAULT_FIFO_BYTES", "DEFAULT_WRITE_BATCH",
           "markdown_table"]

#: Bytes of each input stream's prefetch FIFO in front of the core (an assumption: a 512 x 128-bit
#: SRAM per stream, about the size of the core's own activation buffer).
DEFAULT_FIFO_BYTES = 8192
#: Result bursts the write buffer collects before the controller drains them, one after the other
#: (amortizes the read/write turnaround; an assumption, as in common read-priority controllers).
DEFAULT_WRITE_BATCH = 16

DRAM_SOURCES = {
    "DRAMsim3": "S. Li et al., \"DRAMsim3: a Cycle-accurate, Thermal-Capable DRAM Simulator\", IEEE CAL "
                "2020; github.com/umd-memsys/DRAMsim3 configs/DDR3_8Gb_x8_1600.ini, "
                "DDR4_8Gb_x8_3200.ini, HBM2_8Gb_x128.ini (timings in clock cycles, converted here at "
                "the file's tCK)",
    "Ramulator2": "H. Luo et al., \"Ramulator 2.0: A Modern, Modular, and Extensible DRAM Simulator\", IEEE "
                  "CAL 2023; github.com/CMU-SAFARI/ramulator2 src/dram/impl/LPDDR5.cpp (LPDDR5_6400, "
                  "tCK 1.25 ns; tRFCab and tREFI tables in ns) and HBM3.cpp (tRFC table in ns)",
    "JEDEC": "the data rate and interface width of each standard (JESD79-3, JESD79-4, JESD209-4, "
             "JESD209-5, JESD235A, JESD238), as in hw.estimate.memory",
}

_T_FIELDS = ("tRCD", "tRP", "tCL", "tCWL", "tRRD", "tCCD_L", "tWTR", "tRTW", "tRTP", "tWR", "tRFC", "tREFI")


@dataclass(frozen=True)
class DramParams:
    """One technology's channel: organization and timings (ns). ``channels``: channels (or pseudo
    channels) in one unit of :mod:`hw.estimate.memory` (1 for a DDR/LPDDR channel, all of a stack's
    for HBM). ``kinds`` gives, per field group, ``(kind, source)``: primary / secondary / derived /
    assumption as in :mod:`hw.estimate.memory`."""
    name: str
    rate_mt_s: float
    width_bits: int
    burst_length: int
    channels: int
    banks: int
    bank_groups: int
    page_bytes: int
    tRCD: float
    tRP: float
    tCL: float
    tCWL: float
    tRRD: float
    tCCD_L: float
    tWTR: float
    tRTW: float
    tRTP: float
    tWR: float
    tRFC: float
    tREFI: float
    kinds: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def burst_bytes(self) -> int:
        return self.width_bits // 8 * self.burst_length

    @property
    def burst_ns(self) -> float:
        """Data-bus time of one burst."""
        return self.burst_length * 1e3 / self.rate_mt_s

    @property
    def peak_gb_s(self) -> float:
        """Peak bandwidth of one unit (all its channels)."""
        return self.rate_mt_s * 1e6 * self.width_bits / 8 * self.channels / 1e9

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "rate_mt_s", "width_bits", "burst_length", "channels",
                                           "banks", "bank_groups", "page_bytes") + _T_FIELDS}
        d.update(burst_bytes=self.burst_bytes, burst_ns=self.burst_ns,
                 kinds={k: list(v) for k, v in self.kinds.items()})
        return d


def _ck(tck, **cycles):
    """Timings given in clock cycles of period ``tck`` ns, in ns."""
    return {k: v * tck for k, v in cycles.items()}


_ORG = "organization"
_TIM = "timings"
_REF = "refresh"

DRAMS: dict[str, DramParams] = {
    # DRAMsim3 DDR3_8Gb_x8_1600: tCK 1.25; CL 11, CWL 8, tRCD 11, tRP 11, tRRD 6, tCCD 4, tWTR 6,
    # tRTP 6, tWR 12, tRFC 280, REFI 6240 (cycles); 8 banks, 2048 columns x 64-bit rank
    "ddr3": DramParams(
        "ddr3", 1600, 64, 8, 1, 8, 1, 2048 * 8,
        **_ck(1.25, tRCD=11, tRP=11, tCL=11, tCWL=8, tRRD=6, tCCD_L=4, tWTR=6, tRTP=6, tWR=12,
              tRFC=280, tREFI=6240), tRTW=2 * 1.25,
        kinds={_ORG: ("secondary", "DRAMsim3 DDR3_8Gb_x8_1600 (8 banks, 2048 columns, BL8; rate and "
                                   "width: JEDEC)"),
               _TIM: ("secondary", "DRAMsim3 DDR3_8Gb_x8_1600; tRTW (2 tCK bus turnaround) an assumption"),
               _REF: ("secondary", "DRAMsim3 DDR3_8Gb_x8_1600: tRFC 350 ns, tREFI 7.8 us")}),
    # DRAMsim3 DDR4_8Gb_x8_3200: tCK 0.63 (0.625 used); CL 22, CWL 16, tRCD 22, tRP 22, tRRD_S 4,
    # tCCD_L 8, tWTR_S 4, tRTP 12, tWR 24, tRFC 560, tREFI 12480; 4 x 4 banks, 1024 columns
    "ddr4": DramParams(
        "ddr4", 3200, 64, 8, 1, 16, 4, 1024 * 8,
        **_ck(0.625, tRCD=22, tRP=22, tCL=22, tCWL=16, tRRD=4, tCCD_L=8, tWTR=4, tRTP=12, tWR=24,
              tRFC=560, tREFI=12480), tRTW=2 * 0.625,
        kinds={_ORG: ("secondary", "DRAMsim3 DDR4_8Gb_x8_3200 (4 bank groups x 4 banks, 1024 columns, "
                                   "BL8)"),
               _TIM: ("secondary", "DRAMsim3 DDR4_8Gb_x8_3200 (tCK 0.63 there, 0.625 = 1/1600 MHz "
                                   "here); tRTW an assumption"),
               _REF: ("secondary", "DRAMsim3 DDR4_8Gb_x8_3200: tRFC 350 ns, tREFI 7.8 us")}),
    # LPDDR4X-4266 x16 channel: no simulator file was read for it
    "lpddr4x": DramParams(
        "lpddr4x", 4266, 16, 16, 1, 8, 1, 2048,
        tRCD=18.0, tRP=21.0, tCL=36 / 2.133, tCWL=18 / 2.133, tRRD=10.0, tCCD_L=8 / 2.133, tWTR=10.0,
        tRTW=2 / 2.133, tRTP=7.5, tWR=18.0, tRFC=280.0, tREFI=3904.0,
        kinds={_ORG: ("assumption", "JESD209-4 organization as commonly quoted (8 banks, 2 KB page per "
                                    "x16 channel, BL16); not checked against the standard"),
               _TIM: ("assumption", "JESD209-4 values as commonly quoted (tRCD 18 ns, tRPab 21 ns, RL 36 "
                                    "/ WL 18 tCK at 2133 MHz); not checked"),
               _REF: ("assumption", "JESD209-4 values as commonly quoted (tRFCab 280 ns for 8-16 Gb per "
                                    "channel, tREFI 3.904 us); not checked")}),
    # Ramulator 2 LPDDR5_6400 (tCK 1.25 ns): nCL 20, nCWL 11, nRCD 15, nRPab 17, nRRD 4, nCCD 4,
    # nWTRS 5, nRTP 4, nWR 28; tRFCab 210 ns (8 Gb), tREFI 3906 ns; 4 x 4 banks, 1024 columns x 16
    "lpddr5": DramParams(
        "lpddr5", 6400, 16, 16, 1, 16, 4, 2048,
        **_ck(1.25, tRCD=15, tRP=17, tCL=20, tCWL=11, tRRD=4, tCCD_L=4, tWTR=5, tRTP=4, tWR=28),
        tRTW=2 * 1.25, tRFC=210.0, tREFI=3906.0,
        kinds={_ORG: ("secondary", "Ramulator 2 LPDDR5_8Gb_x16 (4 bank groups x 4 banks, 1024 columns)"),
               _TIM: ("secondary", "Ramulator 2 LPDDR5_6400 (cycles of 1.25 ns); tRTW an assumption"),
               _REF: ("secondary", "Ramulator 2 LPDDR5: tRFCab 210 ns (8 Gb), tREFI 3906 ns")}),
    # DRAMsim3 HBM2_8Gb_x128: tCK 1; CL 14, CWL 4, tRCD 14, tRP 14, tRRD_S 4, tCCD_L 2, tWTR_S 6,
    # tRTP_L 6, tWR 16, tRFC 260, tREFI 3900; 8 channels x 128 bits, 4 x 4 banks, 64 columns, BL4
    "hbm2": DramParams(
        "hbm2", 2000, 128, 4, 8, 16, 4, 64 * 16,
        **_ck(1.0, tRCD=14, tRP=14, tCL=14, tCWL=4, tRRD=4, tCCD_L=2, tWTR=6, tRTP=6, tWR=16,
              tRFC=260, tREFI=3900), tRTW=2.0,
        kinds={_ORG: ("secondary", "DRAMsim3 HBM2_8Gb_x128 (8 channels x 128 bits, 4 x 4 banks, 64 "
                                   "columns, BL4)"),
               _TIM: ("secondary", "DRAMsim3 HBM2_8Gb_x128 (tCK 1 ns); tRTW an assumption"),
               _REF: ("secondary", "DRAMsim3 HBM2_8Gb_x128: tRFC 260 ns, tREFI 3.9 us")}),
    # HBM3 6.4 Gb/s: 32 pseudo channels x 32 bits, BL8; array timings taken equal to HBM2's (ns)
    "hbm3": DramParams(
        "hbm3", 6400, 32, 8, 32, 16, 4, 1024,
        tRCD=14.0, tRP=14.0, tCL=14.0, tCWL=4.0, tRRD=4.0, tCCD_L=2.5, tWTR=6.0, tRTW=2.0, tRTP=6.0,
        tWR=16.0, tRFC=350.0, tREFI=3900.0,
        kinds={_ORG: ("assumption", "32 pseudo channels of 32 bits, BL8, 16 banks, 1 KB page: the JESD238 "
                                    "organization as commonly quoted; not checked"),
               _TIM: ("assumption", "array timings in ns taken equal to HBM2's [DRAMsim3] (Ramulator 2's "
                                    "HBM3 preset is marked unfinished there)"),
               _REF: ("secondary", "Ramulator 2 HBM3: tRFC 350 ns (8 Gb); tREFI 3.9 us (HBM2's)")}),
}


def get_dram(name: str) -> DramParams:
    """The :class:`DramParams` of memory ``name`` (a key of :data:`DRAMS`); :class:`ValueError` otherwise."""
    if not isinstance(name, str) or name.lower() not in DRAMS:
        raise ValueError(f"unknown memory {name!r} (choose from {', '.join(DRAMS)})")
    return DRAMS[name.lower()]


# ---------------------------------------------------------------------------------------------------
# the channel

class _Channels:
    """Bank and bus state of ``n`` channels of ``p``; :meth:`access` schedules one burst."""

    def __init__(self, p: DramParams, n: int):
        self.p, self.n = p, n
        self.bpr = p.page_bytes // p.burst_bytes           # bursts per row
        self.nb, self.ng = p.banks, p.bank_groups
        nb = p.banks
        self.open_row = [[-1] * nb for _ in range(n)]
        self.bank_free = [[0.0] * nb for _ in range(n)]    # earliest ACT (precharged)
        self.last_rd = [[-1e18] * nb for _ in range(n)]    # last read column command per bank
        self.last_wr = [[-1e18] * nb for _ in range(n)]    # last write data end per bank
        self.cas_ok = [[0.0] * nb for _ in range(n)]       # earliest column command after ACT
        self.last_cas_bg = [[-1e18] * p.bank_groups for _ in range(n)]
        self.last_act = [-1e18] * n
        self.bus_free = [0.0] * n
        self.last_write = [False] * n
        self.next_ref = [p.tREFI] * n                      # = (refreshes so far + 1) x tREFI, per channel
        self.n_ref = [0] * n
        self.hits = self.misses = self.refreshes = 0
        self.B = p.burst_ns
        self.t = (p.tRP, p.tRFC, p.tREFI, p.tRTP, p.tWR, p.tRRD, p.tRCD, p.tCCD_L, p.tCL, p.tCWL, p.tRTW, p.tWTR)

    @property
    def busy_ns(self) -> float:
        """Data-bus time of every burst so far (all channels)."""
        return (self.hits + self.misses) * self.B

    def locate(self, burst: int):
        """(channel, bank group, bank, row) of global burst index ``burst``."""
        ch = burst % self.n
        local = burst // self.n
        g = local % self.ng
        rest = local // self.ng
        rest //= self.bpr                                   # column
        bank_in_group = rest % (self.nb // self.ng)
        row = rest // (self.nb // self.ng)
        return ch, g, bank_in_group * self.ng + g, row

    def locate_all(self, bursts: np.ndarray):
        """:meth:`locate` of every burst of an int64 array: four int lists."""
        n, ng, per = self.n, self.ng, self.nb // self.ng
        local = bursts // n
        g = local % ng
        rest = local // ng // self.bpr
        return [x.tolist() for x in (bursts % n, g, (rest % per) * ng + g, rest // per)]

    def access(self, burst: int, write: bool, t: float) -> float:
        """Schedule global burst ``burst`` (read or write) not before ``t`` ns; returns the end of its
        data on the bus (ns)."""
        return self.access_at(*self.locate(burst), write, t)

    def access_at(self, ch: int, g: int, b: int, row: int, write: bool, t: float) -> float:
        """:meth:`access` of the burst at channel ``ch``, bank group ``g``, bank ``b``, ``row``."""
        tRP, tRFC, tREFI, tRTP, tWR, tRRD, tRCD, tCCD_L, tCL, tCWL, tRTW, tWTR = self.t
        bus = self.bus_free[ch]
        # refresh whenever one is due before this burst could use the bus
        if (t if t > bus else bus) >= self.next_ref[ch]:
            while (t if t > bus else bus) >= self.next_ref[ch]:
                idle = int(((t if t > bus else bus) - self.next_ref[ch]) // tREFI)
                if idle > 1 and self.next_ref[ch] >= bus:   # refreshes of an idle channel: only the
                    self.n_ref[ch] += idle - 1              # last one leaves a trace
                    self.next_ref[ch] = (self.n_ref[ch] + 1) * tREFI
                    self.refreshes += idle - 1
                start = max(self.next_ref[ch], bus)
                end = start + tRP + tRFC
                self.open_row[ch] = [-1] * self.nb
                self.bank_free[ch] = [end] * self.nb
                self.bus_free[ch] = bus = max(bus, end)
                self.n_ref[ch] += 1
                self.next_ref[ch] = (self.n_ref[ch] + 1) * tREFI
                self.refreshes += 1
        orow = self.open_row[ch]
        cas_ok = self.cas_ok[ch]
        if orow[b] != row:
            free = self.bank_free[ch][b]
            if orow[b] >= 0:                                # precharge the open row first
                pre = max(t, self.last_rd[ch][b] + tRTP, self.last_wr[ch][b] + tWR)
                free = max(free, pre + tRP)
            act = max(t, free, self.last_act[ch] + tRRD)
            self.last_act[ch] = act
            cas_ok[b] = act + tRCD
            orow[b] = row
            self.misses += 1
        else:
            self.hits += 1
        lat = tCWL if write else tCL
        lcb = self.last_cas_bg[ch]
        cas = max(t, cas_ok[b], lcb[g] + tCCD_L, bus - lat)
        lw = self.last_write[ch]
        if write and not lw:
            cas = max(cas, bus + tRTW - lat)
        elif lw and not write:
            cas = max(cas, bus + tWTR)
        end = cas + lat + self.B
        lcb[g] = cas
        if write:
            self.last_wr[ch][b] = end
        else:
            self.last_rd[ch][b] = cas
        self.last_write[ch] = write
        self.bus_free[ch] = end
        return end


@functools.lru_cache(maxsize=None)
def sequential_efficiency(name: str) -> float:
    """The fraction of one channel's peak a long sequential read stream reaches under this model (no
    consumer limit; 10 refresh intervals): the memory's sustainable bandwidth is ``peak x`` this."""
    p = get_dram(name)
    n = int(math.ceil(10 * p.tREFI / p.burst_ns))
    ch = _Channels(p, 1)
    end = 0.0
    for k in range(n):
        end = ch.access(k, False, 0.0)
    return n * p.burst_ns / end


# ---------------------------------------------------------------------------------------------------
# a program's demand -> Timing

@dataclass
class Schedule:
    """A program's memory schedule: the :class:`Timing` to replay, the DRAM statistics, and what
    :func:`check_schedule` needs (``write_issue``: the core cycle each result burst was scheduled,
    ``write_last``: the index of the last result in it)."""
    timing: Timing
    end_ns: float
    stats: dict
    write_issue: np.ndarray
    write_last: np.ndarray


_INPUTS = ("instr", "act", "wgt")


def schedule_program(ideal: dict, item_bytes: dict, memory: str, *, clock_mhz: float, channels: int = 1,
                     fifo_bytes: int = DEFAULT_FIFO_BYTES, write_batch: int = DEFAULT_WRITE_BATCH) -> Schedule:
    """The schedule of one program on ``channels`` units of ``memory``.

    ``ideal``: the cycle of every transfer of each stream (``instr``, ``act``, ``wgt``, ``out``: int
    arrays) in a run of the program with :meth:`Timing.ideal`, i.e. the demand order; ``item_bytes``:
    bytes per transfer of each stream. See the module docstring for the model."""
    p = get_dram(memory)
    if not isinstance(fifo_bytes, int) or fifo_bytes < 1:
        raise ValueError(f"fifo_bytes must be a positive integer, not {fifo_bytes!r}")
    BB = p.burst_bytes
    f = clock_mhz / 1e3                                     # core cycles per ns
    chans = _Channels(p, p.channels * channels)
    row_bytes = p.page_bytes * p.banks * p.channels * channels
    # regions, each from a fresh row of bank 0; per stream: first global burst, burst count
    base, bursts = {}, []
    addr = 0
    for s in _INPUTS + ("out",):
        n = len(ideal[s])
        size = n * item_bytes[s]
        base[s] = addr // BB
        nb = -(-size // BB)
        k = np.arange(nb, dtype=np.int64)
        first = (k * BB) // item_bytes[s]                   # first item a burst holds
        last = np.minimum(((k + 1) * BB - 1) // item_bytes[s], n - 1)
        cyc = np.asarray(ideal[s], dtype=np.int64)
        want = cyc[last] if s == "out" else cyc[first]      # a read is wanted with its first item
        bursts.append((want, np.full(nb, _INPUTS.index(s) if s != "out" else 3), k, first, last))
        addr += -(-size // row_bytes) * row_bytes
    want = np.concatenate([b[0] for b in bursts])
    sid = np.concatenate([b[1] for b in bursts])
    kk = np.concatenate([b[2] for b in bursts])
    first = np.concatenate([b[3] for b in bursts])
    last = np.concatenate([b[4] for b in bursts])
    order = np.lexsort((kk, sid, want))
    idl = {s: np.asarray(ideal[s], dtype=np.int64) for s in _INPUTS}
    room = {s: max(1, fifo_bytes // item_bytes[s]) for s in _INPUTS}
    w_issue, w_last = [], []
    pending = []                                            # writes not yet on the bus: (ready ns, burst)
    lag = 0
    end_ns = 0.0
    access, access_at = chans.access, chans.access_at
    wb = base["out"]
    bases = np.array([base[s] for s in _INPUTS + ("out",)], dtype=np.int64)
    loc = chans.locate_all(bases[sid[order]] + kk[order])
    want_l, sid_l, kk_l, first_l, last_l = (x[order].tolist() for x in (want, sid, kk, first, last))
    # An item is available (``at``) once the last burst holding it is in; the controller predicts it
    # is consumed at ``pred = max(ideal + lag, at)`` with ``lag`` as it was right after that burst.
    # A stream's bursts are served in order and hold consecutive items, of which only the first may
    # be in an earlier burst too; the ideal cycles grow with the item, so the largest
    # ``at - ideal`` of a burst is its first item's: per burst, its completion cycle ``c``, its first
    # item's ``at`` and the lag after it are all that is kept (not every item's), and an item's
    # ``at`` and ``pred`` are read back from its last burst served so far.
    per = []
    for si, s in enumerate(_INPUTS):
        b_first, b_last = bursts[si][3], bursts[si][4]
        items = np.arange(len(ideal[s]), dtype=np.int64)
        per.append((room[s], idl[s].tolist(), b_first.tolist(),
                    (np.searchsorted(b_first, items, side="right") - 1).tolist(),   # last burst of an item
                    np.searchsorted(b_last, items, side="left").tolist(),           # first burst of an item
                    [], [], []))                                                    # c, at(first), lag
    state = [[0, -1, -1] for _ in _INPUTS]      # per stream: bursts served, its last item and that item's at
    ceil = math.ceil
    for w, si, k, i0, i1, ch, g, b, row in zip(want_l, sid_l, kk_l, first_l, last_l, *loc):
        if si == 3:                                         # a result burst: into the write buffer
            c = w + lag + 1                                 # its last result is in the write buffer
            w_issue.append(c)
            w_last.append(i1)
            pending.append((c / f, wb + k))
            continue
        rm, idl_s, bf, lb, fb, cK, aK, lagK = per[si]
        st = state[si]
        free = i1 - rm                                      # the item that must have left the FIFO
        if free < 0:
            t = 0.0
        else:
            kf = lb[free]
            if kf >= st[0]:                                 # not complete yet: its last burst served
                kf = st[0] - 1 if fb[free] < st[0] else -1
            if kf < 0:
                t = 1 / f                                   # (no burst of it served: pred 0)
            else:
                a_f = aK[kf] if free == bf[kf] else cK[kf]
                p_f = idl_s[free] + lagK[kf]
                t = ((p_f if p_f > a_f else a_f) + 1) / f
        if len(pending) >= write_batch:                     # drain a batch of writes due before this read
            due = max(t, chans.bus_free[ch])
            if pending[write_batch - 1][0] <= due:
                while pending and pending[0][0] <= due:
                    tw, bw = pending.pop(0)
                    end_ns = max(end_ns, access(bw, True, tw))
        end = access_at(ch, g, b, row, False, t)
        if end > end_ns:
            end_ns = end
        c = int(ceil(end * f - 1e-9))
        a0 = st[1] if (st[2] == i0 and st[1] > c) else c   # the first item may be in the last burst
        d = a0 - idl_s[i0]
        if d > lag:
            lag = d
        cK.append(c)
        aK.append(a0)
        lagK.append(lag)
        st[0] = k + 1
        st[1] = a0 if i1 == i0 else c
        st[2] = i1
    for tw, bw in pending:
        end_ns = max(end_ns, access(bw, True, tw))
    at = {}
    for si, s in enumerate(_INPUTS):
        _, _, bf, lb, _, cK, aK, _ = per[si]
        lb_a, bf_a = np.asarray(lb, dtype=np.int64), np.asarray(bf, dtype=np.int64)
        cK_a, aK_a = np.asarray(cK, dtype=np.int64), np.asarray(aK, dtype=np.int64)
        items = np.arange(len(lb_a), dtype=np.int64)
        at[s] = np.where(items == bf_a[lb_a], aK_a[lb_a], cK_a[lb_a]) if len(lb_a) else lb_a
    timing = Timing(**{s: StreamTiming(at=at[s]) for s in _INPUTS})
    stats = {"row_hits": chans.hits, "row_misses": chans.misses, "refreshes": chans.refreshes,
             "bursts": int(len(order)), "burst_bytes": BB, "channels": chans.n,
             "bus_busy_ns": chans.busy_ns, "end_ns": end_ns, "fifo_bytes": fifo_bytes}
    return Schedule(timing, end_ns, stats, np.asarray(w_issue, dtype=np.int64),
                    np.asarray(w_last, dtype=np.int64))


def check_schedule(sched: Schedule, run, item_bytes: dict) -> dict:
    """How the real run ``run`` (a :class:`hw.result.RunResult` under ``sched.timing``) matched the
    schedule's prediction: ``fifo_peak_bytes`` per input stream (the most bytes in its FIFO at once:
    items available but not yet taken; within ``fifo_bytes`` when the prediction holds) and
    ``early_writes`` (result bursts scheduled before their last result left the core)."""
    peaks = {}
    for s in _INPUTS:
        x = np.asarray(getattr(run, f"{s}_cycles"), dtype=np.int64)
        a = np.asarray(sched.timing.stream(s).at_cycles(0, len(x)))
        if not len(x):
            peaks[s] = 0
            continue
        # occupancy just after cycle c: items with a <= c minus items taken at or before c; it rises
        # only where an item becomes available (and is never negative), so its maximum is at one
        avail_sorted = np.sort(a)
        occ = np.searchsorted(avail_sorted, avail_sorted, side="right") - np.searchsorted(x, avail_sorted, side="right")
        peaks[s] = int(occ.max()) * item_bytes[s]
    out = np.asarray(run.out_cycles, dtype=np.int64)
    early = int(np.sum(out[sched.write_last] > sched.write_issue)) if len(sched.write_last) else 0
    return {"fifo_peak_bytes": peaks, "early_writes": early}


def markdown_table() -> str:
    """The DRAM parameters and their sources as Markdown (``docs/ESTIMATE.md`` shows it; a test
    keeps them equal)."""
    rows = ["| memory | MT/s x bits x BL (burst bytes) | channels / unit | banks (groups), page | tRCD / tRP "
            "/ tCL ns | tRFC / tREFI ns | sequential efficiency (derived) | kinds: sources |",
            "|---|---|---|---|---|---|---|---|"]
    for p in DRAMS.values():
        kinds = "; ".join(f"{k}: {v[0]}, {v[1]}" for k, v in p.kinds.items())
        rows.append(f"| `{p.name}` | {p.rate_mt_s:g} x {p.width_bits} x {p.burst_length} ({p.burst_bytes}) "
                    f"| {p.channels} | {p.banks} ({p.bank_groups}), {p.page_bytes} B "
                    f"| {p.tRCD:.2f} / {p.tRP:.2f} / {p.tCL:.2f} | {p.tRFC:g} / {p.tREFI:g} "
                    f"| {sequential_efficiency(p.name):.4f} | {kinds} |")
    sources = "\n".join(f"* **[{k}]** {v}." for k, v in DRAM_SOURCES.items())
    return "\n".join(rows) + "\n\n" + sources + "\n"
