"""The tern driver: compiler (tiling, K-split with an accumulator proof, weight packing, programs) and
runtime (backends ``sim``, ``amaranth``, ``verilator``; statistics), whole layers and models through
the accelerator, reports, and the demo model through a backend (:mod:`sw.driver.demo`). See
``docs/DRIVER.md``.

Names are imported lazily (``from sw.driver import Accelerator``) so that the command line starts fast.
"""

import importlib

_EXPORTS = {
    "sw.driver.compiler": ("CompiledLinear", "CompileError", "OverflowProofError", "WeightCache",
                           "compile_linear", "prove_no_overflow"),
    "sw.driver.runtime": ("Accelerator", "BACKENDS", "BackendError", "BackendUnavailable", "DeviceError"),
    "sw.driver.models": ("DriverBackend", "generate", "layer_check", "load_layer", "load_model"),
    "sw.driver.demo": ("run_demo",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'sw.driver' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
