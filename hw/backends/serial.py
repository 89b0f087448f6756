"""The ``serial`` backend: a tern board top (:class:`hw.rtl.board.TernBoard`, a bitstream of
``tern synth`` or ``tern board-sim``) over its UART host link, through pyserial.

    from hw.backends import serial
    serial.configure("/dev/ttyUSB1", baud=115200)     # what --port / --baud set
    res = get_backend("serial").run(config, program)

The framing is the one of ``docs/FPGA.md`` (:mod:`hw.rtl.board`). Every program runs from reset, as
on the other backends: a reset request ``X`` opens its bytes (the core's queues, error flags,
counters and bank alternation start afresh). Then each instruction ``I`` followed by
the data it consumes (a LOAD_ACT by its ``A`` activation words, a MATMUL by the ``W`` weight beats of
its words), sent in windows of at most :data:`WINDOW` bytes, each closed by a status request ``S``
whose answer acknowledges that the board's receive FIFO has drained (UART has no flow control). The
``R`` result frames are read as they come; the run ends at the first status answer with ``idle`` set
after every byte of the program was sent.

What comes back from the board: the result vectors, the error flags and the performance counters (a
``C`` request after the run: the counters since the program's reset). The board's counters count the
board's cycles: ``cycles``, ``idle`` and the
stall counters include the time the core waits for the link, so they are not hw.sim's for ideal
streams; ``busy``, ``act_beats`` and ``wgt_beats`` are the program's and equal hw.sim's. The transfer
cycles of each stream are not observable over the link (empty arrays).

Every failure is a :class:`LinkError` (an ``OSError``: one line, exit 2 from the command line), never
a hang: every read has a timeout (:data:`TIMEOUT_S`, ``configure(timeout=...)``), a status answer that
does not come, a byte that is not a frame header, a status byte with reserved bits set, a result
frame of another length than this configuration's (a board of another configuration), a receive
FIFO overflow or an unknown header reported by the board (on opening: a bitstream without the reset
request), and a board whose answer to the configuration query (:func:`hw.rtl.board.config_id`) is
not this configuration's.
"""

from __future__ import annotations

import time

import numpy as np

from hw.backends.common import expected_outputs
from hw.config import TernConfig
from hw.isa import Op, decode
from hw.program import instr_is_valid
from hw.result import RunResult, as_streams
from hw.rtl.board import (HEADER_ACT, HEADER_COUNTERS, HEADER_INSTR, HEADER_QUERY, HEADER_RESET,
                          HEADER_RESULT, HEADER_STATUS, HEADER_WGT, config_id, counter_bytes,
                          result_bytes)

__all__ = ["run", "run_batch", "Session", "configure", "LinkError", "frames", "WINDOW", "TIMEOUT_S", "DEFAULT_BAUD",
           "STATUS_IDLE", "STATUS_OVERFLOW", "STATUS_BAD_HEADER"]

#: Bytes sent before each status request: the board's receive FIFO (512 bytes) less the request.
WINDOW = 511
#: Seconds a status answer or a frame's next byte may take before the link is declared dead.
TIMEOUT_S = 5.0
DEFAULT_BAUD = 115200
STATUS_IDLE, STATUS_OVERFLOW, STATUS_BAD_HEADER = 1 << 2, 1 << 3, 1 << 4
_STATUS_RESERVED = 0xE0

_settings = {"port": None, "baud": DEFAULT_BAUD, "timeout": TIMEOUT_S}


class LinkError(OSError):
    """The serial link failed: a timeout, a framing error, a board that reported an overflow."""


def configure(port: str | None = None, *, baud: int | None = None, timeout: float | None = None) -> None:
    """The port (a device path or a pyserial URL), baud rate and read timeout of later sessions."""
    if baud is not None:
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"--baud must be a positive integer, not {baud!r}")
        _settings["baud"] = baud
    if timeout is not None:
        if not timeout > 0:
            raise ValueError(f"serial timeout must be positive, not {timeout!r}")
        _settings["timeout"] = float(timeout)
    if port is not None:
        _settings["port"] = str(port) or None   # "": no port


def configured_port() -> str | None:
    """The port :func:`configure` set (None: none yet)."""
    return _settings["port"]


def frames(config: TernConfig, streams) -> list[bytes]:
    """The host -> board frames of ``streams`` (:class:`hw.result.Streams`) in the order that always
    makes progress: each instruction followed by the data it consumes. ValueError if the streams do
    not hold exactly the beats the valid instructions consume."""
    out = []
    acts, beats = streams.act_beats, streams.wgt_beats
    ia = iw = 0
    for w in streams.words:
        out.append(bytes([HEADER_INSTR]) + int(w).to_bytes(8, "little"))
        ins = decode(w)
        if not instr_is_valid(config, ins):
            continue
        if ins.op == Op.LOAD_ACT:
            n = ins.b
            if ia + n > len(acts):
                raise ValueError(f"serial: a LOAD_ACT needs {n} activation words, {len(acts) - ia} left")
            for row in acts[ia:ia + n]:
                out.append(bytes([HEADER_ACT]) + (np.asarray(row, dtype=np.int64) & 0xFF).astype(np.uint8).tobytes())
            ia += n
        elif ins.op == Op.MATMUL:
            n = ins.b * config.beats_per_word
            if iw + n > len(beats):
                raise ValueError(f"serial: a MATMUL needs {n} weight beats, {len(beats) - iw} left")
            for row in beats[iw:iw + n]:
                out.append(bytes([HEADER_WGT]) + np.asarray(row, dtype=np.uint8).tobytes())
            iw += n
    if ia != len(acts) or iw != len(beats):
        raise ValueError(f"serial: the program consumes {ia} of {len(acts)} activation words and "
                         f"{iw} of {len(beats)} weight beats")
    return out


class Session:
    """One open serial port to a board, kept for dependent calls (``run``, ``close``, ``closed``)."""

    closed = False

    def __init__(self, config: TernConfig, port: str | None = None, *, baud: int | None = None,
                 timeout: float | None = None):
        if not isinstance(config, TernConfig):
            raise TypeError(f"serial: config must be a hw.config.TernConfig, not {config!r}")
        import serial  # pyserial

        self.config = config
        self.port = port if port is not None else _settings["port"]
        self.baud = baud if baud is not None else _settings["baud"]
        self.timeout = timeout if timeout is not None else _settings["timeout"]
        if not self.port:
            raise LinkError("the serial backend needs a port (--port DEV)")
        self.result_len = config.rows * result_bytes(config)
        #: bytes written to and read from the link by this session
        self.bytes_sent = self.bytes_received = 0
        try:
            self.ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=self.timeout,
                                             write_timeout=self.timeout)
        except (serial.SerialException, ValueError) as e:
            raise LinkError(f"serial port {self.port}: {e}") from None
        self._results: list[bytes] = []
        try:
            self._handshake()
        except BaseException:
            self.ser.close()
            raise

    def _handshake(self) -> None:
        """Reset the board, check that it answers cleanly and was built for this configuration."""
        self.ser.reset_input_buffer()
        self._write(bytes([HEADER_RESET]))
        status = self._status()   # the board answers at all, and took the reset
        if status & STATUS_BAD_HEADER:
            raise LinkError(f"serial port {self.port}: the board does not know the reset request "
                            f"(unknown frame header): a bitstream of an older tern? (build it again "
                            f"with tern synth)")
        self._check(status & ~0b11)
        self._write(bytes([HEADER_QUERY]))
        got = int.from_bytes(self._answer(HEADER_QUERY, 8), "little")
        if got != config_id(self.config):
            raise LinkError(f"serial port {self.port}: the board was built for another configuration "
                            f"(id 0x{got:016x}, this one 0x{config_id(self.config):016x}): give the "
                            f"configuration flags the bitstream was built with")

    # -- link --------------------------------------------------------------------------------------------

    def _read(self, n: int, what: str) -> bytes:
        import serial
        try:
            data = self.ser.read(n)
        except serial.SerialException as e:
            raise LinkError(f"serial port {self.port}: {e}") from None
        self.bytes_received += len(data)
        if len(data) != n:
            raise LinkError(f"serial port {self.port}: timeout after {self.timeout:g} s waiting for "
                            f"{what} (got {len(data)} of {n} bytes; is the board configured and at "
                            f"{self.baud} baud?)")
        return data

    def _write(self, data: bytes) -> None:
        import serial
        try:
            self.ser.write(data)
            self.ser.flush()
            self.bytes_sent += len(data)
        except serial.SerialException as e:
            raise LinkError(f"serial port {self.port}: {e}") from None

    def _read_counters(self) -> dict:
        """The board's counters now (a ``C`` request; result frames before its answer are kept)."""
        cb = counter_bytes(self.config)
        self._write(bytes([HEADER_COUNTERS]))
        data = self._answer(HEADER_COUNTERS, len(self.config.perf_counters) * cb)
        return {k: int.from_bytes(data[i * cb:(i + 1) * cb], "little")
                for i, k in enumerate(self.config.perf_counters)}

    def _status(self) -> int:
        """Send a status request; collect result frames until its answer; the status byte."""
        self._write(bytes([HEADER_STATUS]))
        return self._answer(HEADER_STATUS, 1)[0]

    def _answer(self, header: int, n: int) -> bytes:
        """Read frames until the answer ``header`` (``n`` payload bytes); result frames are kept."""
        while True:
            head = self._read(1, "a frame from the board")[0]
            if head == HEADER_RESULT:
                self._results.append(self._read(self.result_len, "a result frame"))
            elif head == header and header in (HEADER_COUNTERS, HEADER_QUERY):
                return self._read(n, "a counters frame" if header == HEADER_COUNTERS else
                                  "a configuration frame")
            elif head == header == HEADER_STATUS:
                status = self._read(1, "a status byte")[0]
                if status & _STATUS_RESERVED:
                    raise LinkError(f"serial port {self.port}: framing error: status byte 0x{status:02x} "
                                    f"has reserved bits set (a board of another configuration, or "
                                    f"another baud rate?)")
                return bytes([status])
            else:
                raise LinkError(f"serial port {self.port}: framing error: byte 0x{head:02x} is not a "
                                f"frame header (result frames of {self.result_len} bytes expected: a "
                                f"board of another configuration, or another baud rate?)")

    def _check(self, status: int) -> None:
        if status & STATUS_OVERFLOW:
            raise LinkError(f"serial port {self.port}: the board's receive FIFO overflowed (reset the "
                            f"board)")
        if status & STATUS_BAD_HEADER:
            raise LinkError(f"serial port {self.port}: the board received an unknown frame header "
                            f"(reset the board)")

    # -- runs --------------------------------------------------------------------------------------------

    def run(self, program=None, timing=None, *, words=None, act_beats=None, wgt_beats=None,
            max_cycles=None) -> RunResult:
        """Run one program from reset (``timing`` and ``max_cycles`` have no meaning on a board: the link
        sets the pace)."""
        if self.closed:
            raise LinkError("serial: the session is closed")
        cfg = self.config
        st = as_streams(cfg, program, words=words, act_beats=act_beats, wgt_beats=wgt_beats)
        n_out = expected_outputs(cfg, st)
        t0 = time.perf_counter()
        self._results = []
        window = bytearray([HEADER_RESET])
        for f in frames(cfg, st):
            if len(window) + len(f) > WINDOW:
                self._write(bytes(window))
                self._check(self._status() & ~0b11)
                window.clear()
            window += f
        self._write(bytes(window))
        deadline = time.monotonic() + self.timeout
        while True:
            status = self._status()
            self._check(status & ~0b11)
            if status & STATUS_IDLE:
                break
            if time.monotonic() > deadline:
                raise LinkError(f"serial port {self.port}: the board did not become idle within "
                                f"{self.timeout:g} s")
        error = int(status & 0b11)
        if error:   # the core dropped what it could not run: the results that came
            n_out = len(self._results)
        elif len(self._results) != n_out:
            raise LinkError(f"serial port {self.port}: {len(self._results)} result frames for a program "
                            f"of {n_out} result vectors")
        counters = self._read_counters()
        rb = result_bytes(cfg)
        raw = np.frombuffer(b"".join(self._results), dtype=np.uint8).reshape(n_out, cfg.rows, rb)
        vals = (raw.astype(np.int64) << (8 * np.arange(rb, dtype=np.int64))).sum(axis=2)
        vals -= (vals >> (8 * rb - 1)) << (8 * rb)
        empty = np.zeros(0, dtype=np.int64)
        return RunResult(backend="serial", config=cfg, outputs=vals.reshape(n_out, cfg.rows),
                         cycles=counters["cycles"], counters=counters, error=error, instr_cycles=empty,
                         act_cycles=empty, wgt_cycles=empty, out_cycles=empty,
                         wall_s=time.perf_counter() - t0)

    def close(self):
        if not self.closed:
            self.closed = True
            self.ser.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(config, program=None, timing=None, *, words=None, act_beats=None, wgt_beats=None,
        max_cycles=None, interrupt=None) -> RunResult:
    """One program on the configured port (a session opened and closed around it). ``interrupt``
    (``(program, timing, cycle)`` of :class:`hw.verify.generate.Case`): that program runs first, in
    full (the reset request that starts every program is taken between frames, not at a cycle), and
    its outcome is discarded."""
    with Session(config) as s:
        if interrupt is not None:
            s.run(interrupt[0])
        return s.run(program, timing, words=words, act_beats=act_beats, wgt_beats=wgt_beats)


def run_batch(cases) -> list[RunResult]:
    """The results of :class:`hw.verify.generate.Case` s in order, in one session per configuration
    (each case from reset; an ``interrupt`` program runs in full before its case, as in :func:`run`)."""
    out, session = [], None
    try:
        for c in cases:
            if session is None or session.config != c.config:
                if session is not None:
                    session.close()
                session = Session(c.config)
            if c.interrupt is not None:
                session.run(c.interrupt[0])
            out.append(session.run(c.program))
    finally:
        if session is not None:
            session.close()
    return out
