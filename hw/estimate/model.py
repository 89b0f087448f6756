"""Per-token area / energy / speed estimate of a BitNet b1.58 model on a tern configuration.

The model is described by a :class:`ModelShape` (its projection shapes, layer count and the dimensions
the host's work depends on). One decoder layer's BitLinear projections (the model's real (N, K)
shapes) run through the cycle-accurate simulator (:func:`hw.sim.simulate`) for ``tokens`` tokens (1 =
one decode step). Every layer has the same shapes, so cycles and events of the whole model are those
of one layer times the number of layers. No timing and no event the estimate reads depends on the
activation and weight values, so the layer is timed without them (``simulate(..., values=False)``);
``estimate(..., values=True)`` runs it on random int8 activations and uniformly random ternary
weights with every result computed, and gives the same estimate (tested).

The whole token is counted: the core's projections (priced from the simulator's events), the host's
parts (:mod:`hw.estimate.host`: embedding, the LM head, the KV cache and attention at ``context``
positions, norms, activation quantization, the host's side of the host <-> core streams), every byte
either side moves at the chosen memory's energy per bit (:mod:`hw.estimate.memory`), and static
power (core leakage, memory background) times the token's time.

Time per token = the core's time + the host's memory time. The core's time is its cycles at
``clock_mhz`` in a second simulator run whose streams come from the DRAM model of :mod:`hw.dram` (the
chosen memory's bursts, banks and rows, refresh, and one channel shared by instructions, activations,
weights and results): a :class:`hw.timing.Timing` the RTL backends replay cycle-exactly. The host's
time is its bytes over the memory's sustainable bandwidth (``peak x`` the model's sequential-read
efficiency ``x channels``; the host and the core share the memory and run one after the other in
decode); the host's compute time is not modelled, so the host's time is a lower bound.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.config import DEFAULT_CLOCK_MHZ, TernConfig
from hw.estimate.area import area_estimate
from hw.estimate.energy import NODES, core_energy, energy_table
from hw.estimate.host import host_work
from hw.estimate.memory import DEFAULT_MEMORY, MEMORIES, get_memory

__all__ = ["EstimateError", "ModelShape", "estimate", "MAX_TOKENS", "MAX_CONTEXT", "DEFAULT_CONTEXT",
           "LEAKAGE_W_PER_MM2", "host_op_pj", "roofline_points", "DEFAULT_PREFILL_TOKENS"]

MAX_TOKENS = 4096
MAX_CONTEXT = 1 << 20
#: Positions in the KV cache by default: a 1024-token conversation (2b4t's window is 4096).
DEFAULT_CONTEXT = 1024

#: Core leakage power per mm^2 of the estimated area (logic + SRAM), W. An **assumption** (no source
#: checked; plausible range 0.01-0.1 W/mm^2 at either node, strongly dependent on the cell library,
#: threshold voltage and temperature).
LEAKAGE_W_PER_MM2 = {"45nm": 0.02, "7nm": 0.05}


class EstimateError(ValueError):
    """Bad input to the estimator (one line, names the bad value)."""


def _positive_int(model, what, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise EstimateError(f"model {model!r}: {what}={v!r} must be a positive integer")


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know of a model: the ``(name, N, K)`` shapes of one decoder layer's
    BitLinear projections (every layer has the same), the number of layers, and the dimensions of the
    host's work: ``vocab_size x hidden_size`` (embedding and LM head), ``num_heads``,
    ``num_kv_heads``, ``head_dim`` (attention and the KV cache), ``intermediate_size`` and
    ``sub_norms`` (the bitnet family's two extra RMSNorms per layer). ``name`` labels the result.

    ``tern estimate --model M`` builds it from the model's configuration (``demo``, a shape preset or
    a checkpoint folder)."""
    name: str
    projections: tuple
    layers: int
    vocab_size: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    sub_norms: bool = True

    def __post_init__(self):
        object.__setattr__(self, "projections", tuple((str(n), N, K) for n, N, K in self.projections))
        if not self.projections:
            raise EstimateError(f"model {self.name!r}: no projections")
        for n, N, K in self.projections:
            for what, v in (("N", N), ("K", K)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise EstimateError(f"model {self.name!r}: projection {n!r} has {what}={v!r}, "
                                        f"not a positive integer")
        for what in ("layers", "vocab_size", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size"):
            _positive_int(self.name, what, getattr(self, what))
        if not isinstance(self.sub_norms, bool):
            raise EstimateError(f"model {self.name!r}: sub_norms={self.sub_norms!r} must be a bool")


def host_op_pj(table) -> dict:
    """Energy of the host's arithmetic, pJ, **derived** from the node's per-operation table
    ([Hor14] / [BitNet23]): a MAC is a bf16 multiply (priced as the FP16 multiply: same multiplier
    class, an 8-bit mantissa is smaller) plus an FP32 accumulate; any other operation is one FP32
    multiply. Arithmetic only: a CPU's instruction fetch, decode, register file and cache accesses
    cost more than the arithmetic ([Hor14]), so the host's compute energy is a lower bound."""
    return {"mac": table.fp16_mul + table.fp32_add, "op": table.fp32_mul}


@dataclass(frozen=True)
class _LayerRun:
    cycles: int
    events: dict
    counters: dict


def _layer_run(config: TernConfig, tokens: int, shapes: tuple, seed: int, values: bool, timing=None):
    """One layer pass on the simulator (under ``timing``, default the ideal bus). ``values``: with
    random activations and weights (``seed``) and the datapath's values computed; else all-zero
    streams timed with ``simulate(..., values=False)``: the same cycles, transfers, counters and
    every event the estimate reads (none of them depends on a value; ``tests/test_estimate_model.py``
    checks the two give the same estimate)."""
    from hw.sim import simulate
    from hw.workloads import layer_streams
    try:
        streams, _ = layer_streams(config, tokens, list(shapes), np.random.default_rng(seed) if values else None)
    except ValueError as e:
        raise EstimateError(f"does not fit the configuration: {e}") from None
    res = simulate(config, timing=timing, words=streams.words, act_beats=streams.act_beats,
                   wgt_beats=streams.wgt_beats, values=values)
    if res.error:
        raise RuntimeError(f"simulated layer raised error flags {res.error}")  # a bug, not bad input
    return res


@functools.lru_cache(maxsize=16)
def _simulate_layer(config: TernConfig, tokens: int, shapes: tuple, seed: int, values: bool = False):
    """One layer pass on the ideal bus, cached: the memory, node, clock and context do not change it."""
    t0 = time.perf_counter()
    res = _layer_run(config, tokens, shapes, seed, values)
    # the demand of the last runs, for the memory model; the cache keeps only what the estimate
    # reads (a run's outputs and transfer cycles are large)
    cycles = {s: np.asarray(getattr(res, f"{s}_cycles")) for s in ("instr", "act", "wgt", "out")}
    _DEMAND[(config, tokens, shapes, seed, values)] = (cycles, {s: res.events["bus_bytes"][s] // max(1, len(c))
                                                                for s, c in cycles.items()})
    while len(_DEMAND) > 4:
        _DEMAND.pop(next(iter(_DEMAND)))
    return _LayerRun(res.cycles, res.events, dict(res.counters)), time.perf_counter() - t0


_DEMAND: dict = {}


def _ideal_demand(config: TernConfig, tokens: int, shapes: tuple, seed: int, values: bool):
    """The ideal-bus run's transfer cycles per stream (the program's demand order) and bytes per
    transfer, for :func:`_memory_layer`."""
    key = (config, tokens, shapes, seed, values)
    if key not in _DEMAND:
        _simulate_layer.__wrapped__(config, tokens, shapes, seed, values)
    return _DEMAND[key]


#: A folder shared by the processes of one study (``set_cache_dir``; None: no folder), where the
#: estimator keeps what it computed for a layer: each DRAM schedule under the digest of its inputs
#: (the ideal run's transfer cycles and bytes, the memory, clock and channels), so a configuration
#: whose ideal run is the same (a setting that changes no cycle of it) reuses it, and each DRAM-timed
#: layer pass under its configuration and run arguments (a point that differs only in the node
#: reuses it). Both are pure functions of their keys: a reused entry is the figure recomputed.
_CACHE_DIR = None


def set_cache_dir(path) -> None:
    """Keep (and reuse) DRAM schedules and DRAM-timed layer passes in folder ``path`` (None: off)."""
    global _CACHE_DIR
    _CACHE_DIR = None if path is None else Path(path)


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for x in parts:
        if isinstance(x, np.ndarray):
            h.update(str(x.dtype).encode() + str(x.shape).encode() + np.ascontiguousarray(x).tobytes())
        else:
            h.update(repr(x).encode())
        h.update(b"|")
    return h.hexdigest()[:40]


def _cached(kind: str, key: str, compute):
    """``compute()``, or what it returned for ``key`` in the cache folder (written atomically)."""
    if _CACHE_DIR is None:
        return compute()
    path = _CACHE_DIR / kind / f"{key}.pickle"
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    from hw.fileio import atomic_write_many
    atomic_write_many({path: lambda p: p.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))})
    return value


def _schedule(ideal: dict, item: dict, memory: str, clock_mhz: float, channels: int):
    """:func:`hw.dram.schedule_program` of one demand (shared through the cache folder)."""
    from hw.dram import schedule_program
    key = _digest("schedule", memory, clock_mhz, channels, sorted(item.items()),
                  *(np.asarray(ideal[s], dtype=np.int64) for s in ("instr", "act", "wgt", "out")))
    return _cached("dram", key, lambda: schedule_program(ideal, item, memory, clock_mhz=clock_mhz,
                                                         channels=channels))


@functools.lru_cache(maxsize=32)
def _memory_layer(config: TernConfig, tokens: int, shapes: tuple, seed: int, memory: str, clock_mhz: float,
                  channels: int, values: bool = False):
    """One layer pass on the simulator with its streams timed by the DRAM model (:mod:`hw.dram`):
    the run, the schedule's statistics and :func:`hw.dram.check_schedule`'s report, cached."""
    _simulate_layer(config, tokens, shapes, seed, values)   # shape errors as EstimateError, first
    t0 = time.perf_counter()

    def compute():
        from hw.dram import check_schedule
        ideal, item = _ideal_demand(config, tokens, shapes, seed, values)
        sched = _schedule(ideal, item, memory, clock_mhz, channels)
        res = _layer_run(config, tokens, shapes, seed, values, sched.timing)
        check = check_schedule(sched, res, item)
        return _LayerRun(res.cycles, res.events, dict(res.counters)), sched.stats, check

    key = _digest("layer", sorted(config.to_dict().items()), tokens, shapes, seed, values, memory, clock_mhz,
                  channels)
    run, stats, check = _cached("layer", key, compute)
    return run, stats, check, time.perf_counter() - t0


def _check_run_args(clock_mhz, tokens, memory, channels) -> None:
    """The checks :func:`estimate` and :func:`roofline_points` share: one :class:`EstimateError`
    naming the first bad value."""
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
            not math.isfinite(clock_mhz) or not 0 < clock_mhz <= 100_000:
        raise EstimateError(f"clock_mhz must be in (0, 100000], not {clock_mhz!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS:
        raise EstimateError(f"tokens must be an integer between 1 and {MAX_TOKENS}, not {tokens!r}")
    if not isinstance(memory, str) or memory.lower() not in MEMORIES:
        raise EstimateError(f"unknown memory {memory!r} (choose from {', '.join(MEMORIES)})")
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 1024:
        raise EstimateError(f"channels must be an integer between 1 and 1024, not {channels!r}")


def estimate(model: ModelShape, config: TernConfig | None = None, *, node: str = "7nm",
             clock_mhz: float = DEFAULT_CLOCK_MHZ, tokens: int = 1, context: int = DEFAULT_CONTEXT,
             memory: str = DEFAULT_MEMORY, channels: int = 1, dram_pj_per_bit: float | None = None,
             seed: int = 0, values: bool = False) -> dict:
    """Area, energy per token and tokens/s of ``model`` (a :class:`ModelShape`) on ``config``: the
    whole token (see the module's docstring).

    ``tokens``: tokens processed together per layer pass (1 = decode; T > 1 = a T-token prefill, the
    weights are streamed once per group of tokens that fits the activation buffer); ``context``:
    positions already in the KV cache; ``memory``: a technology of :data:`hw.estimate.memory.MEMORIES`,
    ``channels`` of it (channels or stacks); ``dram_pj_per_bit`` overrides its energy per bit.
    ``values=True`` also computes the layer's results on random activations and weights (``seed``)
    in both simulator runs: the same estimate (no figure depends on a value), slower.
    Returns the keys ``energy_per_token_j``, ``tokens_per_s``, ``area_mm2``, ``breakdown`` (joules per
    token by part, summing to ``energy_per_token_j``), ``memory``, ``bus_efficiency`` and details.
    """
    if not isinstance(model, ModelShape):
        raise TypeError(f"model must be a hw.estimate.ModelShape, not {model!r}")
    config = TernConfig() if config is None else config
    if not isinstance(config, TernConfig):
        raise TypeError(f"config must be a hw.config.TernConfig, not {config!r}")
    if node not in NODES:
        raise EstimateError(f"unknown process node {node!r} (choose from {', '.join(NODES)})")
    _check_run_args(clock_mhz, tokens, memory, channels)
    if isinstance(context, bool) or not isinstance(context, int) or not 0 <= context <= MAX_CONTEXT:
        raise EstimateError(f"context must be an integer between 0 and {MAX_CONTEXT}, not {context!r}")
    if dram_pj_per_bit is not None and (isinstance(dram_pj_per_bit, bool) or
                                        not isinstance(dram_pj_per_bit, (int, float)) or
                                        not math.isfinite(dram_pj_per_bit) or dram_pj_per_bit < 0):
        raise EstimateError(f"dram_pj_per_bit must be a non-negative number, not {dram_pj_per_bit!r}")
    mem = get_memory(memory)
    pj_bit = mem.pj_per_bit if dram_pj_per_bit is None else float(dram_pj_per_bit)
    shapes = model.projections
    layers = model.layers
    T = tokens
    try:
        ideal_run, sim_s = _simulate_layer(config, T, shapes, seed, bool(values))
        res, dram_stats, dram_check, mem_s = _memory_layer(config, T, shapes, seed, mem.name,
                                                           float(clock_mhz), channels, bool(values))
    except EstimateError as e:
        raise EstimateError(f"model {model.name!r} {e}") from None
    ev = res.events
    table = energy_table(node)

    # -- the core: the simulator's events, its streams at the memory's energy per bit
    layer_j = core_energy(ev, config, table, dram_pj_per_bit=pj_bit)
    breakdown = {k: v * layers / T for k, v in layer_j.items()}
    core_dynamic = sum(breakdown.values())
    core_bus_per_token = {k: v * layers / T for k, v in ev["bus_bytes"].items()}
    core_bytes = sum(core_bus_per_token.values())

    # -- the host: bytes at the memory's energy per bit, arithmetic at the derived host figures
    ops_pj = host_op_pj(table)
    host = host_work(model, context=context, tokens=T, core_bus_bytes_per_token=core_bus_per_token)
    for part, w in host.items():
        breakdown[part] = (w["bytes"] * 8 * pj_bit + w["macs"] * ops_pj["mac"] + w["ops"] * ops_pj["op"]) * 1e-12
    host_bytes = sum(w["bytes"] for w in host.values())

    # -- time: the core's cycles under the DRAM model, then the host's memory time
    peak = mem.bandwidth_gb_s * 1e9 * channels                                          # bytes / s
    sustainable = peak * mem.sustainable_efficiency                                     # bytes / s
    cycles = res.cycles * layers / T
    core_s = cycles / (clock_mhz * 1e6)
    host_s = host_bytes / sustainable
    token_s = core_s + host_s

    # -- static power x time
    area = area_estimate(config, node)
    static_core_w = LEAKAGE_W_PER_MM2[node] * area["area_mm2"]
    static_mem_w = mem.background_mw * 1e-3 * channels
    breakdown["static_core"] = static_core_w * token_s
    breakdown["static_memory"] = static_mem_w * token_s

    energy = sum(breakdown.values())
    mem_j = sum(v for k, v in breakdown.items() if k.startswith("dram_")) + host_bytes * 8 * pj_bit * 1e-12
    bus_rate = config.bus_bytes * clock_mhz * 1e6
    layer_s = res.cycles / (clock_mhz * 1e6)
    wgt_rate = ev["bus_bytes"]["wgt"] / layer_s                                         # bytes / s
    return {
        "model": model.name, "node": node, "clock_mhz": float(clock_mhz), "tokens": T, "context": context,
        "energy_per_token_j": energy,
        "tokens_per_s": 1 / token_s,
        "area_mm2": area["area_mm2"],
        "breakdown": breakdown,
        "parts": {
            "projections (core, dynamic)": core_dynamic,
            "lm_head (host)": breakdown["lm_head"],
            "embedding (host)": breakdown["embedding"],
            "attention + kv_cache (host)": breakdown["attention"] + breakdown["kv_cache"],
            "norms (host)": breakdown["norms"],
            "activation_quant (host)": breakdown["activation_quant"],
            "elementwise (host)": breakdown["elementwise"],
            "host_transfers (host side)": breakdown["host_transfers"],
            "static (core leakage + memory background)": breakdown["static_core"] + breakdown["static_memory"],
        },
        "memory": mem.as_dict() | {"pj_per_bit": pj_bit, "channels": channels,
                                   "pj_per_bit_source": mem.pj_per_bit_source if dram_pj_per_bit is None
                                   else "--dram-pj-per-bit (user override)",
                                   "pj_per_bit_kind": mem.pj_per_bit_kind if dram_pj_per_bit is None
                                   else "override",
                                   "sustainable_gb_s": sustainable / 1e9,
                                   "source": (mem.pj_per_bit_source if dram_pj_per_bit is None else
                                              "--dram-pj-per-bit (user override)")
                                   + f"; bandwidth: {mem.bandwidth_source}"},
        "bus_efficiency": wgt_rate / peak,
        "weight_stream_gb_s": wgt_rate / 1e9,
        "weight_stream_efficiency": wgt_rate / min(bus_rate, sustainable),
        "memory_bound": sustainable < bus_rate,
        "dram": {"model": "hw.dram (precomputed schedule, prefetch FIFOs; replayed by every backend)",
                 "sequential_efficiency": mem.sustainable_efficiency,
                 "ideal_bus_cycles_per_layer_pass": ideal_run.cycles,
                 "slowdown_vs_ideal_bus": res.cycles / ideal_run.cycles,
                 **dram_stats, **dram_check},
        "bytes_per_token": {"core": core_bytes, "host": host_bytes, "total": core_bytes + host_bytes},
        "memory_fraction": mem_j / energy,
        "dram_fraction": mem_j / energy,
        "core_energy_per_token_j": core_dynamic - sum(v for k, v in breakdown.items() if k.startswith("dram_")),
        "core_tokens_per_s": 1 / core_s,
        "time_per_token_s": {"core": core_s, "host": host_s, "total": token_s},
        "average_power_w": energy / token_s,
        "cycles_per_token": cycles,
        "cycles_per_layer_pass": res.cycles,
        "layers": layers,
        "projections": [{"name": n, "N": N, "K": K} for n, N, K in shapes],
        "weight_bytes_per_layer": ev["bus_bytes"]["wgt"],
        # from the unwrapped event counts: a configuration may build fewer, or narrower, counters
        "bus_utilization": ev["bus_bytes"]["wgt"] / config.bus_bytes / res.cycles,
        "pe_utilization": ev["pe_issues"] / res.cycles,
        "area_breakdown_mm2": area["breakdown_mm2"],
        "gate_equivalents": area["gate_equivalents"],
        "sram_bits": area["sram_bits"],
        "energy_table": table.as_dict() | {"dram_pj_per_bit": pj_bit},
        "host": {"runs": ["embedding", "lm_head", "kv_cache", "attention", "norms", "activation_quant",
                          "elementwise", "host_transfers"],
                 "lm_head_runs_on": "host",
                 "lm_head_params": model.vocab_size * model.hidden_size,
                 "work_per_token": host,
                 "pj_per_mac": ops_pj["mac"], "pj_per_op": ops_pj["op"],
                 "note": "host arithmetic is priced at the node's FP16 MUL + FP32 ADD per MAC and FP32 MUL "
                         "per other operation (derived, arithmetic only: a lower bound); the host's "
                         "compute time and its own static power are not modelled"},
        "static_w": {"core_leakage": static_core_w, "memory_background": static_mem_w,
                     "kind": "assumption"},
        "config": config.to_dict(),
        "sim_wall_s": round(sim_s, 3),
        "memory_model_wall_s": round(mem_s, 3),
    }


#: Tokens of the prefill points of :func:`roofline_points` when the estimate itself is a decode step.
DEFAULT_PREFILL_TOKENS = 128


def roofline_points(model: ModelShape, config: TernConfig | None = None, *,
                    clock_mhz: float = DEFAULT_CLOCK_MHZ, tokens: int = 1, memory: str = DEFAULT_MEMORY,
                    channels: int = 1, seed: int = 0) -> dict:
    """The roofline of ``config`` on ``memory`` and each of ``model``'s projections as a point, for
    decode (T = 1) and for prefill (T = ``tokens`` if it is above 1, else
    :data:`DEFAULT_PREFILL_TOKENS`).

    One operation is one ternary multiply-accumulate (one lane of one row for one token), so:

    * the compute roof is ``rows x lanes x clock`` operations/s (every lane busy every cycle);
    * the memory roof at intensity ``I`` is ``sustainable x I`` with ``sustainable = bandwidth x
      sustainable_efficiency x channels`` bytes/s (the DRAM model's sequential-read bandwidth);
    * a projection ``(N, K)`` run alone on the simulator for T tokens does ``N x K x T`` operations
      and moves ``bytes`` = the sum of its streams' bus bytes (weights, activations in, results out,
      instructions); its intensity is ``ops / bytes`` and its attained rate ``ops / time`` with
      ``time = max(cycles / clock, bytes / sustainable)``, the time :func:`estimate` gives the core.
    """
    config = TernConfig() if config is None else config
    _check_run_args(clock_mhz, tokens, memory, channels)
    mem = get_memory(memory)
    sustainable = mem.bandwidth_gb_s * 1e9 * mem.sustainable_efficiency * channels     # bytes / s
    clock_hz = clock_mhz * 1e6
    compute_roof = config.rows * config.lanes * clock_hz
    prefill = tokens if tokens > 1 else DEFAULT_PREFILL_TOKENS
    points = []
    for mode, T in (("decode", 1), ("prefill", prefill)):
        for shape in model.projections:
            name, N, K = shape
            try:
                res, _ = _simulate_layer(config, T, (shape,), seed)
            except EstimateError as e:
                raise EstimateError(f"model {model.name!r} {e}") from None
            ops = N * K * T
            nbytes = sum(res.events["bus_bytes"].values())
            cycle_s = res.cycles / clock_hz
            t = max(cycle_s, nbytes / sustainable)
            points.append({"name": name, "N": N, "K": K, "mode": mode, "tokens": T, "ops": ops,
                           "bytes": nbytes, "bus_bytes": dict(res.events["bus_bytes"]),
                           "cycles": res.cycles, "intensity": ops / nbytes, "time_s": t,
                           "attained_ops_s": ops / t, "memory_bound": nbytes / sustainable > cycle_s})
    return {"compute_roof_ops_s": compute_roof, "sustainable_bytes_s": sustainable,
            "ridge_intensity": compute_roof / sustainable, "prefill_tokens": prefill,
            "memory": mem.name, "channels": channels, "clock_mhz": float(clock_mhz), "points": points}
