"""Shared helpers of the cocotb testbenches in ``tests/cocotb``.

* :func:`build_component` converts an Amaranth component to Verilog and builds it with Verilator
  (one hashed build folder per parametrization, reused while the Verilog is unchanged, locked against
  concurrent pytest-xdist workers: :func:`hw.flows.cocotb.build`).
* :func:`run_tb` runs one of the cocotb modules beside this file (``tb_*.py``) with a JSON stimulus
  and returns what it observed (:func:`hw.flows.cocotb.run_bench`).
* :func:`seed` gives a test's seed: ``$TERN_SEED`` when set (to replay a failure), else the default;
  every randomized assertion message names it.

Port values travel as integers, packed and unpacked through the ports' layouts by
:func:`hw.backends.common.pack_payloads` / :func:`hw.backends.common.unpack_payloads`; streams are
driven by :mod:`hw.backends.drive`.

Waveforms: ``TERN_WAVES=1 python -m pytest tests/cocotb/... -k ...`` (see docs/VERIFICATION.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from hw.flows.cocotb import build, run_bench

HERE = Path(__file__).resolve().parent


def build_component(component, name: str, *, waves: bool | None = None):
    from amaranth.back import verilog
    text = verilog.convert(component, name=name, emit_src=False)
    return build(text, name, name, waves=waves)


def run_tb(result, module: str, stimulus: dict, *, label: str = "") -> dict:
    return run_bench(result, module, stimulus, module_dir=HERE, label=label)


def seed(default: int) -> int:
    env = os.environ.get("TERN_SEED", "").strip()
    return int(env) if env else default


def replay_hint(seed_value: int, nodeid: str = "") -> str:
    where = f" {nodeid}" if nodeid else ""
    return f"seed={seed_value} (replay: TERN_SEED={seed_value} python -m pytest{where})"
