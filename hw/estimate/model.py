"""Per-token area / energy / speed estimate of a BitNet b1.58 model on a tern configuration.

The model is described by a :class:`ModelShape` (its projection shapes and layer count). One decoder
layer's BitLinear projections (the model's real (N, K) shapes, random int8 activations and uniformly
random ternary weights) run through the cycle-accurate simulator (:func:`hw.sim.simulate`) for
``tokens`` tokens (1 = one decode step). Every layer has the same shapes, so cycles and events of the
whole model are those of one layer times the number of layers.

What is on the accelerator and what is not: the tern core runs the BitLinear projections only. The
embedding lookup, RMSNorms, RoPE, attention scores and softmax over the KV cache, the activation
functions, the per-tensor scaling epilogue and the LM head run on the host and are **not** in
``energy_per_token_j`` or ``tokens_per_s``. The LM head is not quantized in BitNet b1.58 (a float
``vocab x hidden`` matrix), so it is not a ternary workload; its size is reported under
``host.lm_head_params`` so a reader can add a host cost of their choosing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from hw.config import DEFAULT_CLOCK_MHZ, TernConfig
from hw.estimate.area import area_estimate
from hw.estimate.energy import NODES, core_energy, energy_table

__all__ = ["EstimateError", "ModelShape", "estimate", "MAX_TOKENS"]

MAX_TOKENS = 4096


class EstimateError(ValueError):
    """Bad input to the estimator (one line, names the bad value)."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know of a model: the ``(name, N, K)`` shapes of one decoder layer's
    BitLinear projections (every layer has the same), the number of layers, and the LM head's size
    (``vocab_size x hidden_size``, reported as host work). ``name`` labels the result.

    ``tern estimate --model M`` builds it from the model's configuration (``demo``, a shape preset or
    a checkpoint folder)."""
    name: str
    projections: tuple
    layers: int
    vocab_size: int
    hidden_size: int

    def __post_init__(self):
        object.__setattr__(self, "projections", tuple((str(n), N, K) for n, N, K in self.projections))
        if not self.projections:
            raise EstimateError(f"model {self.name!r}: no projections")
        for n, N, K in self.projections:
            for what, v in (("N", N), ("K", K)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise EstimateError(f"model {self.name!r}: projection {n!r} has {what}={v!r}, "
                                        f"not a positive integer")
        for what in ("layers", "vocab_size", "hidden_size"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise EstimateError(f"model {self.name!r}: {what}={v!r} must be a positive integer")


def estimate(model: ModelShape, config: TernConfig | None = None, *, node: str = "7nm",
             clock_mhz: float = DEFAULT_CLOCK_MHZ, tokens: int = 1, dram_pj_per_bit: float | None = None,
             seed: int = 0) -> dict:
    """Area, energy per token and tokens/s of ``model`` (a :class:`ModelShape`) on ``config``.

    ``tokens``: tokens processed together per layer pass (1 = decode; T > 1 = a T-token prefill, the
    weights are streamed once per group of tokens that fits the activation buffer). Energy per token
    is the energy of the pass divided by ``tokens``; tokens/s is ``tokens * clock / cycles``.
    Returns the keys ``energy_per_token_j``, ``tokens_per_s``, ``area_mm2``, ``breakdown``
    (joules per token by component) and details.
    """
    from hw.sim import simulate
    from hw.workloads import layer_streams

    if not isinstance(model, ModelShape):
        raise TypeError(f"model must be a hw.estimate.ModelShape, not {model!r}")
    config = TernConfig() if config is None else config
    if not isinstance(config, TernConfig):
        raise TypeError(f"config must be a hw.config.TernConfig, not {config!r}")
    if node not in NODES:
        raise EstimateError(f"unknown process node {node!r} (choose from {', '.join(NODES)})")
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
            not math.isfinite(clock_mhz) or not 0 < clock_mhz <= 100_000:
        raise EstimateError(f"clock_mhz must be in (0, 100000], not {clock_mhz!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS:
        raise EstimateError(f"tokens must be an integer between 1 and {MAX_TOKENS}, not {tokens!r}")
    if dram_pj_per_bit is not None and (not math.isfinite(dram_pj_per_bit) or dram_pj_per_bit < 0):
        raise EstimateError(f"dram_pj_per_bit must be a non-negative number, not {dram_pj_per_bit!r}")
    shapes = list(model.projections)
    layers = model.layers

    t0 = time.perf_counter()
    try:
        streams, _ = layer_streams(config, tokens, shapes, np.random.default_rng(seed))
    except ValueError as e:
        raise EstimateError(f"model {model.name!r} does not fit the configuration: {e}") from None
    res = simulate(config, words=streams.words, act_beats=streams.act_beats, wgt_beats=streams.wgt_beats)
    sim_s = time.perf_counter() - t0
    if res.error:
        raise RuntimeError(f"simulated layer raised error flags {res.error}")  # a bug, not bad input
    ev = res.events

    table = energy_table(node)
    layer_j = core_energy(ev, config, table, dram_pj_per_bit=dram_pj_per_bit)
    per_token = {k: v * layers / tokens for k, v in layer_j.items()}
    energy = sum(per_token.values())
    dram = sum(v for k, v in per_token.items() if k.startswith("dram_"))
    cycles = res.cycles * layers
    tokens_per_s = tokens * clock_mhz * 1e6 / cycles
    area = area_estimate(config, node)
    power_w = energy * tokens_per_s
    return {
        "model": model.name, "node": node, "clock_mhz": float(clock_mhz), "tokens": tokens,
        "energy_per_token_j": energy,
        "tokens_per_s": tokens_per_s,
        "area_mm2": area["area_mm2"],
        "breakdown": per_token,
        "dram_fraction": dram / energy,
        "core_energy_per_token_j": energy - dram,
        "average_power_w": power_w,
        "cycles_per_token": cycles / tokens,
        "cycles_per_layer_pass": res.cycles,
        "layers": layers,
        "projections": [{"name": n, "N": N, "K": K} for n, N, K in shapes],
        "weight_bytes_per_layer": ev["bus_bytes"]["wgt"],
        "bus_utilization": res.counters["wgt_beats"] / res.cycles,
        "pe_utilization": res.counters["busy"] / res.cycles,
        "area_breakdown_mm2": area["breakdown_mm2"],
        "gate_equivalents": area["gate_equivalents"],
        "sram_bits": area["sram_bits"],
        "energy_table": table.as_dict() | ({"dram_pj_per_bit": float(dram_pj_per_bit)}
                                           if dram_pj_per_bit is not None else {}),
        "host": {"lm_head_params": model.vocab_size * model.hidden_size,
                 "note": "embeddings, norms, attention over the KV cache, activation functions, "
                         "scaling epilogue and the (unquantized) LM head run on the host and are "
                         "not included"},
        "config": config.to_dict(),
        "sim_wall_s": round(sim_s, 3),
    }
