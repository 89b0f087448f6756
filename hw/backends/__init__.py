"""Backends: everything that runs a tern core program and returns a :class:`hw.result.RunResult`.

    from hw.backends import get_backend
    res = get_backend("sim").run(config, program, timing)       # or "amaranth", "verilator"

One registry, :data:`BACKENDS`, serves the driver (``sw.driver.runtime``), random differential
verification (:mod:`hw.verify.differential`) and the command line. Each backend lives in its own
module, imported on first use, that defines

* ``run(config, program=None, timing=None, *, words=None, act_beats=None, wgt_beats=None,
  max_cycles=None) -> RunResult``, replaying ``timing`` (:class:`hw.timing.Timing`) exactly;
* optionally ``run_batch(cases) -> list[RunResult]`` (many :class:`hw.verify.generate.Case` s per
  simulator start) and ``Session(config)`` (one simulator kept running for dependent calls).

Every backend returns the same fields for the same inputs: bit-exact outputs, and on the RTL
backends the same cycle of every transfer as the cycle-accurate simulator.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Callable

__all__ = ["Backend", "BACKENDS", "SessionBase", "BackendError", "BackendUnavailable", "get_backend", "rtl_backends",
           "verify_backends"]


class BackendError(ValueError):
    """An unknown backend name, or a backend that cannot run this configuration."""


class BackendUnavailable(BackendError):
    """A known backend whose implementation is missing from this installation."""


class SessionBase(contextlib.AbstractContextManager):
    """What every backend session is: ``run(program, timing, **streams)``, ``close()`` (idempotent),
    ``closed``, and a context manager (``with``) that closes it on exit."""

    closed = False

    def close(self):
        self.closed = True

    def __exit__(self, *exc):
        self.close()


class _OneShotSession(SessionBase):
    """The session of a backend without one of its own: every :meth:`run` is an independent run."""

    def __init__(self, backend: "Backend", config):
        self.backend, self.config = backend, config

    def run(self, program=None, timing=None, **streams):
        return self.backend.run(self.config, program, timing, **streams)


class Backend:
    """One registered backend.

    Parameters
    ----------
    name : str
        Registry name (``tern ... --backend NAME``).
    module : str, optional
        The implementing module (imported on first use).
    rtl : bool
        Whether it runs the RTL (a target of random differential verification against hw.sim).
    board : bool
        Whether it runs on a board built for one configuration, over a link that sets the pace: a
        target of random differential verification on that configuration for the outputs, error
        flags and the counters that do not depend on stream timing.
    description : str
        One line for ``--help``.
    run : callable, optional
        ``run(config, program, timing, **streams)`` used instead of ``module.run`` (test doubles).
    """

    def __init__(self, name: str, module: str | None = None, *, rtl: bool, board: bool = False,
                 description: str = "", run: Callable | None = None):
        if module is None and run is None:
            raise ValueError(f"backend {name!r}: give its module or a run function")
        self.name, self.module, self.rtl, self.description = name, module, rtl, description
        self.board = board
        self._run = run

    def impl(self):
        """The implementing module; :class:`BackendUnavailable` when it is not installed."""
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name == self.module:
                raise BackendUnavailable(f"backend {self.name!r} needs {self.module}, which is not in "
                                         f"this installation") from None
            raise

    def run(self, config, program=None, timing=None, **streams):
        """Run one program from reset (see the module docstring)."""
        if self._run is not None:
            return self._run(config, program, timing, **streams)
        return self.impl().run(config, program, timing, **streams)

    @property
    def batched(self) -> bool:
        """Whether :meth:`run_batch` runs many cases per simulator start."""
        return self._run is None and hasattr(self.impl(), "run_batch")

    def run_batch(self, cases) -> list:
        """Results of many :class:`hw.verify.generate.Case` s, in order (one simulator start per
        configuration where the backend is :attr:`batched`, one run per case otherwise)."""
        if self.batched:
            return self.impl().run_batch(cases)
        return [self.run(c.config, c.program, c.timing) for c in cases]

    def session(self, config):
        """An object with ``run(program, timing, **streams)``, ``close()`` and ``closed`` that runs
        dependent calls on ``config``; a simulator kept running where the backend has one."""
        session_cls = None if self._run is not None else getattr(self.impl(), "Session", None)
        return _OneShotSession(self, config) if session_cls is None else session_cls(config)

    def __repr__(self):
        return f"Backend({self.name!r}, {self.module!r}, rtl={self.rtl})"


#: Every backend by name, in the order the command line lists them.
BACKENDS: dict[str, Backend] = {
    "sim": Backend("sim", "hw.backends.sim", rtl=False,
                   description="the cycle-accurate Python simulator (hw.sim)"),
    "amaranth": Backend("amaranth", "hw.backends.amaranth", rtl=True,
                        description="the RTL under Amaranth's simulator (small configurations)"),
    "verilator": Backend("verilator", "hw.backends.verilator", rtl=True,
                         description="the RTL's Verilog compiled by Verilator, driven by cocotb"),
    "serial": Backend("serial", "hw.backends.serial", rtl=False, board=True,
                      description="a board (or tern board-sim) over its UART link: --port DEV [--baud N]"),
}


def get_backend(name: str) -> Backend:
    """The backend ``name`` with its implementation loaded: :class:`BackendError` for an unknown
    name, :class:`BackendUnavailable` when its implementation is not installed."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    b = BACKENDS[name]
    if b._run is None:
        b.impl()
    return b


def rtl_backends() -> list[str]:
    """Names of the backends that run the RTL."""
    return [n for n, b in BACKENDS.items() if b.rtl]


def verify_backends() -> list[str]:
    """Names of the targets of random differential verification: the RTL backends and the boards."""
    return [n for n, b in BACKENDS.items() if b.rtl or b.board]
