"""Verilog export of the tern core (``tern rtl -o OUT.v``).

:func:`write_verilog` elaborates :class:`hw.rtl.top.TernCore` for a configuration, writes its Verilog to
``path`` and a JSON sidecar ``path.with_suffix('.json')`` with the configuration and the port list.
Both files are written to temporary files in the same folder and renamed into place only when both
are complete, so an error never leaves a partial output behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from hw.config import TernConfig
from hw.fileio import atomic_write_many

__all__ = ["write_verilog", "port_list", "TOP_NAME"]

#: Name of the top-level Verilog module.
TOP_NAME = "tern_core"


def port_list(core) -> list[dict]:
    """The Verilog ports of an elaboratable component: ``clk``, ``rst`` and one entry per signature
    member, each ``{"name", "direction", "width"}`` (names as Amaranth emits them, ``a__b``)."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in core.signature.flatten(core):
        ports.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(value.as_value()) if hasattr(value, "as_value") else len(value),
        })
    return ports


def write_verilog(config: TernConfig, path) -> dict:
    """Write Verilog of :class:`TernCore` for ``config`` to ``path`` (``.v``) and the configuration and
    port list to ``path.with_suffix('.json')``. Returns a summary dict (``top``, ``ports``,
    ``verilog_bytes``). Raises TypeError for a non-TernConfig, ValueError for a bad path."""
    from hw.rtl.top import TernCore

    if not isinstance(config, TernConfig):
        raise TypeError(f"write_verilog: config must be a hw.config.TernConfig, not {config!r}")
    path = Path(path)
    if path.suffix != ".v":
        raise ValueError(f"write_verilog: output file must end in .v, not {path.name!r}")
    if not path.parent.is_dir():
        raise ValueError(f"write_verilog: output folder {str(path.parent)!r} does not exist")
    core = TernCore(config)
    ports = port_list(core)
    text = verilog.convert(core, name=TOP_NAME, emit_src=False)
    meta = {
        "top": TOP_NAME,
        "config": json.loads(config.to_json()),
        "ports": ports,
        "latency": {
            "pe_array": config.pe_latency,
            "decoder": config.decoder_latency,
            "result": config.result_latency,
        },
    }
    sidecar = json.dumps(meta, indent=2) + "\n"
    atomic_write_many({path: lambda p: p.write_text(text),
                       path.with_suffix(".json"): lambda p: p.write_text(sidecar)})
    return {"top": TOP_NAME, "ports": len(ports), "verilog_bytes": len(text.encode())}
