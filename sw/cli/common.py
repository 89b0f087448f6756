"""Flag helpers shared by every ``tern`` command and by the ``bench/`` scripts.

* the accelerator configuration: one flag per :class:`hw.config.TernConfig` setting plus
  ``--config FILE.toml`` (flags override the file): :func:`add_config_flags`, :func:`config_from_args`;
* ``--json`` (:func:`add_json_flag`) and :func:`emit`, which prints one JSON object or the text report;
* ``--quick`` of the benchmarks (:func:`bench_parser`);
* the report's rich :func:`console` (a terminal's width; else no width limit and no colour, so a table
  is never cut) and the progress of a long command on stderr (:class:`Progress`, ``--quiet``:
  :func:`add_quiet_flag`);
* ``--backend`` from the one registry :data:`hw.backends.BACKENDS` and ``--clock-mhz`` with
  :data:`hw.config.DEFAULT_CLOCK_MHZ` (:func:`add_backend_flags`, :func:`check_backend`,
  :func:`check_clock`);
* :class:`UsageError`: bad input, reported by :func:`sw.cli.main` as one line with exit code 2.

This module imports only the standard library and ``hw.config`` at start-up, so that the command line
and the benchmarks start fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

from hw.config import DEFAULT_CLOCK_MHZ, TernConfig

__all__ = ["UsageError", "Parser", "CONFIG_FLAGS", "add_config_flags", "config_from_args",
           "config_flags_given", "add_json_flag", "add_backend_flags", "add_serial_flags", "configure_serial", "add_clock_flag", "add_accelerator_flags", "check_backend", "check_clock",
           "check_seed", "check_accelerator_args", "check_output_path", "device_failure", "emit", "print_json", "json_default", "bench_parser",
           "console", "REPORT_WIDTH", "Progress", "PROGRESS_SECONDS", "add_quiet_flag", "format_duration"]


class UsageError(ValueError):
    """Bad input from the command line; reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with exit code 2 (argparse prints the whole usage
    otherwise): it raises :class:`UsageError`."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


# -- accelerator configuration --------------------------------------------------------------------------

#: flag name (the TernConfig field with ``-`` for ``_``): (type, help)
CONFIG_FLAGS = {
    "rows": (int, "PE rows (output features in parallel)"),
    "lanes": (int, "int8 activation lanes per row (input features per cycle)"),
    "acc-width": (int, "accumulator width in bits"),
    "weight-format": (str, "weight stream format: 2bit or base3"),
    "bus-bytes": (int, "weight stream bytes per beat"),
    "act-depth": (int, "activation buffer depth in words"),
    "wgt-depth": (int, "weight buffer bank depth in words"),
    "out-depth": (int, "output FIFO depth in result vectors"),
    "tree-reg-every": (int, "adder-tree register every N levels (0: combinational)"),
    "dot-variant": (str, "dot unit micro-architecture (same results, different area)"),
    "perf-counters": (lambda s: tuple(n.strip() for n in s.split(",") if n.strip()),
                      "performance counters to build, comma-separated (cycles required)"),
    "perf-width": (int, "performance counter width in bits (16..64)"),
}


def _field(flag: str) -> str:
    return flag.replace("-", "_")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """``--config FILE.toml`` and one flag per configuration setting (all default to None: unset)."""
    g = p.add_argument_group("accelerator configuration")
    g.add_argument("--config", metavar="FILE.toml", help="read the configuration from a TOML file")
    for flag, (typ, help_) in CONFIG_FLAGS.items():
        g.add_argument(f"--{flag}", type=typ, default=None, help=help_)


def config_flags_given(args) -> bool:
    """Whether ``--config`` or any configuration flag was given."""
    return bool(args.config) or any(getattr(args, _field(f)) is not None for f in CONFIG_FLAGS)


def config_from_args(args, defaults: TernConfig | None = None) -> TernConfig:
    """The configuration named by ``--config`` (else ``defaults``, else ``TernConfig()``'s defaults)
    and the individual flags (flags win)."""
    if args.config:
        values = TernConfig.from_toml(args.config).to_dict()
    else:
        values = defaults.to_dict() if defaults is not None else {}
    for flag in CONFIG_FLAGS:
        v = getattr(args, _field(flag))
        if v is not None:
            values[_field(flag)] = v
    source = "--config/flags" if args.config or defaults is not None else "flags"
    return TernConfig.from_dict(values, source=source)


# -- output ----------------------------------------------------------------------------------------------

def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def json_default(o):
    """``json.dumps`` ``default``: numpy scalars and arrays, paths."""
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def print_json(result) -> None:
    """One JSON object on one line of stdout."""
    print(json.dumps(result, default=json_default))


def emit(args, result: dict, text: str | None) -> None:
    """``result`` as one JSON object with ``--json``, else ``text`` (if any)."""
    if args.json:
        print_json(result)
    elif text:
        print(text)


#: The width of a report written to a file or a pipe: wide enough for any table, so none is cut to fit.
REPORT_WIDTH = 10_000


def console(stderr: bool = False):
    """The rich Console of a command's report on stdout (``stderr``: on stderr). On a terminal it
    takes the terminal's width and colours; on a file or a pipe it has no colour and a width no table
    reaches (:data:`REPORT_WIDTH`): tables are printed whole, never cut to 80 columns with an ellipsis,
    and long lines are not wrapped."""
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    if _isatty(stream):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=REPORT_WIDTH, color_system=None, highlight=False, emoji=False)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def bench_parser(description: str, quick_help: str | None = None) -> argparse.ArgumentParser:
    """The parser of a ``bench/`` script with the two flags every benchmark has, ``--quick`` and
    ``--json`` (``tern bench`` passes them on)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    add_json_flag(p)
    return p


# -- accelerator backend ---------------------------------------------------------------------------------

def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """``--backend`` (a name of :data:`hw.backends.BACKENDS`, default sim) and ``--clock-mhz``."""
    from hw.backends import BACKENDS
    p.add_argument("--backend", default="sim",
                   help=f"accelerator backend: {', '.join(BACKENDS)} (default sim)")
    add_serial_flags(p)
    add_clock_flag(p)


def add_serial_flags(p: argparse.ArgumentParser) -> None:
    """``--port DEV`` and ``--baud N`` of ``--backend serial`` (:mod:`hw.backends.serial`)."""
    p.add_argument("--port", default=None, metavar="DEV",
                   help="serial device of the board for --backend serial (e.g. the path tern board-sim prints)")
    p.add_argument("--baud", type=int, default=None, metavar="N",
                   help="UART rate for --backend serial (default 115200)")


def configure_serial(cmd: str, args) -> None:
    """Hand ``--port``/``--baud`` to :mod:`hw.backends.serial` (every run of a command: no port
    carried over from an earlier one); ``--backend serial`` without ``--port`` is a UsageError."""
    if not hasattr(args, "port"):
        return
    from hw.backends import serial
    if args.baud is not None and args.baud <= 0:
        raise UsageError(f"tern {cmd}: --baud must be positive, not {args.baud}")
    serial.configure(args.port or "", baud=args.baud or serial.DEFAULT_BAUD)
    if getattr(args, "backend", None) == "serial" and not args.port:
        raise UsageError(f"tern {cmd}: --backend serial needs --port DEV (a board's serial device, or "
                         f"the one tern board-sim prints)")


def add_clock_flag(p: argparse.ArgumentParser, what: str = "clock of the modelled device for tokens/s") -> None:
    """``--clock-mhz`` (default :data:`hw.config.DEFAULT_CLOCK_MHZ`); check it with :func:`check_clock`."""
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"{what} (default {DEFAULT_CLOCK_MHZ:g})")


def add_accelerator_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a command that runs a model through the accelerator (``demo``, ``run``, ``layer``):
    ``--backend``, ``--clock-mhz``, ``--json`` and the configuration flags."""
    add_backend_flags(p)
    add_json_flag(p)
    add_config_flags(p)


def check_backend(cmd: str, name: str) -> str:
    """``name`` if it is a backend of this installation, else :class:`UsageError`."""
    from hw.backends import BACKENDS, BackendError, get_backend
    if name not in BACKENDS:
        raise UsageError(f"tern {cmd}: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    try:
        get_backend(name)
    except BackendError as e:
        raise UsageError(f"tern {cmd}: {e}") from None
    return name


def check_clock(cmd: str, mhz: float) -> float:
    if not math.isfinite(mhz) or not 0 < mhz <= 100_000:
        raise UsageError(f"tern {cmd}: --clock-mhz must be in (0, 100000], not {mhz:g}")
    return mhz


def check_seed(cmd: str, seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise UsageError(f"tern {cmd}: --seed must be between 0 and 2**63-1, not {seed}")
    return seed


def check_accelerator_args(cmd: str, args) -> None:
    """The checks of :func:`add_accelerator_flags`' values that a model run needs: ``--backend``,
    ``--clock-mhz`` and ``--seed`` (:class:`UsageError` on the first bad one)."""
    check_backend(cmd, args.backend)
    check_clock(cmd, args.clock_mhz)
    check_seed(cmd, args.seed)


def check_output_path(cmd: str, flag: str, path, suffix: str) -> Path:
    """The checked path of an output file (``flag`` names it in messages: ``--save``, ``output``):
    it must end in ``suffix`` and its folder must exist; a folder of that name is refused. Checked
    before any work starts, so bad input costs nothing and leaves nothing behind."""
    p = Path(path)
    if p.suffix != suffix:
        raise UsageError(f"tern {cmd}: {flag} file must end in {suffix}, not {p.name!r}")
    if not p.parent.is_dir():
        raise UsageError(f"tern {cmd}: {flag} folder {str(p.parent)!r} does not exist")
    if p.is_dir():
        raise UsageError(f"tern {cmd}: {flag} {str(p)!r} is a folder")
    return p


def device_failure(cmd: str, e: BaseException) -> int:
    """One line on stderr for a device that failed while running; exit code 1."""
    print(f"tern {cmd}: device failure: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
          file=sys.stderr)
    return 1


# -- progress --------------------------------------------------------------------------------------------

#: Seconds between two progress lines on a stderr that is not a terminal. The environment variable
#: ``TERN_PROGRESS_SECONDS`` overrides it (0: a line at the start, after every step and at the end).
PROGRESS_SECONDS = 5.0


def add_quiet_flag(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: no progress on stderr (:class:`Progress`)."""
    p.add_argument("-q", "--quiet", action="store_true", help="print no progress on stderr")


def format_duration(seconds: float) -> str:
    """``7 s``, ``2 min 05 s``, ``1 h 02 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _progress_seconds() -> float:
    v = os.environ.get("TERN_PROGRESS_SECONDS")
    if v is None:
        return PROGRESS_SECONDS
    try:
        x = float(v)
    except ValueError:
        raise UsageError(f"tern: TERN_PROGRESS_SECONDS must be a number of seconds, not {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise UsageError(f"tern: TERN_PROGRESS_SECONDS must be a number of seconds >= 0, not {v!r}")
    return x


class Progress:
    """The progress of one phase of a long command, on stderr; the one progress display of ``tern``.

    ``Progress(cmd, what, total, unit=...)`` is a context manager; the work reports with
    :meth:`update` ``(done, total=None)`` or :meth:`advance` ``(n=1)``, both usable as the driver's
    callbacks (``Accelerator.on_call``, ``run_verify(progress=...)``). ``total`` may be None (a phase
    whose size is not known: the elapsed time only).

    * ``quiet`` (``--quiet``): nothing;
    * stderr a terminal: a rich progress bar that disappears when the phase ends;
    * otherwise (a file, a pipe, a CI log): a plain line every :data:`PROGRESS_SECONDS` seconds
      (``TERN_PROGRESS_SECONDS``), also while a single step runs (a background timer), such as
      ``tern run: sim, 8 tokens: 112/1,680 projection calls (7%), 5 s elapsed, about 1 min 10 s left``,
      and, when any line was printed, a last one when the phase ends. A phase shorter than the interval
      prints nothing.
    """

    def __init__(self, cmd: str, what: str, total: int | None = None, *, unit: str = "steps",
                 quiet: bool = False, interval: float | None = None):
        self.prefix = f"tern {cmd}: {what}"
        self.total = total
        self.unit = unit
        self.done = 0
        self.quiet = quiet
        self.interval = _progress_seconds() if interval is None else interval
        self.lines = 0          # plain lines printed
        self._bar = self._task = None
        self._plain = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer = None

    # -- the work's callbacks --------------------------------------------------------------------------

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` units (``total`` None: unchanged)."""
        if total is not None:
            self.total = total
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total)
        elif self._plain:
            self._maybe_line()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    # -- display ---------------------------------------------------------------------------------------

    def __enter__(self):
        self._t0 = self._last = time.monotonic()
        if self.quiet:
            return self
        if _isatty(sys.stderr):
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console(stderr=True),
                            transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.prefix, total=self.total)
            return self
        self._plain = True
        if self.interval <= 0:
            self._line()
        else:
            self._timer = threading.Thread(target=self._tick, name="tern-progress", daemon=True)
            self._timer.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        if self._timer is not None:
            self._stop.set()
            self._timer.join()
        if self._plain and exc_type is None and (self.lines or self.interval <= 0):
            with self._lock:
                took = format_duration(time.monotonic() - self._t0)
                count = f"{self.done:,} {self.unit} " if self.total is not None else ""
                self._write(f"{self.prefix}: done, {count}in {took}")
        self._plain = False
        return False

    def _tick(self):
        while not self._stop.wait(min(self.interval, 1.0)):
            self._maybe_line()

    def _maybe_line(self):
        self._line(force=self.interval <= 0)

    def _line(self, force: bool = True):
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.interval:
                return
            elapsed = now - self._t0
            text = f"{self.prefix}: "
            if self.total:
                text += f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%), "
            text += f"{format_duration(elapsed)} elapsed"
            if self.total and 0 < self.done < self.total:
                text += f", about {format_duration(elapsed * (self.total - self.done) / self.done)} left"
            self._last = now
            self._write(text)

    def _write(self, text):
        self.lines += 1
        print(text, file=sys.stderr, flush=True)
