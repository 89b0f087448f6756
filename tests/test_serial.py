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
    (result frames one byte too long: a board of another configuration)."""

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

    def _byte(self):
        while True:
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
        idle = 0
        try:
            res = simulate(self.cfg, None, words=self.words, act_beats=np.array(self.act, dtype=np.int8).reshape(-1, self.cfg.lanes),
                           wgt_beats=np.array(self.wgt, dtype=np.uint8).reshape(-1, self.cfg.bus_bytes))
        except Exception:   # the program so far cannot finish yet: the core is busy
            res = None
        if res is not None:
            idle = 1 << 2
            rb = -(-self.cfg.acc_width // 8)
            for vec in res.outputs[self.sent:]:
                frame = b"R" + b"".join(int(v).to_bytes(rb, "little", signed=True) for v in vec)
                out += frame + (b"\x00" if self.mode == "wide" else b"")
            self.sent = len(res.outputs)
            self.counters = res.counters
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
                elif h == ord("C") and self.mode != "mute":
                    cb = -(-self.cfg.perf_width // 8)
                    os.write(self.master, b"C" + b"".join(
                        int(self.counters[k]).to_bytes(cb, "little") for k in self.cfg.perf_counters))
        except OSError:
            return

    def close(self):
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
        with Session(CFG, board.path, baud=115200, timeout=5) as s:
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
    lens = {ord("I"): 8, ord("A"): CFG.lanes, ord("W"): CFG.bus_bytes, ord("C"): 0, ord("Q"): 0}
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
])
def test_link_failures_are_one_line_and_never_hang(mode, message):
    from hw.backends.serial import LinkError, Session
    board = FakeBoard(CFG, mode if mode != "wide" else "ok")
    board.start()
    try:
        with pytest.raises(LinkError, match=message):
            with Session(CFG, board.path, timeout=0.5) as s:
                board.mode = mode
                q, w = _problem(4)
                s.run(linear_program(CFG, q, w))
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
            Session(CFG, board.path, timeout=2)
    finally:
        board.close()


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


def test_board_sim_bad_input_is_one_line_exit_2():
    for args, msg in ((("--divisor", "2"), "tern board-sim: --divisor must be at least 4, not 2"),
                      (("--baud", "115200"), "tern board-sim: --baud and --clock-mhz go together"),
                      (("--baud", "5000000", "--clock-mhz", "12"),
                       "tern board-sim: baud rate 5000000 is too high for a 12 MHz clock (needs at least "
                       "4 clock cycles per bit)")):
        r = _tern("board-sim", *args)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [msg] and r.stdout == ""
