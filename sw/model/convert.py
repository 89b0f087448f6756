"""Model conversion between Hugging Face checkpoint folders and GGUF files (``tern convert``;
``docs/MODEL.md``, "Conversion").

:func:`convert` reads a source (a checkpoint folder or a ``.gguf`` file) one tensor at a time and
writes one of the targets of :data:`TARGETS`:

* ``hf``: a folder with ``config.json`` and one ``model.safetensors``: projections packed uint8 (the
  microsoft/bitnet-b1.58-2B-4T layout, :mod:`sw.model.packing`) with a float32 ``weight_scale``
  (``linear_class: autobitlinear``: ``w_scale = weight_scale``); float tensors keep their dtype
  (float32, float16, bfloat16; float64 and GGUF's quantized float types become the float32 values the
  model uses);
* ``gguf-tq2_0`` / ``gguf-tq1_0``: llama.cpp's ternary types through ``gguf.GGUFWriter`` and
  ``gguf.quants.quantize``; every 256-weight block holding a non-zero weight carries ``float16(w_scale)``.
  **Lossy where** ``w_scale`` **is not a float16 value**: the conversion refuses such a tensor unless
  ``lossy=True`` (then the scale is rounded to float16 and the result says which tensors changed);
* ``gguf-i2_s``: bitnet.cpp's I2_S (:func:`sw.model.gguf.encode_i2s`; float32 scale, lossless).

Float tensors go to GGUF as F32 / F16 / BF16 (their own dtype; other types as F32). What the model
computes is identical after every lossless conversion: the same ``T``, ``w_scale``, float weights and
configuration (``rms_norm_eps`` and ``rope_theta`` are stored as GGUF float32, which is what the
float32 model adds and raises anyway). The tokenizer goes along: ``tokenizer.json`` (and
``tokenizer_config.json``) are copied to an ``hf`` folder, and written as ``tokenizer.ggml.*``
metadata into a GGUF file (:mod:`sw.model.tokenizer`); a GGUF tokenizer becomes an ``hf`` folder's
``tokenizer.json``.

Streaming: the source stays memory-mapped and one tensor is decoded and written at a time
(safetensors headers are written first from the shapes: :class:`SafetensorsWriter`). The output is
atomic (:mod:`hw.fileio`): a GGUF file or the folder's files appear complete or not at all, and an
existing destination survives any failure.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from hw.fileio import atomic_write, atomic_write_many

from .checkpoint import CheckpointError, _float_names, _projection, open_checkpoint
from .config import ModelConfig
from .packing import pack_ternary

__all__ = ["TARGETS", "ConvertError", "ConvertResult", "convert", "open_source", "SafetensorsWriter"]

TARGETS = ("hf", "gguf-tq2_0", "gguf-tq1_0", "gguf-i2_s")


class ConvertError(CheckpointError):
    """A conversion that cannot be done (one line naming the source or tensor)."""


# -- streaming safetensors ----------------------------------------------------------------------------

_ST_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.uint8: "U8", torch.int8: "I8", torch.int32: "I32", torch.int64: "I64"}


class SafetensorsWriter:
    """Writes a ``.safetensors`` file one tensor at a time: the header (every name, dtype and shape,
    in order) first, then :meth:`write` each tensor in that order; nothing else is held in memory."""

    def __init__(self, f, specs: list[tuple[str, torch.dtype, tuple[int, ...]]], metadata: Optional[dict] = None):
        self.f, self.specs, self.next = f, specs, 0
        header, off = {}, 0
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        for name, dtype, shape in specs:
            n = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        f.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, name: str, t: torch.Tensor) -> None:
        """The next tensor, whole."""
        self.begin(name)
        self.write_part(t)
        self.end()

    def begin(self, name: str) -> None:
        """The next tensor, in parts: :meth:`write_part` blocks of its rows, then :meth:`end`."""
        if self.next >= len(self.specs) or self.specs[self.next][0] != name:
            raise AssertionError(f"safetensors writer: got {name}, expected "
                                 f"{self.specs[self.next][0] if self.next < len(self.specs) else 'no more tensors'}")
        self.rows = 0

    def write_part(self, t: torch.Tensor) -> None:
        name, dtype, shape = self.specs[self.next]
        if t.dtype != dtype or tuple(t.shape[1:]) != tuple(shape[1:]) or self.rows + t.shape[0] > shape[0]:
            raise AssertionError(f"safetensors writer: {name}: got {t.dtype} {tuple(t.shape)} after "
                                 f"{self.rows} rows, expected {dtype} {shape}")
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        a = t.numpy()
        self.f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        self.rows += t.shape[0]

    def end(self) -> None:
        name, _, shape = self.specs[self.next]
        if self.rows != (shape[0] if shape else 1):
            raise AssertionError(f"safetensors writer: {name}: {self.rows} of {shape[0]} rows written")
        self.next += 1

    def close(self) -> None:
        if self.next != len(self.specs):
            raise AssertionError(f"safetensors writer: {len(self.specs) - self.next} tensors not written")


# -- sources -------------------------------------------------------------------------------------------

@dataclass
class _Source:
    """A model read one tensor at a time, under Hugging Face names."""
    path: Path
    kind: str                                   # "checkpoint" or "gguf"
    config: ModelConfig
    float_dtype: Callable[[str], torch.dtype]   # the dtype a float tensor is written in
    float_tensor: Callable[[str], torch.Tensor]
    projection: Callable[[str, int, int], tuple[torch.Tensor, torch.Tensor]]   # -> (T int8, w_scale)
    tokenizer_files: Callable[[], dict] = field(default=lambda: {})            # {file name: bytes}
    gguf_tokenizer: Callable[[], Optional[dict]] = field(default=lambda: None)  # tokenizer.ggml.* metadata


_KEEP = (torch.float32, torch.float16, torch.bfloat16)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _checkpoint_source(folder: Path) -> _Source:
    raw, cfg, src = open_checkpoint(folder)
    qc = raw.get("quantization_config")

    def float_dtype(name):
        dt = src.meta(name)[0]
        return dt if dt in _KEEP else torch.float32

    def float_tensor(name):
        t = src[name]
        t = t if t.dtype in _KEEP else t.to(torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise ConvertError(f"{src.label(name)}: contains NaN or Inf")
        return t

    def projection(prefix, out_f, in_f):
        bl = _projection(src, prefix, out_f, in_f, qc)
        return bl.T, bl.w_scale

    def tokenizer_files():
        out = {}
        for n in _TOKENIZER_FILES:
            if (folder / n).is_file():
                out[n] = (folder / n).read_bytes()
        return out

    def gguf_tokenizer():
        if not (folder / "tokenizer.json").is_file():
            return None
        from .tokenizer import gguf_tokenizer_metadata
        return gguf_tokenizer_metadata(folder / "tokenizer.json", cfg)

    return _Source(folder, "checkpoint", cfg, float_dtype, float_tensor, projection, tokenizer_files,
                   gguf_tokenizer)


def _gguf_source(path: Path) -> _Source:
    from . import gguf as G
    g, cfg, info = G._open(path)

    def float_dtype(name):
        t = g.tensors[G.gguf_name(name)]
        return {G.TYPE_F32: torch.float32, G.TYPE_F16: torch.float16, G.TYPE_BF16: torch.bfloat16}.get(
            t.type, torch.float32)

    def float_tensor(name):
        gname = G.gguf_name(name)
        t = g.tensors[gname]
        raw = np.asarray(g.raw(gname))
        if t.type == G.TYPE_F32:
            out = torch.from_numpy(raw.view("<f4").astype(np.float32).reshape(t.shape))
        elif t.type == G.TYPE_F16:
            out = torch.from_numpy(raw.view("<f2").astype(np.float16).reshape(t.shape))
        elif t.type == G.TYPE_BF16:
            out = torch.from_numpy(raw.view("<i2").astype(np.int16).reshape(t.shape)).view(torch.bfloat16)
        else:
            return G._float_tensor(g, gname, t.shape)   # dequantized (checked finite there)
        if not bool(torch.isfinite(out).all()):
            raise ConvertError(f"{g.label(gname)}: contains NaN or Inf")
        return out

    def projection(prefix, out_f, in_f):
        bl = G._projection(g, G.gguf_name(prefix + ".weight"), out_f, in_f, prefix)
        return bl.T, bl.w_scale

    def tokenizer_files():
        from .tokenizer import tokenizer_json_from_gguf
        text = tokenizer_json_from_gguf(g)
        return {} if text is None else {"tokenizer.json": text.encode()}

    def gguf_tokenizer():
        return {k: v for k, v in g.metadata.items() if k.startswith("tokenizer.")} or None

    return _Source(path, "gguf", cfg, float_dtype, float_tensor, projection, tokenizer_files, gguf_tokenizer)


def open_source(src) -> _Source:
    """A checkpoint folder or ``.gguf`` file as a conversion source (checked, nothing decoded)."""
    from .gguf import is_gguf_path
    path = Path(src)
    if is_gguf_path(path):
        return _gguf_source(path)
    if not path.exists():
        raise ConvertError(f"{path}: no such checkpoint folder or .gguf file")
    if not path.is_dir():
        raise ConvertError(f"{path}: not a checkpoint folder (config.json and *.safetensors) or a .gguf file")
    return _checkpoint_source(path)


def _layer_items(c: ModelConfig) -> Iterator[tuple[str, int, int]]:
    for i in range(c.num_hidden_layers):
        for suffix, (out_f, in_f) in c.projection_shapes().items():
            yield f"model.layers.{i}.{suffix}", out_f, in_f


# -- results -------------------------------------------------------------------------------------------

@dataclass
class ConvertResult:
    source: str
    destination: str
    target: str
    tensors: int
    bytes: int
    lossless: bool
    rounded_scales: tuple = ()     # (tensor, w_scale, the float16 value written) where a scale changed
    tokenizer: bool = False

    def to_dict(self) -> dict:
        return {"source": self.source, "destination": self.destination, "to": self.target,
                "tensors": self.tensors, "bytes": self.bytes, "lossless": self.lossless,
                "rounded_scales": [list(r) for r in self.rounded_scales], "tokenizer": self.tokenizer}


# -- targets -------------------------------------------------------------------------------------------

def _write_hf(s: _Source, dst: Path) -> tuple[int, int, bool]:
    c = s.config
    floats = _float_names(c)
    specs = [(n, s.float_dtype(n), shape) for n, shape in floats.items()]
    for prefix, out_f, in_f in _layer_items(c):
        specs.append((f"{prefix}.weight", torch.uint8, ((out_f + 3) // 4, in_f)))
        specs.append((f"{prefix}.weight_scale", torch.float32, (1,)))
    cfg = c.to_hf_dict()
    cfg["torch_dtype"] = str(s.float_dtype("model.embed_tokens.weight")).removeprefix("torch.")
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                  "quantization_mode": "offline"}

    def write_model(tmp: Path):
        with open(tmp, "wb") as f:
            w = SafetensorsWriter(f, specs, {"format": "pt"})
            for name in floats:
                w.write(name, s.float_tensor(name))
            for prefix, out_f, in_f in _layer_items(c):
                T, scale = s.projection(prefix, out_f, in_f)
                w.write(f"{prefix}.weight", pack_ternary(T))
                w.write(f"{prefix}.weight_scale", scale.reshape(1).to(torch.float32))
            w.close()

    targets = {dst / "model.safetensors": write_model,
               dst / "config.json": lambda p: p.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")}
    tok = s.tokenizer_files()
    for name, data in tok.items():
        targets[dst / name] = lambda p, data=data: p.write_bytes(data)
    atomic_write_many(targets)
    return len(specs), (dst / "model.safetensors").stat().st_size, bool(tok)


def _gguf_arch(c: ModelConfig) -> str:
    return "bitnet-b1.58" if c.hidden_act == "relu2" else "bitnet"


def _write_gguf(s: _Source, dst: Path, target: str, lossy: bool) -> tuple[int, int, bool, tuple]:
    import gguf as gg
    from gguf import quants

    from . import gguf as G
    c = s.config
    qtype = {"gguf-tq2_0": gg.GGMLQuantizationType.TQ2_0, "gguf-tq1_0": gg.GGMLQuantizationType.TQ1_0,
             "gguf-i2_s": None}[target]
    floats = _float_names(c)
    layer_items = list(_layer_items(c))
    if qtype is not None:
        bad = next(((p, in_f) for p, _, in_f in layer_items if in_f % G.QK_K), None)
        if bad:
            raise ConvertError(f"{s.path}: tensor {bad[0]}.weight: rows of {bad[1]} weights are not a multiple "
                               f"of 256 ({qtype.name} blocks hold 256 weights); use --to gguf-i2_s or hf")
    else:
        bad = next(((p, o * i) for p, o, i in layer_items if (o * i) % G.I2S_BLOCK), None)
        if bad:
            raise ConvertError(f"{s.path}: tensor {bad[0]}.weight: {bad[1]} weights are not a multiple of "
                               f"{G.I2S_BLOCK} (I2_S blocks); use --to gguf-tq2_0 or hf")
    arch = _gguf_arch(c)
    rounded = []

    def write(tmp: Path):
        w = gg.GGUFWriter(str(tmp), arch)
        w.add_block_count(c.num_hidden_layers)
        w.add_embedding_length(c.hidden_size)
        w.add_feed_forward_length(c.intermediate_size)
        w.add_head_count(c.num_attention_heads)
        w.add_head_count_kv(c.num_key_value_heads)
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
        w.add_rope_dimension_count(c.head_dim)
        w.add_context_length(c.max_position_embeddings)
        w.add_layer_norm_rms_eps(c.rms_norm_eps)
        w.add_rope_freq_base(c.rope_theta)
        w.add_vocab_size(c.vocab_size)
        w.add_string(f"{arch}.hidden_act", c.hidden_act)
        if qtype is not None:   # (bitnet.cpp's file type number for I2_S is not in gguf-py: left out)
            w.add_file_type({gg.GGMLQuantizationType.TQ2_0: gg.LlamaFileType.MOSTLY_TQ2_0,
                             gg.GGMLQuantizationType.TQ1_0: gg.LlamaFileType.MOSTLY_TQ1_0}[qtype])
        tok = s.gguf_tokenizer() or {}
        # one key serves the config and the tokenizer: the tokenizer's BOS (what a prompt starts with)
        # wins over config.json's where both exist; EOS and padding come from the config
        if c.bos_token_id is not None and "tokenizer.ggml.bos_token_id" not in tok:
            w.add_bos_token_id(c.bos_token_id)
        if c.eos_token_id:
            w.add_eos_token_id(c.eos_token_id[0])
        if c.pad_token_id is not None:
            w.add_pad_token_id(c.pad_token_id)
        for key, value in tok.items():
            if key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"):
                continue
            if isinstance(value, bool):
                w.add_bool(key, value)
            elif isinstance(value, str):
                w.add_string(key, value)
            elif isinstance(value, int):
                w.add_uint32(key, value)
            elif isinstance(value, float):
                w.add_float32(key, value)
            else:
                w.add_array(key, value)
        # the tensor table first (shapes only), then the data one tensor at a time
        order = []
        for name, shape in floats.items():
            dt = s.float_dtype(name)
            gname = G.gguf_name(name)
            esize = torch.empty((), dtype=dt).element_size()
            nbytes = int(np.prod(shape)) * esize
            if dt == torch.bfloat16:
                w.add_tensor_info(gname, (*shape[:-1], shape[-1] * 2), np.dtype(np.uint8), nbytes,
                                  raw_dtype=gg.GGMLQuantizationType.BF16)
            else:
                w.add_tensor_info(gname, shape, np.dtype({torch.float32: np.float32, torch.float16: np.float16}[dt]),
                                  nbytes)
            order.append(("float", name))
        for prefix, out_f, in_f in layer_items:
            gname = G.gguf_name(prefix + ".weight")
            if qtype is None:
                # type 36 is not in gguf-py's enum: the element shape with a non-uint8 dtype keeps the
                # writer from converting a byte shape through its block-size table
                w.add_tensor_info(gname, (out_f, in_f), np.dtype(np.int8), out_f * in_f // 4 + G.I2S_PAD,
                                  raw_dtype=G.TYPE_I2_S)
            else:
                block, size = gg.GGML_QUANT_SIZES[qtype]
                w.add_tensor_info(gname, (out_f, in_f // block * size), np.dtype(np.uint8),
                                  out_f * in_f // block * size, raw_dtype=qtype)
            order.append(("proj", (prefix, out_f, in_f)))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for kind, item in order:
            if kind == "float":
                t = s.float_tensor(item)
                if t.dtype == torch.bfloat16:
                    a = t.contiguous().view(torch.int16).numpy().view(np.uint8)
                else:
                    a = t.contiguous().numpy()
                w.write_tensor_data(a)
                continue
            prefix, out_f, in_f = item
            T, scale = s.projection(prefix, out_f, in_f)
            scale = np.float32(float(scale))
            if qtype is None:
                w.write_tensor_data(np.frombuffer(G.encode_i2s(T.numpy(), scale), np.uint8))
                continue
            d = np.float32(np.float16(scale))
            if d != scale and bool((T != 0).any()):
                if not lossy:
                    raise ConvertError(
                        f"{s.path}: tensor {prefix}.weight: w_scale {float(scale)!r} is not a float16 value "
                        f"({qtype.name} stores float16 block scales; the nearest is {float(d)!r}): use "
                        "--to gguf-i2_s or hf (float32 scales), or --lossy to round it")
                rounded.append((f"{prefix}.weight", float(scale), float(d)))
            if not np.isfinite(d) or not d > 0:
                raise ConvertError(f"{s.path}: tensor {prefix}.weight: w_scale {float(scale)!r} is outside "
                                   f"float16's range ({qtype.name} stores float16 block scales)")
            wf = T.numpy().astype(np.float32) * d
            w.write_tensor_data(quants.quantize(wf, qtype))
        w.close()

    atomic_write(dst, write)
    return len(floats) + len(layer_items), dst.stat().st_size, s.gguf_tokenizer() is not None, tuple(rounded)


def convert(src, dst, to: str, *, lossy: bool = False) -> ConvertResult:
    """Converts the model at ``src`` (a checkpoint folder or a ``.gguf`` file) to ``to`` (one of
    :data:`TARGETS`) at ``dst`` (a folder for ``hf``, a ``.gguf`` file otherwise)."""
    if to not in TARGETS:
        raise ConvertError(f"unknown target {to!r} (choose from {', '.join(TARGETS)})")
    dst = Path(dst)
    if Path(src).resolve() == dst.resolve():
        raise ConvertError(f"{dst}: the destination is the source")
    if to == "hf":
        if dst.exists() and not dst.is_dir():
            raise ConvertError(f"{dst}: --to hf writes a folder, and this is a file")
        if dst.is_dir():
            others = sorted(p.name for p in dst.iterdir()
                            if p.suffix == ".safetensors" and p.name != "model.safetensors"
                            or p.name == "model.safetensors.index.json")
            if others:
                raise ConvertError(f"{dst}: the folder holds other weight files ({others[0]}); "
                                   "choose an empty or new folder")
        elif not dst.parent.is_dir():
            raise ConvertError(f"{dst.parent}: no such folder")
    else:
        if dst.is_dir():
            raise ConvertError(f"{dst}: --to {to} writes a file, and this is a folder")
        if not dst.parent.is_dir():
            raise ConvertError(f"{dst.parent}: no such folder")
    s = open_source(src)
    if to == "hf":
        created = not dst.exists()
        dst.mkdir(exist_ok=True)
        try:
            n, size, tok = _write_hf(s, dst)
        except BaseException:
            if created:   # the files were never renamed into place: the new folder is empty
                dst.rmdir()
            raise
        rounded = ()
    else:
        n, size, tok, rounded = _write_gguf(s, dst, to, lossy)
    return ConvertResult(str(src), str(dst), to, n, size, lossless=not rounded, rounded_scales=rounded,
                         tokenizer=tok)
