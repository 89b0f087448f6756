"""Board top of the tern core: :class:`TernCore` behind a UART byte-stream host link.

Blocks (all ``wiring.Component``, ``sync`` domain):

* :class:`UartRx` / :class:`UartTx`: minimal 8N1 UART PHYs (``divisor`` clock cycles per bit).
  (amaranth-stdio, the natural home of a serial PHY, is not on PyPI, hence these few lines.)
* :class:`HostBridge`: the framing of ``docs/FPGA.md``: a header byte selects a stream, the payload
  bytes follow little-endian; result vectors and status bytes go back as frames on ``tx``.
* :class:`TernBoard`: UART pins ``rx``/``tx`` -> UartRx -> receive FIFO -> HostBridge <-> TernCore,
  HostBridge -> UartTx. Simulatable without a platform.
* :class:`BoardTop`: the platform top for ``amaranth-boards``: requests ``uart`` 0 (and drives the
  board's LEDs with ``idle``/``error`` when it has them), runs at a PLL clock
  (:class:`hw.rtl.pll.ClockGen`) or, without one, at the board's default clock.

Framing (host -> board), one header byte then its payload:

====== ========= =========================================================================
header  payload   meaning
====== ========= =========================================================================
``I``   8 bytes   one 64-bit instruction word (``hw.isa``), little-endian -> ``instr``
``A``   L bytes   one activation word: byte ``l`` = int8 lane ``l`` -> ``act``
``W``   B bytes   one weight beat: byte ``i`` = beat byte ``i`` (``hw.formats``) -> ``wgt``
``S``   none      status request: the board answers ``S`` + one status byte
``C``   none      counters request: the board answers ``C`` + the performance counters
``Q``   none      configuration query: the board answers ``Q`` + :func:`config_id` (8 bytes)
``X``   none      reset: the core is reset (a one-cycle synchronous reset: queues, FIFOs, error
                  flags, counters, bank alternation) and the sticky link flags are cleared
====== ========= =========================================================================

Board -> host: ``R`` followed by ``rows * ceil(acc_width / 8)`` bytes (row 0 first, each row
sign-extended to whole bytes, little-endian) for every result vector; ``S`` + status byte
(bit 0..1 the core's error flags, bit 2 ``idle``, bit 3 receive FIFO overflow (sticky), bit 4 an
unknown header byte was dropped (sticky)) for every status request, in the order of the requests
relative to the results the core had produced by then; ``C`` followed by every counter of
``perf_counters`` (in that order, ``ceil(perf_width / 8)`` bytes each, little-endian, read when the
bridge reaches the request) for every counters request; ``Q`` + the 64-bit :func:`config_id` of the
configuration the gateware was built for, little-endian, for every configuration query.
"""

from __future__ import annotations

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Signal,
                          signed)
from amaranth.lib import fifo, io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hw.config import TernConfig
from hw.rtl.component import ConfigComponent
from hw.rtl.counters import counters_layout
from hw.rtl.top import TernCore, core_streams

__all__ = ["UartRx", "UartTx", "HostBridge", "TernBoard", "BoardTop", "HEADER_INSTR", "HEADER_ACT",
           "HEADER_WGT", "HEADER_STATUS", "HEADER_RESULT", "HEADER_COUNTERS", "HEADER_QUERY", "HEADER_RESET",
           "config_id", "result_bytes", "counter_bytes",
           "uart_divisor"]

HEADER_INSTR = ord("I")
HEADER_ACT = ord("A")
HEADER_WGT = ord("W")
HEADER_STATUS = ord("S")
HEADER_RESULT = ord("R")
HEADER_COUNTERS = ord("C")
HEADER_QUERY = ord("Q")
HEADER_RESET = ord("X")


def result_bytes(config: TernConfig) -> int:
    """Bytes per accumulator in a result frame: ``ceil(acc_width / 8)``."""
    return -(-config.acc_width // 8)


def config_id(config: TernConfig) -> int:
    """A 64-bit identity of ``config`` (its settings, hashed): what the board answers a ``Q`` with."""
    import hashlib
    import json
    text = json.dumps(config.to_dict(), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def counter_bytes(config: TernConfig) -> int:
    """Bytes per performance counter in a counters frame: ``ceil(perf_width / 8)``."""
    return -(-config.perf_width // 8)


def uart_divisor(clk_freq: float, baud: int) -> int:
    """Clock cycles per UART bit; ValueError if the rate is off by more than 2 % or below 4."""
    if not baud or baud <= 0:
        raise ValueError(f"baud rate must be positive, not {baud!r}")
    div = round(clk_freq / baud)
    if div < 4:
        raise ValueError(f"baud rate {baud} is too high for a {clk_freq / 1e6:g} MHz clock "
                         f"(needs at least 4 clock cycles per bit)")
    if abs(clk_freq / div - baud) > 0.02 * baud:
        raise ValueError(f"baud rate {baud} cannot be made from a {clk_freq / 1e6:g} MHz clock "
                         f"within 2 % (divisor {div} gives {clk_freq / div:.0f})")
    return div


def _check_divisor(name, divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"{name}: divisor must be an integer >= 4 (clock cycles per bit), "
                         f"not {divisor!r}")


class _UartPhy(wiring.Component):
    """A UART PHY of ``divisor`` clock cycles per bit (checked before any Amaranth object exists)."""

    def __new__(cls, divisor, *args, **kwargs):
        _check_divisor(cls.__name__, divisor)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, divisor: int, members: dict):
        self.divisor = divisor
        super().__init__(members)


class UartRx(_UartPhy):
    """8N1 UART receiver.

    Ports
    -----
    rx : In(1)
        The serial line (idle high); synchronized with two flip-flops inside.
    data : Out(stream.Signature(8))
        One received byte per stop bit: ``valid`` is high for one cycle, in the cycle the middle of
        the stop bit is sampled (``latency`` cycles after the start bit's falling edge reached
        ``rx``). There is no back-pressure: a byte offered while ``ready`` is low is lost and
        ``overrun`` pulses.
    overrun : Out(1)
        One-cycle pulse: a byte was lost.
    frame_error : Out(1)
        One-cycle pulse: a stop bit was low (the byte is dropped).
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, {
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from the start bit's falling edge on ``rx`` to ``data.valid``."""
        div = self.divisor
        return 2 + 1 + div // 2 + 9 * div

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        rx_s = Signal(1, init=1, name="rx_sync")
        m.submodules.rx_ff = FFSynchronizer(self.rx, rx_s, init=1)
        timer = Signal(range(div), name="timer")
        bit = Signal(range(8), name="bit")
        shreg = Signal(8, name="shreg")
        tick = Signal(name="tick")
        m.d.comb += tick.eq(timer == 0)
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)
        m.d.comb += self.data.payload.eq(shreg)
        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~rx_s):
                    m.d.sync += timer.eq(div // 2)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(~rx_s):
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
                    with m.Else():
                        m.next = "IDLE"  # a glitch, not a start bit
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx_s)), timer.eq(div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx_s):
                        m.d.comb += [self.data.valid.eq(1), self.overrun.eq(~self.data.ready)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):  # wait for the line to go idle after a framing error
                with m.If(rx_s):
                    m.next = "IDLE"
        return m


class UartTx(_UartPhy):
    """8N1 UART transmitter.

    Ports
    -----
    data : In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle; the start bit begins in the
        cycle after the transfer and each byte takes ``10 * divisor`` cycles.
    tx : Out(1)
        The serial line (idle high), driven from a register.
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, {
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        shreg = Signal(10, init=0x3FF, name="tx_shreg")
        count = Signal(range(11), name="tx_bits_left")
        timer = Signal(range(div), name="tx_timer")
        m.d.comb += [self.tx.eq(shreg[0]), self.data.ready.eq(count == 0)]
        with m.If(count == 0):
            with m.If(self.data.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))),
                             count.eq(10), timer.eq(div - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), count.eq(count - 1),
                         timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class HostBridge(ConfigComponent):
    """Byte-stream framing between a host link and the four streams of :class:`TernCore`.

    Ports
    -----
    rx : In(stream.Signature(8))
        Bytes from the host (framing in the module docstring). Taken at one byte per cycle except
        while a completed frame waits for its stream's ``ready`` or a status request waits for
        ``tx``.
    tx : Out(stream.Signature(8))
        Bytes to the host: result frames and status frames.
    instr, act, wgt : Out(stream.Signature(...))
        To the core's ports of the same names (layouts as :class:`TernCore`); a frame's word is
        offered from the cycle after its last byte was taken.
    out : In(stream.Signature(ArrayLayout(signed(acc_width), rows)))
        From the core's ``out``; a vector is taken when the transmitter is free and becomes one
        ``R`` frame.
    error : In(2), idle : In(1), overflow : In(1)
        Status inputs reported in the status byte (``overflow`` is expected to be sticky).
    bad_header : Out(1)
        Sticky: an unknown header byte was received (and dropped); cleared by a reset request.
    core_reset : Out(1)
        High for one cycle after a reset request ``X`` was taken: resets the core.
    """

    def __init__(self, config: TernConfig):
        super().__init__(config, {
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            # the core's four streams, seen from the other side
            **{name: member.flip() for name, member in core_streams(config).items()},
            "error": In(2),
            "idle": In(1),
            "overflow": In(1),
            "perf": In(counters_layout(config)),
            "bad_header": Out(1),
            "core_reset": Out(1),
        })

    @staticmethod
    def frame_bytes_of(config: TernConfig) -> dict[str, int]:
        """Payload bytes per frame type: instr, act, wgt (host -> board), result (board -> host)."""
        return {"instr": 8, "act": config.lanes, "wgt": config.bus_bytes,
                "result": config.rows * result_bytes(config)}

    @property
    def frame_bytes(self) -> dict[str, int]:
        """:meth:`frame_bytes_of` this bridge's configuration."""
        return self.frame_bytes_of(self.config)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n = self.frame_bytes
        width = 8 * max(n["instr"], n["act"], n["wgt"])
        buf = Signal(width, name="rx_word")
        left = Signal(range(max(n["instr"], n["act"], n["wgt"])), name="rx_bytes_left")
        sel = Signal(2, name="rx_sel")  # 0 instr, 1 act, 2 wgt
        status_req = Signal(name="status_req")
        counters_req = Signal(name="counters_req")
        query_req = Signal(name="query_req")
        busy_req = Signal(name="request_pending")
        m.d.comb += busy_req.eq(status_req | counters_req | query_req)
        bad = Signal(name="bad_header_flag")
        m.d.comb += self.bad_header.eq(bad)
        m.d.sync += self.core_reset.eq(0)

        targets = (self.instr, self.act, self.wgt)
        # the completed frame's stream: one valid flop per stream, set on the frame's last byte and
        # cleared by the stream's ready (so that each valid starts at a flop and a ready reaches
        # only its flop, not the receive FSM)
        send_valid = Signal(len(targets), name="rx_send_valid")
        for i, t in enumerate(targets):
            nb = (n["instr"], n["act"], n["wgt"])[i]
            m.d.comb += [t.payload.eq(buf[width - 8 * nb:]), t.valid.eq(send_valid[i])]
        for i, t in enumerate(targets):
            with m.If(t.ready):
                m.d.sync += send_valid[i].eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("HEADER"):
                # a frame's word waiting for its stream holds the next header back (so that buf
                # stays as it is until the word is taken)
                m.d.comb += self.rx.ready.eq(~busy_req & ~send_valid.any())
                with m.If(self.rx.valid & self.rx.ready):
                    with m.Switch(self.rx.payload):
                        with m.Case(HEADER_INSTR):
                            m.d.sync += [sel.eq(0), left.eq(n["instr"] - 1)]
                            m.next = "PAYLOAD"
                        with m.Case(HEADER_ACT):
                            m.d.sync += [sel.eq(1), left.eq(n["act"] - 1)]
                            m.next = "PAYLOAD"
                        with m.Case(HEADER_WGT):
                            m.d.sync += [sel.eq(2), left.eq(n["wgt"] - 1)]
                            m.next = "PAYLOAD"
                        with m.Case(HEADER_STATUS):
                            m.d.sync += status_req.eq(1)
                        with m.Case(HEADER_COUNTERS):
                            m.d.sync += counters_req.eq(1)
                        with m.Case(HEADER_QUERY):
                            m.d.sync += query_req.eq(1)
                        with m.Case(HEADER_RESET):
                            m.d.sync += [self.core_reset.eq(1), bad.eq(0)]
                        with m.Default():
                            m.d.sync += bad.eq(1)
            with m.State("PAYLOAD"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [buf.eq(Cat(buf[8:], self.rx.payload)), left.eq(left - 1)]
                    with m.If(left == 0):
                        m.d.sync += send_valid.eq(Cat(sel == i for i in range(len(targets))))
                        m.next = "HEADER"

        # transmit side
        rb = result_bytes(cfg)
        ext = []
        for r in range(cfg.rows):
            s = Signal(signed(8 * rb), name=f"result_row{r}")
            m.d.comb += s.eq(self.out.payload[r])
            ext.append(s)
        obuf = Signal(8 * n["result"], name="tx_result")
        tleft = Signal(range(n["result"]), name="tx_bytes_left")
        status = Signal(8, name="status_byte")
        m.d.comb += status.eq(Cat(self.error, self.idle, self.overflow, bad))
        cb = counter_bytes(cfg)
        n_cnt = len(cfg.perf_counters) * cb
        cbuf = Signal(8 * n_cnt, name="tx_counters")
        cleft = Signal(range(n_cnt), name="tx_counter_bytes_left")
        cvals = []
        for name in cfg.perf_counters:
            v = Signal(8 * cb, name=f"counter_{name}")
            m.d.comb += v.eq(self.perf[name])
            cvals.append(v)
        # the configuration id is a constant: its byte to send is selected by the count, not
        # shifted out of a register (byte 7 - qleft, low byte first: ~qleft)
        qid = Const(config_id(cfg), 64)
        qleft = Signal(range(8), name="tx_config_id_bytes_left")
        def header_state(state, byte, then):
            """Send the header ``byte``, then go to ``then``."""
            with m.State(state):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                with m.If(self.tx.ready):
                    m.next = then

        def shift_state(state, buf, left, req):
            """Send ``buf`` low byte first until ``left`` reaches 0, then clear ``req``."""
            with m.State(state):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(buf[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [buf.eq(buf >> 8), left.eq(left - 1)]
                    with m.If(left == 0):
                        m.d.sync += req.eq(0)
                        m.next = "IDLE"

        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                with m.If(self.out.valid):
                    m.d.comb += self.out.ready.eq(1)
                    m.d.sync += [obuf.eq(Cat(*ext)), tleft.eq(n["result"] - 1)]
                    m.next = "RESULT_HEADER"
                with m.Elif(status_req):
                    m.next = "STATUS_HEADER"
                with m.Elif(counters_req):
                    m.d.sync += [cbuf.eq(Cat(*cvals)), cleft.eq(n_cnt - 1)]
                    m.next = "COUNTERS_HEADER"
                with m.Elif(query_req):
                    m.d.sync += qleft.eq(7)
                    m.next = "QUERY_HEADER"
            header_state("RESULT_HEADER", HEADER_RESULT, "RESULT")
            with m.State("RESULT"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(obuf[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [obuf.eq(obuf >> 8), tleft.eq(tleft - 1)]
                    with m.If(tleft == 0):
                        m.next = "IDLE"
            header_state("STATUS_HEADER", HEADER_STATUS, "STATUS")
            with m.State("STATUS"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(status)]
                with m.If(self.tx.ready):
                    m.d.sync += status_req.eq(0)
                    m.next = "IDLE"
            header_state("COUNTERS_HEADER", HEADER_COUNTERS, "COUNTERS")
            shift_state("COUNTERS", cbuf, cleft, counters_req)
            header_state("QUERY_HEADER", HEADER_QUERY, "QUERY")
            with m.State("QUERY"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(qid.word_select(~qleft, 8))]
                with m.If(self.tx.ready):
                    m.d.sync += qleft.eq(qleft - 1)
                    with m.If(qleft == 0):
                        m.d.sync += query_req.eq(0)
                        m.next = "IDLE"
        return m


class TernBoard(ConfigComponent):
    """:class:`TernCore` behind a UART host link (framing: module docstring, ``docs/FPGA.md``).

    Ports
    -----
    rx : In(1)
        UART line from the host (8N1, ``divisor`` clock cycles per bit).
    tx : Out(1)
        UART line to the host.
    idle : Out(1), error : Out(2)
        The core's ``idle`` and error flags (for LEDs).

    Bytes are received into a ``rx_fifo_depth``-byte FIFO and reach the bridge through one register
    stage (``rx_stage_valid``, ``rx_stage_byte``); the host must keep at most ``rx_fifo_depth`` bytes
    in flight (send a status request ``S`` and wait for its answer as the acknowledgement:
    every byte before it has left the FIFO). An overflow sets status bit 3 (until a reset request).
    """

    @classmethod
    def check_args(cls, divisor, *, rx_fifo_depth: int = 512):
        _check_divisor(cls.__name__, divisor)
        if isinstance(rx_fifo_depth, bool) or not isinstance(rx_fifo_depth, int) or rx_fifo_depth < 2:
            raise ValueError(f"{cls.__name__}: rx_fifo_depth must be an integer >= 2, "
                             f"not {rx_fifo_depth!r}")

    def __init__(self, config: TernConfig, divisor: int, *, rx_fifo_depth: int = 512):
        self.divisor = divisor
        self.rx_fifo_depth = rx_fifo_depth
        super().__init__(config, {
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "idle": Out(1),
            "error": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        core = TernCore(self.config)
        m.submodules.bridge = br = HostBridge(self.config)
        # the core runs in its own domain on the same clock, reset by one flop: the power-on reset
        # or a reset request, a cycle later (so that the reset reaching the core's enables is a
        # register, not an OR of two resets)
        m.domains.core = cd_core = ClockDomain("core", local=True)
        core_rst = Signal(init=1, name="core_rst")
        m.d.sync += core_rst.eq(br.core_reset)
        m.d.comb += [cd_core.clk.eq(ClockSignal("sync")), cd_core.rst.eq(core_rst)]
        m.submodules.core = DomainRenamer("core")(core)
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.submodules.rx_fifo = rxf = fifo.SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)

        overflow = Signal(name="rx_overflow")
        with m.If(urx.overrun):
            m.d.sync += overflow.eq(1)
        with m.Elif(br.core_reset):
            m.d.sync += overflow.eq(0)
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            rxf.w_data.eq(urx.data.payload),
            rxf.w_en.eq(urx.data.valid),
            urx.data.ready.eq(rxf.w_rdy),
            br.error.eq(core.error),
            br.idle.eq(core.idle),
            br.overflow.eq(overflow),
            br.perf.eq(core.perf),
            self.idle.eq(core.idle),
            self.error.eq(core.error),
        ]
        # a register stage between the receive FIFO and the bridge: the bridge decodes its header
        # from a flop, not from the block RAM's read data (slow on every family: the critical path
        # of both the iCE40 and the ECP5 builds before it). It refills only when empty (a byte per
        # two cycles at most, far above any UART's rate), so that the bridge's ready reaches only
        # the stage's valid, not the FIFO's pointers.
        rx_valid = Signal(name="rx_stage_valid")
        rx_byte = Signal(8, name="rx_stage_byte")
        m.d.comb += [
            rxf.r_en.eq(~rx_valid),
            br.rx.valid.eq(rx_valid),
            br.rx.payload.eq(rx_byte),
        ]
        with m.If(rxf.r_en & rxf.r_rdy):
            m.d.sync += [rx_valid.eq(1), rx_byte.eq(rxf.r_data)]
        with m.Elif(br.rx.ready):
            m.d.sync += rx_valid.eq(0)
        wiring.connect(m, br.tx, utx.data)
        wiring.connect(m, br.instr, core.instr)
        wiring.connect(m, br.act, core.act)
        wiring.connect(m, br.wgt, core.wgt)
        wiring.connect(m, core.out, br.out)
        return m


class BoardTop(ConfigComponent):
    """Platform top for an ``amaranth-boards`` platform: :class:`TernBoard` on ``uart`` 0;
    ``led`` 0 shows ``idle`` and ``led`` 1 an error (where present).

    ``pll`` (a :class:`hw.rtl.pll.PLLSetting`, from :func:`hw.rtl.pll.solve_pll`) clocks the whole
    design from the family's PLL at ``pll.f_out_mhz`` (:class:`hw.rtl.pll.ClockGen`, the one piece
    that makes the clock); ``pll=None`` runs it at the platform's default clock (the board
    oscillator), the path for a simulation or a platform without a PLL. The UART divisor comes
    from the clock the design runs at."""

    @classmethod
    def check_args(cls, *, baud: int = 115200, rx_fifo_depth: int = 512, pll=None):
        from hw.rtl.pll import PLLSetting
        if pll is not None and not isinstance(pll, PLLSetting):
            raise TypeError(f"{cls.__name__}: pll must be a PLLSetting or None, not {pll!r}")

    def __init__(self, config: TernConfig, *, baud: int = 115200, rx_fifo_depth: int = 512,
                 pll=None):
        self.baud = baud
        self.rx_fifo_depth = rx_fifo_depth
        self.pll = pll
        super().__init__(config, {})

    def clock_hz(self, platform) -> float:
        """The frequency the design runs at on ``platform``: the PLL output or the default clock."""
        return self.pll.f_out_hz if self.pll is not None else platform.default_clk_frequency

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("BoardTop needs a platform (use TernBoard in simulation)")
        from amaranth.build import ResourceError
        m = Module()
        if self.pll is not None:  # else the platform makes ``sync`` from its default clock
            from hw.rtl.pll import ClockGen
            m.domains.sync = ClockDomain("sync")
            m.submodules.clockgen = ClockGen(self.pll, platform.default_clk)
        div = uart_divisor(self.clock_hz(platform), self.baud)
        m.submodules.board = board = TernBoard(self.config, div, rx_fifo_depth=self.rx_fifo_depth)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [board.rx.eq(rx_buf.i), tx_buf.o.eq(board.tx)]
        try:
            en = platform.request("uart_tx_enable", 0, dir="-")  # ULX3S: the FTDI's tx enable
        except ResourceError:
            pass
        else:
            m.submodules.uart_tx_enable_buf = en_buf = io.Buffer("o", en)
            m.d.comb += en_buf.o.eq(1)
        for i, sig in enumerate((board.idle, board.error.any())):
            try:
                led = platform.request("led", i, dir="-")
            except ResourceError:
                break
            buf = io.Buffer("o", led)
            m.submodules[f"led{i}_buf"] = buf
            m.d.comb += buf.o.eq(sig)
        return m
