"""Runtime: run compiled projections on a backend and account for every cycle (``docs/DRIVER.md``).

    acc = Accelerator(TernConfig(), backend="sim")       # or "amaranth", "verilator"
    D = acc.linear(q, T)                                  # int8 (tokens, K), ternary (N, K) -> int64 (tokens, N)
    with model.using_core(acc.core): ...                  # every BitLinear of a model through the device
    acc.stats                                             # cycles, utilization, bus utilization, ...

Every call compiles the weights once (:class:`sw.driver.compiler.WeightCache`), builds one program
(all K chunks and token groups of the call, then SYNC), runs it from reset on the backend, checks that
the device reported no error and returned every result vector, adds the chunks' partial sums on the
host in int64, and appends a :class:`CallRecord` (cycles and the eight performance counters) to
``acc.records``.

Backends come from the one registry, :data:`hw.backends.BACKENDS`: ``sim`` (:func:`hw.sim.simulate`,
the default), ``amaranth`` (the RTL under Amaranth's simulator: small configurations and models only)
and ``verilator`` (the Verilated core). Each :class:`Accelerator` opens one session of its backend on
its first call and runs every later call in it (for ``verilator`` one simulator process, so its
start-up is paid once); :meth:`Accelerator.close` or interpreter exit ends it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hw.backends import BACKENDS, BackendError, BackendUnavailable, get_backend
from hw.config import DEFAULT_CLOCK_MHZ, TernConfig
from hw.result import PERF_COUNTERS
from sw.driver.compiler import CompiledLinear, CompileError, WeightCache
from sw.driver.report import summarize

__all__ = ["Accelerator", "BACKENDS", "BackendError", "BackendUnavailable", "DeviceError", "CallRecord",
           "get_backend", "projection_kind", "DEFAULT_CLOCK_MHZ"]


class DeviceError(RuntimeError):
    """The device (simulator or RTL) flagged an error or returned the wrong number of results."""


_LAYER_RE = re.compile(r"layers\.(\d+)\.")


def projection_kind(name: str) -> str:
    """``"q_proj"`` for ``model.layers.3.self_attn.q_proj`` (the last dotted component)."""
    return name.rsplit(".", 1)[-1] if name else "linear"


@dataclass
class CallRecord:
    """One call: the projection's name, kind and layer (-1 if unknown), shape, the device's cycles and
    counters, the program's size and ``wall_s``, the host wall time of the backend's run of the program
    (the session's start on its first call included; compiling, program building and result assembly
    not)."""
    name: str
    kind: str
    layer: int
    tokens: int
    N: int
    K: int
    chunks: int
    groups: int
    cycles: int
    counters: dict
    instructions: int
    wall_s: float
    step: int = 0   # generation step (forward pass) the call belongs to, set by the caller
    cpu_s: float = 0.0   # CPU seconds of this process in the same span as wall_s (all its threads)

    @property
    def busy(self) -> int | None:
        return self.counters.get("busy")

    @property
    def wgt_beats(self) -> int | None:
        return self.counters.get("wgt_beats")


@dataclass
class _Totals:
    calls: int = 0
    cycles: int = 0
    counters: dict = field(default_factory=lambda: dict.fromkeys(PERF_COUNTERS, 0))


class Accelerator:
    """The tern core behind one API, on a backend.

    Parameters
    ----------
    config : TernConfig
        The accelerator configuration (default: ``TernConfig()``).
    backend : str
        ``"sim"`` (default), ``"amaranth"`` or ``"verilator"``.
    timing : hw.timing.Timing, optional
        Stream timing for every run (default: ideal streams).
    cache : WeightCache, optional
        Compiled-weight cache (default: a new one per accelerator).
    clock_mhz : float
        Clock of the modelled device, for tokens/s and seconds in :attr:`stats`.
    on_call : callable, optional
        Called with each :class:`CallRecord` (progress bars).
    """

    def __init__(self, config: TernConfig | None = None, backend: str = "sim", timing=None, *,
                 cache: WeightCache | None = None, clock_mhz: float = DEFAULT_CLOCK_MHZ,
                 on_call: Callable | None = None, max_words: int | None = None):
        config = TernConfig() if config is None else config
        if not isinstance(config, TernConfig):
            raise TypeError(f"Accelerator: config must be a hw.config.TernConfig, not {config!r}")
        self.config = config
        self._backend = get_backend(backend)
        self.backend = backend
        self._session = None
        if timing is not None:
            from hw.timing import Timing
            if not isinstance(timing, Timing):
                raise TypeError(f"Accelerator: timing must be a hw.timing.Timing, not {timing!r}")
        self.timing = timing
        self.cache = cache if cache is not None else WeightCache()
        if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
                not np.isfinite(clock_mhz) or not 0 < clock_mhz <= 100_000:
            raise ValueError(f"clock_mhz={clock_mhz!r} must be a number in (0, 100000]")
        self.clock_mhz = float(clock_mhz)
        self.on_call = on_call
        self.max_words = max_words
        self.records: list[CallRecord] = []
        self.step = 0
        self.generated_tokens = 0

    @property
    def name(self) -> str:
        return self.backend

    def _run(self, prog):
        """Run one call's program in the backend's session (started by the first call)."""
        if self._session is None or self._session.closed:
            self._session = self._backend.session(self.config)
        return self._session.run(None, self.timing, words=prog.words, act_beats=prog.act_beats,
                                 wgt_beats=prog.wgt_beats)

    def close(self):
        """End the backend's session, if any (the ``verilator`` simulator process; a later call
        starts a new one). Also done at interpreter exit."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reset_stats(self):
        self.records.clear()
        self.step = 0
        self.generated_tokens = 0

    # -- compute --------------------------------------------------------------------------------------

    def compile(self, T, name: str = "") -> CompiledLinear:
        """The compiled form of the weights ``T`` (cached)."""
        return self.cache.get(self.config, T, name=name, max_words=self.max_words)

    def run_compiled(self, comp: CompiledLinear, q, name: str = "") -> np.ndarray:
        """Run ``comp`` on the activations ``q`` (tokens, K); returns ``D`` int64 (tokens, N)."""
        prog = comp.program(q)
        t0, c0 = time.perf_counter(), time.process_time()
        res = self._run(prog)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        label = name or comp.name or "projection"
        if res.error:
            raise DeviceError(f"{label}: the {self.backend} device raised error flags {res.error} "
                              f"(bit 0: bad instruction, bit 1: invalid weight byte)")
        D = comp.assemble(prog, res.outputs)
        m = _LAYER_RE.search(label)
        rec = CallRecord(name=label, kind=projection_kind(label), layer=int(m.group(1)) if m else -1,
                         tokens=prog.tokens, N=comp.N, K=comp.K, chunks=len(comp.chunks),
                         groups=len(prog.segments), cycles=int(res.cycles),
                         counters={k: int(v) for k, v in res.counters.items()},
                         instructions=len(prog.words), wall_s=wall, step=self.step, cpu_s=cpu)
        self.records.append(rec)
        if self.on_call is not None:
            self.on_call(rec)
        return D

    def linear(self, q, T, name: str = ""):
        """``D = q @ T^T`` on the device: ``q`` int8 (tokens, K), ``T`` ternary (N, K), numpy arrays or
        torch tensors. Returns int64 ``D`` (tokens, N) of the same kind (torch in, torch out)."""
        is_torch = _is_torch(q)
        qn = q.detach().cpu().numpy() if is_torch else np.asarray(q)
        comp = self.compile(T, name)
        if qn.ndim != 2 or qn.shape[1] != comp.K:
            raise CompileError(f"{name or 'projection'}: activations of shape {qn.shape} do not match "
                               f"weights (N={comp.N}, K={comp.K})")
        D = self.run_compiled(comp, qn, name)
        if is_torch:
            import torch
            return torch.from_numpy(D)
        return D

    def core(self, q, T, linear=None):
        """The BitLinear integer-core hook: ``core(q int8 (tokens, K), T int8 (N, K), linear) -> D``."""
        return self.linear(q, T, getattr(linear, "name", "") or "")

    # -- statistics ---------------------------------------------------------------------------------------

    def totals(self, records=None) -> dict:
        recs = self.records if records is None else records
        c = dict.fromkeys(PERF_COUNTERS, 0)
        for r in recs:
            for k in PERF_COUNTERS:
                # a counter the configuration does not have is None in the totals
                c[k] = c[k] + r.counters[k] if k in r.counters and c[k] is not None else None
        return c

    @property
    def stats(self) -> dict:
        """Figures of every call since the last :meth:`reset_stats` (see :func:`sw.driver.report.summarize`)."""
        return self.summary()

    def summary(self, records=None, generated_tokens: int | None = None) -> dict:
        """The figures of :attr:`stats` over ``records`` (default: every call since the last
        :meth:`reset_stats`), e.g. one run of a layer out of several (:func:`sw.driver.models.layer_check`)."""
        recs = self.records if records is None else list(records)
        tokens = self.generated_tokens if generated_tokens is None else generated_tokens
        return summarize(recs, self.config, clock_mhz=self.clock_mhz, generated_tokens=tokens,
                         backend=self.backend)


def _is_torch(x) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, torch.Tensor)
