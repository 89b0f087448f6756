"""Design-space exploration (``tern sweep``): an Optuna multi-objective study over the accelerator
configuration, priced by :func:`hw.estimate.estimate`, executed on a Dask cluster.

* :mod:`sw.sweep.space`: the parameters a sweep may vary, the built-in space and TOML space files;
* :mod:`sw.sweep.study`: the study (samplers, constraints, deterministic batches, resume) and its
  outputs (Pareto set as JSON and CSV, a Pareto-front PNG, a table of the best points).
"""

from sw.sweep.space import BUILTIN_SPACE, PARAMETERS, SweepError, load_space, check_space
from sw.sweep.study import OBJECTIVES, SAMPLERS, run_sweep

__all__ = ["BUILTIN_SPACE", "PARAMETERS", "SweepError", "load_space", "check_space", "OBJECTIVES",
           "SAMPLERS", "run_sweep"]
