"""Area, energy-per-token and speed estimates for a tern core running a BitNet b1.58 model.

* :mod:`hw.estimate.energy` -- per-operation energy tables (45 nm, 7 nm) with their sources, and the
  energy of one :func:`hw.sim.simulate` run from its event counts (``res.events``) plus the off-chip
  DRAM traffic of its streams.
* :mod:`hw.estimate.area` -- area of a configuration: adders, registers (gate equivalents) and SRAM.
* :mod:`hw.estimate.memory` -- off-chip memory technologies (energy per bit, bandwidth, sustainable
  efficiency), every number with its source and kind.
* :mod:`hw.estimate.host` -- the host's share of a token (LM head, attention and KV cache, norms, ...)
  in bytes and operations.
* :mod:`hw.estimate.model` -- the per-token estimate of a model described by a :class:`ModelShape`
  (what ``tern estimate --model M`` runs).

The model, its constants and their sources are documented in ``docs/ESTIMATE.md``.
"""

from hw.estimate.area import area_estimate
from hw.estimate.energy import NODES, EnergyTable, core_energy, energy_table, paper_matmul_energy_pj
from hw.estimate.memory import DEFAULT_MEMORY, MEMORIES, Memory, get_memory
from hw.estimate.model import EstimateError, ModelShape, estimate

__all__ = ["NODES", "EnergyTable", "energy_table", "core_energy", "paper_matmul_energy_pj",
           "area_estimate", "estimate", "EstimateError", "ModelShape", "MEMORIES", "DEFAULT_MEMORY",
           "Memory", "get_memory"]
