"""``tern rtl -o OUT.v``: Verilog of the top level for a configuration (and OUT.json beside it)."""

from __future__ import annotations

from pathlib import Path

from sw.cli.common import UsageError, add_config_flags, add_json_flag, config_from_args, emit

__all__ = ["add_command"]


def add_command(sub) -> None:
    r = sub.add_parser("rtl", help="write Verilog of the top level for a configuration")
    r.set_defaults(func=_cmd_rtl)
    r.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file to write")
    add_json_flag(r)
    add_config_flags(r)


def _cmd_rtl(args) -> int:
    cfg = config_from_args(args)
    out = Path(args.output)
    if out.suffix != ".v":
        raise UsageError(f"tern rtl: output file must end in .v, not {out.name!r}")
    if not out.parent.is_dir():
        raise UsageError(f"tern rtl: output folder {str(out.parent)!r} does not exist")
    from hw.flows.export import write_verilog
    info = write_verilog(cfg, out)
    result = {"verilog": str(out), "config": str(out.with_suffix(".json"))}
    if isinstance(info, dict):
        result.update(info)
    emit(args, result, f"wrote {out} and {out.with_suffix('.json')}")
    return 0
