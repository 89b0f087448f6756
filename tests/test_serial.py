"""The ``serial`` backend (hw/backends/serial.py) through pyserial on a pseudo-terminal.

Fast tests: a Python fake of the board behind the pty, written here from the framing of docs/FPGA.md
(not from the backend's code): it parses the frames, answers status requests, and produces the
result vectors with hw.sim on the streams it received. Slow test: ``tern board-sim`` (the board top
under Verilator) and ``tern demo --backend serial`` against it."""

import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from hw.config import TernConfig
from hw.program import linear_program, outputs_to_matrix, reference_matmul

serial = pytest.importorskip("serial")

CFG = TernConfig(rows=2, lanes=4, acc_width=13, bus_bytes=2, act_depth=64, wgt_depth=16, out_depth=4)


def _config_id(cfg):
    """The configuration identity of docs/FPGA.md: sha256 of the sorted JSON settings, 8 bytes LE."""
    import hashlib
    import json
    text = json.dumps(cfg.to_dict(), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class FakeBoard(threading.Thread):
    """The board side of the link on a pty master: ``mode`` ``ok`` (a working board), ``mute`` (never
    answers), ``garbage`` (answers a status request with a byte that is no frame header), ``wide``
    (result frames one byte too long: a board of another configuration), ``old`` (no reset request:
    ``X`` is an unknown header), ``reserved`` (status bytes with reserved bits set), ``overflow``
    (reports a receive FIFO overflow), ``busy`` (never becomes idle), ``lost`` (drops the last result
    frame of a program), ``flip`` (the last result vector's row 0 off by one)."""

    def __init__(self, cfg, mode="ok"):
        super().__init__(daemon=True)
        self.cfg, self.mode = cfg, mode
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        import tty
        tty.setraw(slave)
        self._slave = slave
        self.words, self.act, self.wgt = [], [], []
        self.sent = 0
        self.counters = dict.fromkeys(cfg.perf_counters, 0)   # of the last completed simulation
        self.config_id = _config_id(cfg)
        self.stop = False
        self.received = bytearray()
        self.bad_header = False
        self.resets = 0

    def _reset(self):
        """The reset request: the core's state and counters afresh, the sticky flags cleared."""
        self.words, self.act, self.wgt = [], [], []
        self.sent = 0
        self.counters = dict.fromkeys(self.cfg.perf_counters, 0)
        self.bad_header = False
        self.resets += 1

    def _byte(self):
        import select
        while True:
            if self.stop:   # closing: leave before the descriptor is closed (and its number reused)
                raise OSError("the fake board is closed")
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            b = os.read(self.master, 1)
            if b:
                self.received += b
                return b[0]

    def _take(self, n):
        return bytes(self._byte() for _ in range(n))

    def _answer_status(self):
        from hw.sim import simulate
        if self.mode == "mute":
            return
        if self.mode == "garbage":
            os.write(self.master, b"\x00\x00")
            return
        out = b""
        idle = self.bad_header << 4
        try:
            res = simulate(self.cfg, None, words=self.words, act_beats=np.array(self.act, dtype=np.int8).reshape(-1, self.cfg.lanes),
                           wgt_beats=np.array(self.wgt, dtype=np.uint8).reshape(-1, self.cfg.bus_bytes))
        except Exception:   # the program so far cannot finish yet: the core is busy
            res = None
        if res is not None and self.mode != "busy":
            idle |= (1 << 2) | res.error
            rb = -(-self.cfg.acc_width // 8)
            vecs = np.array(res.outputs[self.sent:], dtype=np.int64).reshape(-1, self.cfg.rows)
            if self.mode == "flip" and len(vecs):
                vecs[-1, 0] += 1
            if self.mode == "lost":
                vecs = vecs[:-1]
            for vec in vecs:
                frame = b"R" + b"".join(int(v).to_bytes(rb, "little", signed=True) for v in vec)
                out += frame + (b"\x00" if self.mode == "wide" else b"")
            self.sent = len(res.outputs)
            self.counters = res.counters
        idle |= {"reserved": 0xE0, "overflow": 1 << 3}.get(self.mode, 0)
        os.write(self.master, out + b"S" + bytes([idle]))

    def run(self):
        try:
            while True:
                h = self._byte()
                if h == ord("I"):
                    self.words.append(int.from_bytes(self._take(8), "little"))
                elif h == ord("A"):
                    self.act.append([x - 256 if x > 127 else x for x in self._take(self.cfg.lanes)])
                elif h == ord("W"):
                    self.wgt.append(list(self._take(self.cfg.bus_bytes)))
                elif h == ord("S"):
                    self._answer_status()
                elif h == ord("Q") and self.mode != "mute":
                    os.write(self.master, b"Q" + self.config_id.to_bytes(8, "little"))
                elif h == ord("X") and self.mode != "old":
                    self._reset()
                elif h == ord("X"):
                    self.bad_header = True
                elif h == ord("C") and self.mode != "mute":
                    cb = -(-self.cfg.perf_width // 8)
                    os.write(self.master, b"C" + b"".join(
                        int(self.counters[k]).to_bytes(cb, "little") for k in self.cfg.perf_counters))
        except OSError:
            return

    def close(self):
        """Stop the thread, then close the pty: a thread still running after its test could otherwise
        read from a later test's pty that was given the same descriptor number."""
        self.stop = True
        if self.is_alive():
            self.join(timeout=30)
        assert not self.is_alive(), "the fake board did not stop"
        os.close(self._slave)
        os.close(self.master)


def _problem(seed, T=3, N=5, K=11):
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, size=(T, K))
    w = rng.integers(-1, 2, size=(N, K))
    return q, w


def test_session_matches_the_integer_reference_through_a_pty():
    from hw.backends import get_backend
    from hw.backends.serial import Session
    from hw.sim import simulate
    board = FakeBoard(CFG)
    board.start()
    try:
        with Session(CFG, board.path, baud=115200, timeout=10) as s:
            for seed in (1, 2):
                q, w = _problem(seed, K=60)   # a program over several 511-byte windows
                prog = linear_program(CFG, q, w)
                res = s.run(prog)
                d = outputs_to_matrix(CFG, res.outputs, q.shape[0], w.shape[0])
                assert np.array_equal(d, reference_matmul(q, w))
                assert res.error == 0 and res.backend == "serial"
                # the program's own counters (the fake's counters count the whole session)
                want = simulate(CFG, prog).counters
                for k in ("busy", "act_beats", "wgt_beats"):
                    assert res.counters[k] == want[k] > 0, k
                assert res.cycles == res.counters["cycles"] > 0
        assert get_backend("serial").rtl is False
        # every status request was sent after a window of at most 511 bytes
        data = bytes(board.received)
        assert max(len(chunk) for chunk in _windows(data)) <= 511
    finally:
        board.close()


def _windows(data):
    """The byte runs between status requests (a parse of the frames, 'S' inside payloads skipped)."""
    lens = {ord("I"): 8, ord("A"): CFG.lanes, ord("W"): CFG.bus_bytes, ord("C"): 0, ord("Q"): 0, ord("X"): 0}
    pos, start, out = 0, 0, []
    while pos < len(data):
        h = data[pos]
        if h == ord("S"):
            out.append(data[start:pos])
            pos += 1
            start = pos
        else:
            pos += 1 + lens[h]
    return out


def test_frames_follow_each_instruction_with_its_data():
    from hw.backends.serial import frames
    from hw.isa import Op, decode
    from hw.result import as_streams
    q, w = _problem(3)
    prog = linear_program(CFG, q, w)
    fr = frames(CFG, as_streams(CFG, prog))
    assert sum(f[0] == ord("I") for f in fr) == len(prog.words)
    assert sum(f[0] == ord("A") for f in fr) == len(prog.act_beats)
    assert sum(f[0] == ord("W") for f in fr) == len(prog.wgt_beats)
    # after a LOAD_ACT of b words come exactly b activation frames
    for i, f in enumerate(fr):
        if f[0] == ord("I"):
            ins = decode(int.from_bytes(f[1:], "little"))
            if ins.op == Op.LOAD_ACT:
                assert [g[0] for g in fr[i + 1:i + 1 + ins.b]] == [ord("A")] * ins.b
    assert {len(f) for f in fr if f[0] == ord("A")} == {1 + CFG.lanes}
    assert {len(f) for f in fr if f[0] == ord("W")} == {1 + CFG.bus_bytes}


@pytest.mark.parametrize("mode, message", [
    ("mute", r"timeout after 0\.5 s waiting for a frame from the board"),
    ("garbage", r"framing error: byte 0x00 is not a frame header"),
    ("wide", r"framing error: byte 0x00 is not a frame header"),
    ("reserved", r"framing error: status byte 0xe[0-9a-f] has reserved bits set"),
    ("overflow", r"the board's receive FIFO overflowed \(reset the board\)"),
    ("busy", r"the board did not become idle within 2 s"),
    ("lost", r"\d+ result frames for a program of \d+ result vectors"),
])
def test_link_failures_are_one_line_and_never_hang(mode, message):
    from hw.backends.serial import LinkError, Session
    board = FakeBoard(CFG, mode if mode != "wide" else "ok")
    board.start()
    try:
        with pytest.raises(LinkError, match=message) as e:
            # a short timeout where the failure is the timeout; elsewhere one a loaded machine keeps
            with Session(CFG, board.path, timeout={"mute": 0.5, "busy": 2}.get(mode, 10)) as s:
                board.mode = mode
                q, w = _problem(4)
                s.run(linear_program(CFG, q, w))
        assert "\n" not in str(e.value)
    finally:
        board.close()


def test_every_run_starts_from_reset():
    """A program that sets an error flag (a bad instruction) leaves nothing behind: the next one runs
    from reset (its error flags, counters and results are its own)."""
    from hw.backends.serial import Session
    from hw.isa import Instr, Op
    from hw.program import instr_is_valid
    from hw.sim import simulate
    bad = Instr(Op.LOAD_ACT, 0, 0)
    assert not instr_is_valid(CFG, bad)
    board = FakeBoard(CFG)
    board.start()
    try:
        with Session(CFG, board.path, timeout=10) as s:
            r0 = s.run(words=[bad.word], act_beats=np.zeros((0, CFG.lanes), np.int8),
                       wgt_beats=np.zeros((0, CFG.bus_bytes), np.uint8))
            assert r0.error == 1 and len(r0.outputs) == 0
            q, w = _problem(5)
            prog = linear_program(CFG, q, w)
            r1 = s.run(prog)
            assert r1.error == 0
            assert np.array_equal(outputs_to_matrix(CFG, r1.outputs, q.shape[0], w.shape[0]),
                                  reference_matmul(q, w))
            want = simulate(CFG, prog).counters
            assert {k: r1.counters[k] for k in ("busy", "act_beats", "wgt_beats")} == {
                k: want[k] for k in ("busy", "act_beats", "wgt_beats")}
        assert board.resets == 3    # on opening and before each program
    finally:
        board.close()


def test_a_bitstream_without_the_reset_request_is_one_line():
    from hw.backends.serial import LinkError, Session
    board = FakeBoard(CFG, "old")
    board.start()
    try:
        with pytest.raises(LinkError, match=r"the board does not know the reset request \(unknown frame "
                                            r"header\): a bitstream of an older tern"):
            Session(CFG, board.path, timeout=10)
    finally:
        board.close()


def test_a_board_of_another_configuration_is_one_line():
    from hw.backends.serial import LinkError, Session
    board = FakeBoard(CFG)
    board.config_id = _config_id(TernConfig(rows=4, lanes=4, acc_width=13, bus_bytes=2, act_depth=64,
                                        wgt_depth=16, out_depth=4))
    board.start()
    try:
        with pytest.raises(LinkError, match=r"the board was built for another configuration \(id 0x"):
            Session(CFG, board.path, timeout=10)
    finally:
        board.close()


@pytest.fixture
def serial_port():
    """The serial backend's port setting, restored afterwards."""
    from hw.backends import serial as backend
    saved = dict(backend._settings)
    yield backend.configure
    backend._settings.update(saved)


def test_verify_through_the_link(serial_port):
    """run_verify on the serial backend: every case from reset (70 of the first 200 cases of seed 0
    set an error flag, so a flag left over from an earlier case would be a mismatch), the timing-free
    counters compared with hw.sim's; a board whose results are off is caught."""
    from hw.verify.differential import run_verify
    board = FakeBoard(CFG)
    board.start()
    try:
        serial_port(board.path, timeout=10)
        r = run_verify("serial", 12, 0, CFG)
        assert r["programs"] == 12 and r["mismatches"] == 0 and r["cycle_mismatches"] == 0, r["first_failure"]
        assert r["bad_instructions"] > 0 and r["resets"] > 0
        board.mode = "flip"
        r = run_verify("serial", 12, 0, CFG)
        assert r["mismatches"] > 0
        assert "serial outputs differ from the integer reference" in r["first_failure"]["differences"]
    finally:
        board.close()


def test_verify_on_a_board_needs_its_configuration():
    from hw.backends import verify_backends
    from hw.verify.differential import VerifyError, run_verify
    assert "serial" in verify_backends()
    with pytest.raises(VerifyError, match="runs the configuration its board was built for"):
        run_verify("serial", 1, 0)


def test_verify_serial_bad_input_is_one_line_exit_2():
    flags = ("--rows", "2", "--lanes", "4")
    for args, msg in (((), "tern verify: --backend serial needs --port DEV (a board's serial device, or "
                           "the one tern board-sim prints)"),
                      (("--port", "/dev/null"), "tern verify: --backend serial needs the configuration "
                                                "flags the board was built with"),
                      (("--port", "/dev/null", "--mutants", *flags),
                       "tern verify: --backend serial runs random programs only (no --formal or --mutants)")):
        r = _tern("verify", "--backend", "serial", *args)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [msg] and r.stdout == ""


def _tern(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "sw.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_bad_serial_input_is_one_line_exit_2(tmp_path):
    r = _tern("demo", "--backend", "serial", "--problems", "1", "-q")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "tern demo: --backend serial needs --port DEV (a board's serial device, or the one tern "
        "board-sim prints)"]
    r = _tern("demo", "--backend", "serial", "--port", str(tmp_path / "nope"), "--problems", "1", "-q")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "serial port" in r.stderr and "nope" in r.stderr
    board = FakeBoard(CFG, "mute")
    board.start()
    try:
        r = _tern("demo", "--backend", "serial", "--port", board.path, "--baud", "9600", "--problems", "1",
                  "-q")
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "timeout" in r.stderr
    finally:
        board.close()


#: The simulated board: the iCEBreaker's default configuration (docs/FPGA.md), the smallest board
#: configuration (and, at 2 problems, fewer link bytes than the 2 x 4 or 4 x 4 arrays, which resend
#: every activation word to more row tiles)
BOARD = ("--rows", "4", "--lanes", "16", "--acc-width", "24", "--bus-bytes", "4", "--act-depth", "256",
         "--wgt-depth", "16", "--out-depth", "8")
BOARD_CFG = TernConfig(rows=4, lanes=16, acc_width=24, bus_bytes=4, act_depth=256, wgt_depth=16, out_depth=8)


def _first_line(proc, timeout):
    """The first line ``proc`` writes on stdout, or None when it exits or ``timeout`` s pass first."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        return proc.stdout.readline() if sel.select(timeout) else None
    finally:
        sel.close()


@pytest.fixture(scope="module")
def board_sim():
    """``tern board-sim`` (the board top under Verilator, built once into the build cache) serving
    the 4 x 16 board at the default divisor; stopped by SIGTERM at the end, which must end it cleanly
    (exit 0) and without a framing error on its lines."""
    sim = subprocess.Popen([sys.executable, "-m", "sw.cli", "board-sim", *BOARD], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(sim, 900)
        m = re.fullmatch(r"(/dev/\S+)\n", line or "")
        if m is None:
            sim.kill()
            pytest.fail(f"tern board-sim printed {line!r} first; stderr: {sim.communicate()[1][-2000:]}")
        yield m.group(1)
    finally:
        if sim.poll() is None:
            sim.terminate()
        try:
            _, err = sim.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            raise
    assert sim.returncode == 0, err
    assert "framing error" not in err and "serving on" in err, err


def test_demo_through_board_sim_matches_the_reference(board_sim):
    """tern demo --backend serial against tern board-sim: the tokens of the reference model (computed
    here, without any backend), the counters of hw.sim for the same programs."""
    import json

    from sw.driver.demo import run_demo
    r = _tern("demo", "--backend", "serial", "--port", board_sim, *BOARD, "--problems", "2", "--json", "-q",
              timeout=900)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ref = run_demo(n_problems=2, quiet=True)                  # the reference model alone
    sim = run_demo(n_problems=2, quiet=True, backend="sim", config=BOARD_CFG)
    assert ref["backend"] == "reference" and len(ref["tokens"]) == 2
    assert out["tokens"] == ref["tokens"] == sim["tokens"]
    assert out["match"] is True and out["backend"] == "serial"
    # the programs' own counters; the board's cycles include the time the core waits for the link
    assert out["calls"] == sim["calls"] == 70
    for k in ("busy", "wgt_beats"):
        assert out[k] == sim[k] > 0, k
    assert out["breakdown"].keys() == sim["breakdown"].keys()
    for kind, want in sim["breakdown"].items():
        for k in ("calls", "busy", "wgt_beats", "act_beats"):
            assert out["breakdown"][kind][k] == want[k], (kind, k)
    assert out["cycles"] > sim["cycles"]


def test_verify_through_board_sim(board_sim):
    """tern verify --backend serial against tern board-sim: random programs (bad instructions,
    invalid weight bytes, resets after an earlier program) on the board's gateware
    vs hw.sim vs the integer reference, each from the board's reset request."""
    import json
    r = _tern("verify", "--backend", "serial", "--port", board_sim, *BOARD, "--programs", "40", "--json",
              "-q", timeout=900)
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    out = json.loads(r.stdout)
    assert out["programs"] == 40 and out["mismatches"] == 0 and out["cycle_mismatches"] == 0
    # what the cases reached: error flags (cleared by each reset), invalid bytes, resets (the 24-bit
    # accumulators of this configuration do not wrap)
    for k in ("bad_instructions", "invalid_bytes", "resets"):
        assert out[k] > 0, k


def test_board_sim_bad_input_is_one_line_exit_2():
    for args, msg in ((("--divisor", "2"), "tern board-sim: --divisor must be at least 4, not 2"),
                      (("--baud", "115200"), "tern board-sim: --baud and --clock-mhz go together"),
                      (("--baud", "5000000", "--clock-mhz", "12"),
                       "tern board-sim: baud rate 5000000 is too high for a 12 MHz clock (needs at least "
                       "4 clock cycles per bit)")):
        r = _tern("board-sim", *args)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [msg] and r.stdout == ""
