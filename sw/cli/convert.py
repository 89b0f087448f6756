"""``tern convert SRC DST --to hf|gguf-tq2_0|gguf-tq1_0|gguf-i2_s``: a checkpoint folder or GGUF file
converted to another format (:func:`sw.model.convert.convert`): one tensor at a time, lossless where the
target allows (TQ1_0 / TQ2_0 store float16 scales: a scale that is not a float16 value is refused
unless ``--lossy``), the output written atomically (an existing DST survives any failure)."""

from __future__ import annotations

from sw.cli.common import add_json_flag, emit

__all__ = ["add_command"]

def add_command(sub) -> None:
    c = sub.add_parser("convert", help="convert a model between Hugging Face folders and GGUF files")
    c.set_defaults(func=_cmd_convert)
    c.add_argument("src", metavar="SRC", help="a checkpoint folder or a .gguf file")
    c.add_argument("dst", metavar="DST", help="the output: a folder for --to hf, a .gguf file otherwise")
    c.add_argument("--to", required=True, metavar="FORMAT",
                   help="the output format: hf, gguf-tq2_0, gguf-tq1_0 or gguf-i2_s")
    c.add_argument("--lossy", action="store_true",
                   help="TQ1_0/TQ2_0: round scales that are not float16 values (reported) instead of refusing")
    add_json_flag(c)


def _cmd_convert(args) -> int:
    from sw.model.convert import convert
    r = convert(args.src, args.dst, args.to, lossy=args.lossy)
    lines = [f"{r.source} -> {r.destination} ({r.target}): {r.tensors} tensors, {r.bytes:,} bytes, "
             + ("lossless" if r.lossless else f"{len(r.rounded_scales)} scales rounded to float16")
             + ("; tokenizer included" if r.tokenizer else "; no tokenizer")]
    lines += [f"  {name}: w_scale {a!r} written as {b!r}" for name, a, b in r.rounded_scales]
    emit(args, r.to_dict(), "\n".join(lines))
    return 0
