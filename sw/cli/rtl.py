"""``tern rtl -o OUT.v``: Verilog of the top level for a configuration (and OUT.json beside it).

The two files appear together or not at all (:func:`hw.fileio.atomic_write_many`): an existing OUT.v
and OUT.json survive any failure."""

from __future__ import annotations

from sw.cli.common import add_config_flags, add_json_flag, check_output_path, config_from_args, emit

__all__ = ["add_command"]


def add_command(sub) -> None:
    r = sub.add_parser("rtl", help="write Verilog of the top level for a configuration")
    r.set_defaults(func=_cmd_rtl)
    r.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file to write")
    add_json_flag(r)
    add_config_flags(r)


def _cmd_rtl(args) -> int:
    cfg = config_from_args(args)
    out = check_output_path("rtl", "output", args.output, ".v")
    check_output_path("rtl", "output", out.with_suffix(".json"), ".json")   # the second file: not a folder
    from hw.flows.export import write_verilog
    info = write_verilog(cfg, out)
    result = {"verilog": str(out), "config": str(out.with_suffix(".json"))}
    if isinstance(info, dict):
        result.update(info)
    emit(args, result, f"wrote {out} and {out.with_suffix('.json')}")
    return 0
