"""GGUF import (llama.cpp / bitnet.cpp files) for the reference model (``docs/MODEL.md``, "GGUF").

:func:`read_gguf` parses the header, the metadata and the tensor table itself (upstream
``gguf.GGUFReader`` raises on bitnet.cpp's type 36, I2_S, so one reader serves every file);
:func:`gguf_config` maps the metadata to a :class:`~sw.model.config.ModelConfig`; :func:`load_gguf`
decodes the tensors into a :class:`~sw.model.model.CausalLM`.

Ternary projection types and how they become ``(T int8, w_scale float32)``:

* ``TQ1_0`` (34; 256 weights in 54 bytes, base 3) and ``TQ2_0`` (35; 256 weights in 66 bytes, 2 bits),
  decoded by ``gguf.quants``: each 256-weight block has a float16 scale ``d``. **Block-scale rule**:
  the blocks that hold a non-zero code must all carry the same ``d`` (bit for bit, finite, > 0), and
  ``w_scale = float32(d)``; a block of zero codes constrains nothing (its ``d`` multiplies zeros).
  Any other file is rejected, naming the tensor and two disagreeing scales. This is exact: every
  weight ``gguf.quants.dequantize`` gives equals ``T * w_scale``. (llama.cpp's converter writes
  ``d = max|W|`` of ternarized ``W = T * gamma``, so every non-zero block has ``d = float16(gamma)``.)
* ``I2_S`` (36, bitnet.cpp's fork): ``numel / 4`` bytes of 2-bit codes ``t + 1`` over the tensor's
  weights in row-major order, in blocks of 128 weights (32 bytes): byte ``j`` of a block holds its
  weights ``j``, ``j + 32``, ``j + 64``, ``j + 96`` in bits 7..6, 5..4, 3..2, 1..0 (``quantize_i2_s``
  of bitnet.cpp's x86 build, the layout its AVX2 ``ggml_vec_dot_i2_i8_s`` reads); then one
  little-endian float32 scale ``w_scale`` for the tensor (writers pad the tensor to ``numel / 4 + 32``
  bytes). Code 3 is rejected; ``numel`` must be a multiple of 128.
* ``F32`` / ``F16`` / ``BF16`` projections must hold ternarized values ``{-s, 0, +s}`` for one ``s``
  (what llama.cpp's converter writes for float output types): ``T = W / s``, ``w_scale = float32(s)``.

Every problem raises :class:`GGUFError` (a :class:`~sw.model.checkpoint.CheckpointError`) with one line
naming the file and, where there is one, the tensor or key.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .bitlinear import BitLinear
from .checkpoint import CheckpointError
from .config import ConfigError, ModelConfig
from .layers import DecoderLayer
from .model import CausalLM

__all__ = ["GGUFError", "GGUFFile", "GGUFTensor", "GGUFInfo", "read_gguf", "gguf_config", "load_gguf", "load_gguf_layer",
           "decode_i2s", "encode_i2s", "is_gguf_path", "TYPE_TQ1_0", "TYPE_TQ2_0", "TYPE_I2_S",
           "ARCHITECTURES", "PROJECTION_NAMES", "gguf_name"]

GGUF_MAGIC = b"GGUF"
TYPE_F32, TYPE_F16, TYPE_BF16 = 0, 1, 30
TYPE_TQ1_0, TYPE_TQ2_0, TYPE_I2_S = 34, 35, 36
QK_K = 256
I2S_BLOCK = 128       # I2_S: weights per 32-byte block (byte j: weights j, j+32, j+64, j+96)
I2S_PAD = 32          # I2_S tensor bytes: numel / 4 codes + the float32 scale, padded to 32 bytes
ARCHITECTURES = {     # general.architecture -> default MLP activation when the file names none
    "bitnet": "silu",          # llama.cpp's `bitnet` graph (SwiGLU with SiLU)
    "bitnet-b1.58": "relu2",   # bitnet.cpp's BitNet b1.58 2B4T (BitNetForCausalLM, hidden_act relu2)
}
_ACT_NAMES = {"relu2": "relu2", "relu_squared": "relu2", "relu^2": "relu2", "silu": "silu", "swish": "silu"}
PROJECTION_NAMES = {  # GGUF name (blk.N.<name>.weight) -> reference model suffix
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_HF_NAMES = {  # Hugging Face name -> GGUF name, outside the layers and for a layer's norms
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm", "mlp.ffn_sub_norm": "ffn_sub_norm",
    **{hf: g for g, hf in PROJECTION_NAMES.items()},
}


def gguf_name(hf_name: str) -> str:
    """The GGUF tensor name of a Hugging Face one (``model.layers.3.mlp.up_proj.weight`` ->
    ``blk.3.ffn_up.weight``)."""
    if hf_name in _HF_NAMES:
        return _HF_NAMES[hf_name]
    _, _, i, rest = hf_name.split(".", 3)              # model.layers.I.<module>.weight
    return f"blk.{i}.{_HF_NAMES[rest.removesuffix('.weight')]}.weight"
# GGUF metadata value types: id -> (struct format, size); 8 string, 9 array
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}


class GGUFError(CheckpointError):
    """A bad or unsupported GGUF file (one line naming the file and the tensor or key)."""


def is_gguf_path(spec) -> bool:
    """``spec`` names a ``.gguf`` file (by its suffix)."""
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(".gguf")


# -- the container ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GGUFTensor:
    name: str
    dims: tuple[int, ...]     # GGML order: dims[0] is the row length (contiguous)
    type: int                 # GGML type id
    offset: int               # absolute byte offset in the file
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy / PyTorch shape (rows first): ``dims`` reversed."""
        return tuple(reversed(self.dims))

    @property
    def numel(self) -> int:
        return math.prod(self.dims)


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]
    data: np.ndarray = field(repr=False)   # the whole file, uint8 (memory-mapped)

    def raw(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        return self.data[t.offset:t.offset + t.nbytes]

    def label(self, name: Optional[str] = None) -> str:
        return f"{self.path}: tensor {name}" if name else str(self.path)


class _Cursor:
    def __init__(self, buf: np.ndarray, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated: {what} needs {n} bytes at offset {self.pos}, the file has "
                            f"{len(self.buf)} bytes")
        b = self.buf[self.pos:self.pos + n].tobytes()
        self.pos += n
        return b

    def scalar(self, vtype: int, what: str):
        fmt, size = _SCALARS[vtype]
        return struct.unpack(fmt, self.take(size, what))[0]

    def string(self, what: str) -> str:
        n = self.scalar(10, what)
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: {what} is not UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALARS:
            return self.scalar(vtype, what)
        if vtype == 8:
            return self.string(what)
        if vtype == 9 and depth == 0:
            sub = self.scalar(4, what)
            n = self.scalar(10, what)
            if sub in _SCALARS:
                fmt, size = _SCALARS[sub]
                raw = self.take(n * size, what)
                return list(np.frombuffer(raw, dtype=np.dtype(fmt)).tolist())
            if sub not in (8, 9):
                raise GGUFError(f"{self.path}: {what}: unknown array element type {sub}")
            return [self.value(sub, what, depth + 1) for _ in range(n)]
        raise GGUFError(f"{self.path}: {what}: unknown metadata value type {vtype}")


def _tensor_nbytes(path: Path, name: str, dims: tuple[int, ...], ttype: int) -> int:
    numel = math.prod(dims)     # Python integers: dims near 2**64 cannot wrap around
    if ttype == TYPE_I2_S:
        if numel % I2S_BLOCK:
            raise GGUFError(f"{path}: tensor {name}: I2_S needs a multiple of {I2S_BLOCK} weights, has {numel}")
        return numel // 4 + 4           # codes + the float32 scale (padding past it is not required)
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError):
        raise GGUFError(f"{path}: tensor {name}: unknown GGML type {ttype}") from None
    if dims and dims[0] % block:
        kind = GGMLQuantizationType(ttype).name
        raise GGUFError(f"{path}: tensor {name}: row length {dims[0]} is not a multiple of {block} "
                        f"({kind} blocks hold {block} weights)")
    return numel // block * size


def read_gguf(path) -> GGUFFile:
    """Parses a GGUF file's header, metadata and tensor table (the data stays memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    except OSError as e:
        raise GGUFError(f"{path}: cannot read ({e})") from None
    cur = _Cursor(data, path)
    magic = cur.take(4, "the magic")
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    version = cur.scalar(4, "the version")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    n_tensors = cur.scalar(10, "the tensor count")
    n_kv = cur.scalar(10, "the metadata count")
    if n_tensors > len(data) or n_kv > len(data):
        raise GGUFError(f"{path}: truncated or corrupt header ({n_tensors} tensors, {n_kv} metadata keys "
                        f"in {len(data)} bytes)")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key {i}")
        vtype = cur.scalar(4, f"metadata {key}")
        metadata[key] = cur.value(vtype, f"metadata {key}")
    infos, seen = [], set()
    for i in range(n_tensors):
        name = cur.string(f"tensor name {i}")
        nd = cur.scalar(4, f"tensor {name}")
        if nd > 4:
            raise GGUFError(f"{path}: tensor {name}: {nd} dimensions (GGUF allows at most 4)")
        dims = tuple(cur.scalar(10, f"tensor {name}") for _ in range(nd))
        ttype = cur.scalar(4, f"tensor {name}")
        off = cur.scalar(10, f"tensor {name}")
        if name in seen:
            raise GGUFError(f"{path}: tensor {name} appears twice")
        seen.add(name)
        infos.append((name, dims, ttype, off))
    align = metadata.get("general.alignment", 32)
    if isinstance(align, bool) or not isinstance(align, int) or align < 1 or align & (align - 1):
        raise GGUFError(f"{path}: general.alignment={align!r} must be a power of two")
    start = -(-cur.pos // align) * align
    tensors = {}
    for name, dims, ttype, off in infos:
        nbytes = _tensor_nbytes(path, name, dims, ttype)
        if off % align:
            raise GGUFError(f"{path}: tensor {name}: data offset {off} is not a multiple of the alignment {align}")
        if start + off + nbytes > len(data):
            raise GGUFError(f"{path}: truncated: tensor {name} needs bytes {start + off}..{start + off + nbytes} "
                            f"of a {len(data)}-byte file")
        tensors[name] = GGUFTensor(name, dims, ttype, start + off, nbytes)
    return GGUFFile(path, version, metadata, tensors, data)


# -- metadata -> ModelConfig ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GGUFInfo:
    """What the loader read and decided: the architecture and where the MLP activation came from."""
    architecture: str
    hidden_act: str
    hidden_act_source: str     # "metadata <key>" or "default for architecture <arch>"
    weight_types: tuple[str, ...]

    def describe(self) -> str:
        return (f"GGUF architecture {self.architecture!r}, MLP activation {self.hidden_act} "
                f"({self.hidden_act_source}), projection types {', '.join(self.weight_types) or '-'}")


def _meta_int(g: GGUFFile, key: str, default=None, *, lo: int = 1):
    v = g.metadata.get(key, default)
    if v is None:
        raise GGUFError(f"{g.path}: missing metadata {key}")
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise GGUFError(f"{g.path}: metadata {key}={v!r} must be an integer >= {lo}")
    return v


def _meta_float(g: GGUFFile, key: str, default: float) -> float:
    v = g.metadata.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise GGUFError(f"{g.path}: metadata {key}={v!r} must be a number")
    return float(v)


def _config_and_info(g: GGUFFile) -> tuple[ModelConfig, GGUFInfo]:
    arch = g.metadata.get("general.architecture")
    if arch is None:
        raise GGUFError(f"{g.path}: missing metadata general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"{g.path}: general.architecture={arch!r} is not supported "
                        f"(supported: {', '.join(ARCHITECTURES)})")
    a = arch
    hidden = _meta_int(g, f"{a}.embedding_length")
    n_layers = _meta_int(g, f"{a}.block_count")
    heads = _meta_int(g, f"{a}.attention.head_count")
    kv = _meta_int(g, f"{a}.attention.head_count_kv", heads)
    head_dim = _meta_int(g, f"{a}.attention.key_length", hidden // heads if hidden >= heads else 1)
    vlen = _meta_int(g, f"{a}.attention.value_length", head_dim)
    if vlen != head_dim:
        raise GGUFError(f"{g.path}: metadata {a}.attention.value_length={vlen} differs from key_length={head_dim}")
    rope_dims = _meta_int(g, f"{a}.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise GGUFError(f"{g.path}: metadata {a}.rope.dimension_count={rope_dims}: partial RoPE is not supported "
                        f"(head dimension {head_dim})")
    scaling = g.metadata.get(f"{a}.rope.scaling.type")
    factor = g.metadata.get(f"{a}.rope.scaling.factor", 1.0)
    if scaling not in (None, "none", "linear") or (scaling == "linear" and factor != 1.0):
        # llama.cpp's BitNet converter writes linear scaling with factor 1.0: plain RoPE
        raise GGUFError(f"{g.path}: metadata {a}.rope.scaling.type={scaling!r} with factor {factor!r} is not "
                        "supported (only plain RoPE)")
    emb = g.tensors.get("token_embd.weight")
    if emb is None:
        raise GGUFError(f"{g.label('token_embd.weight')}: missing tensor")
    if len(emb.dims) != 2 or emb.dims[0] != hidden:
        raise GGUFError(f"{g.label('token_embd.weight')}: shape {emb.shape}, expected (vocab, {hidden})")
    vocab = emb.dims[1]
    mv = g.metadata.get(f"{a}.vocab_size")
    if mv is not None and mv != vocab:
        raise GGUFError(f"{g.path}: metadata {a}.vocab_size={mv!r} differs from token_embd.weight's {vocab} rows")
    ffn = _meta_int(g, f"{a}.feed_forward_length")
    blocks = {int(n.split(".")[1]) for n in g.tensors if n.startswith("blk.") and n.split(".")[1].isdigit()}
    # a block count the tensors contradict, checked before anything is sized by it
    if blocks and max(blocks) >= n_layers:
        raise GGUFError(f"{g.path}: metadata {a}.block_count={n_layers}, but the file has tensors of block "
                        f"{max(blocks)}")
    if len(blocks) != n_layers:   # fewer blocks than counted: name the first one missing
        missing = next(i for i in range(n_layers) if i not in blocks)
        raise GGUFError(f"{g.path}: metadata {a}.block_count={n_layers}, but the file has no tensors of block "
                        f"{missing}")
    sub = [f"blk.{i}.{n}.weight" in g.tensors for i in range(n_layers) for n in ("attn_sub_norm", "ffn_sub_norm")]
    if any(sub) and not all(sub):
        missing = next(f"blk.{i // 2}.{('attn_sub_norm', 'ffn_sub_norm')[i % 2]}.weight"
                       for i, s in enumerate(sub) if not s)
        raise GGUFError(f"{g.label(missing)}: missing tensor (other layers have sub-norms)")
    act_key = f"{a}.hidden_act"
    if act_key in g.metadata:
        raw = g.metadata[act_key]
        act = _ACT_NAMES.get(str(raw).lower()) if isinstance(raw, str) else None
        if act is None:
            raise GGUFError(f"{g.path}: metadata {act_key}={raw!r} is not supported (relu2 or silu)")
        source = f"metadata {act_key}"
    else:
        act, source = ARCHITECTURES[arch], f"default for architecture {arch!r}"
    eos = g.metadata.get("tokenizer.ggml.eos_token_id")
    try:
        cfg = ModelConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=n_layers,
            num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
            max_position_embeddings=_meta_int(g, f"{a}.context_length", 2048),
            rms_norm_eps=_meta_float(g, f"{a}.attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta=_meta_float(g, f"{a}.rope.freq_base", 10000.0),
            hidden_act=act, sub_norms=all(sub), tie_word_embeddings="output.weight" not in g.tensors,
            bos_token_id=g.metadata.get("tokenizer.ggml.bos_token_id"),
            eos_token_id=eos, pad_token_id=g.metadata.get("tokenizer.ggml.padding_token_id"),
            model_type="bitnet" if all(sub) else "llama")
    except (ConfigError, TypeError) as e:
        raise GGUFError(f"{g.path}: {e}") from None
    types = sorted({_type_name(t.type) for n, t in g.tensors.items()
                    if n.startswith("blk.") and n.split(".")[2] in PROJECTION_NAMES})
    return cfg, GGUFInfo(arch, act, source, tuple(types))


def gguf_config(path) -> ModelConfig:
    """The :class:`ModelConfig` of a GGUF file (metadata and tensor table only, checked against each
    other; no weights decoded)."""
    return _open(path)[1]


def _type_name(t: int) -> str:
    if t == TYPE_I2_S:
        return "I2_S"
    from gguf.constants import GGMLQuantizationType
    try:
        return GGMLQuantizationType(t).name
    except ValueError:
        return f"type {t}"


# -- tensors --------------------------------------------------------------------------------------------

def decode_i2s(raw: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """I2_S bytes -> (2-bit codes uint8 of ``shape``, the float32 scale as a 0-dim array)."""
    numel = int(np.prod(shape))
    blocks = np.asarray(raw[:numel // 4], dtype=np.uint8).reshape(-1, 1, I2S_BLOCK // 4)
    codes = (blocks >> np.array([6, 4, 2, 0], np.uint8)[:, None]) & 3      # (blocks, group, byte)
    scale = np.frombuffer(np.asarray(raw[numel // 4:numel // 4 + 4], dtype=np.uint8).tobytes(), dtype="<f4")[0]
    return codes.reshape(shape), np.float32(scale)


def encode_i2s(t: np.ndarray, scale) -> bytes:
    """(ternary int array, float32 scale) -> I2_S tensor bytes (codes, scale, zero padding to 32)."""
    t = np.asarray(t, dtype=np.int8)
    if t.size % I2S_BLOCK:
        raise ValueError(f"I2_S needs a multiple of {I2S_BLOCK} weights, got {t.size}")
    c = (t.reshape(-1, 4, I2S_BLOCK // 4) + 1).astype(np.uint8)           # (blocks, group, byte)
    packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
    return packed.astype(np.uint8).tobytes() + np.float32(scale).astype("<f4").tobytes() + bytes(I2S_PAD - 4)


def _float_tensor(g: GGUFFile, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = g.tensors.get(name)
    if t is None:
        raise GGUFError(f"{g.label(name)}: missing tensor")
    if t.shape != shape:
        raise GGUFError(f"{g.label(name)}: shape {t.shape}, expected {shape}")
    if t.type in (TYPE_TQ1_0, TYPE_TQ2_0, TYPE_I2_S):
        raise GGUFError(f"{g.label(name)}: type {_type_name(t.type)} for a float tensor")
    from gguf import quants
    from gguf.constants import GGMLQuantizationType
    raw = np.asarray(g.raw(name)).reshape(*t.shape[:-1], -1)
    try:
        w = quants.dequantize(raw, GGMLQuantizationType(t.type))
    except NotImplementedError:
        raise GGUFError(f"{g.label(name)}: type {_type_name(t.type)} cannot be decoded") from None
    w = torch.from_numpy(np.array(w, dtype=np.float32).reshape(shape))
    if not bool(torch.isfinite(w).all()):
        raise GGUFError(f"{g.label(name)}: contains NaN or Inf")
    return w


def _tq_ternary(g: GGUFFile, name: str, t: GGUFTensor) -> tuple[np.ndarray, np.float32]:
    """TQ1_0 / TQ2_0 -> (T int8, w_scale) under the block-scale rule (module docstring)."""
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    qt = GGMLQuantizationType(t.type)
    bsize = GGML_QUANT_SIZES[qt][1]
    out_f, in_f = t.shape
    blocks = np.array(g.raw(name)).reshape(out_f, in_f // QK_K, bsize)
    d = blocks[..., bsize - 2:].copy().view(np.float16)[..., 0]           # (out, blocks) float16
    unit = blocks.copy()
    unit[..., bsize - 2:] = np.frombuffer(np.float16(1.0).tobytes(), np.uint8)
    codes = quants.dequantize(unit.reshape(out_f, -1), qt)                  # the block codes, d = 1
    if not np.isin(codes, (-1.0, 0.0, 1.0)).all():
        r, c = np.argwhere(~np.isin(codes, (-1.0, 0.0, 1.0)))[0]
        raise GGUFError(f"{g.label(name)}: weight ({r}, {c}) has code {int(codes[r, c]) + 1} (not ternary)")
    T = codes.astype(np.int8)
    if not np.isfinite(d.astype(np.float32)).all():
        raise GGUFError(f"{g.label(name)}: a block scale is NaN or Inf")
    live = (T.reshape(out_f, in_f // QK_K, QK_K) != 0).any(axis=-1)        # blocks with a non-zero code
    if not live.any():
        return T, np.float32(1.0)
    bits = d.view(np.uint16)[live]
    if not (bits == bits[0]).all():
        other = d[live][np.argmax(bits != bits[0])]
        raise GGUFError(f"{g.label(name)}: {qt.name} block scales differ ({float(d[live][0])!r} and "
                        f"{float(other)!r}); tern needs one scale per tensor (docs/MODEL.md, GGUF)")
    s = np.float32(d[live][0])
    if not s > 0:
        raise GGUFError(f"{g.label(name)}: block scale {float(s)!r} must be > 0")
    return T, s


def _projection(g: GGUFFile, name: str, out_f: int, in_f: int, label: str) -> BitLinear:
    t = g.tensors.get(name)
    if t is None:
        raise GGUFError(f"{g.label(name)}: missing tensor")
    if t.shape != (out_f, in_f):
        raise GGUFError(f"{g.label(name)}: shape {t.shape}, expected {(out_f, in_f)}")
    if t.type in (TYPE_TQ1_0, TYPE_TQ2_0):
        T, s = _tq_ternary(g, name, t)
    elif t.type == TYPE_I2_S:
        codes, s = decode_i2s(g.raw(name), t.shape)
        if (codes == 3).any():
            r, c = np.argwhere(codes == 3)[0]
            raise GGUFError(f"{g.label(name)}: I2_S weight ({r}, {c}) has code 3 (not ternary)")
        if not (np.isfinite(s) and s > 0):
            raise GGUFError(f"{g.label(name)}: I2_S scale {float(s)!r} must be finite and > 0")
        T = codes.astype(np.int8) - 1
    elif t.type in (TYPE_F32, TYPE_F16, TYPE_BF16):
        w = _float_tensor(g, name, (out_f, in_f))
        nz = w[w != 0].abs()
        s = np.float32(float(nz[0])) if nz.numel() else np.float32(1.0)
        if nz.numel() and not bool((nz == float(s)).all()):
            raise GGUFError(f"{g.label(name)}: float projection weights must hold only -s, 0, +s for one s "
                            f"(ternarized); found {float(s)!r} and {float(nz[nz != float(s)][0])!r}")
        T = (w / float(s)).to(torch.int8).numpy() if nz.numel() else np.zeros((out_f, in_f), np.int8)
    else:
        raise GGUFError(f"{g.label(name)}: type {_type_name(t.type)} is not a ternary type "
                        "(TQ1_0, TQ2_0, I2_S, or F32/F16/BF16 holding -s, 0, +s)")
    return BitLinear.from_ternary(torch.from_numpy(np.ascontiguousarray(T)), torch.tensor(s), name=label)


def _expected_shapes(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{GGUF name: (out, in) or (n,)} of every tensor of the model."""
    h = c.hidden_size
    shapes = {"token_embd.weight": (c.vocab_size, h), "output_norm.weight": (h,)}
    if not c.tie_word_embeddings:
        shapes["output.weight"] = (c.vocab_size, h)
    proj = c.projection_shapes()
    for i in range(c.num_hidden_layers):
        shapes.update({f"blk.{i}.attn_norm.weight": (h,), f"blk.{i}.ffn_norm.weight": (h,)})
        if c.sub_norms:
            shapes.update({f"blk.{i}.attn_sub_norm.weight": (c.q_size,),
                           f"blk.{i}.ffn_sub_norm.weight": (c.intermediate_size,)})
        shapes.update({f"blk.{i}.{g}.weight": proj[hf] for g, hf in PROJECTION_NAMES.items()})
    return shapes


def _open(path) -> tuple[GGUFFile, ModelConfig, GGUFInfo]:
    """The file, its config and info, with every tensor's name and shape checked against the config
    (before any model memory is sized by the metadata)."""
    g = read_gguf(path)
    c, info = _config_and_info(g)
    if "rope_freqs.weight" in g.tensors:
        raise GGUFError(f"{g.label('rope_freqs.weight')}: RoPE frequency factors are not supported")
    shapes = _expected_shapes(c)
    extra = sorted(set(g.tensors) - set(shapes))
    if extra:
        raise GGUFError(f"{g.label(extra[0])}: unexpected tensor" +
                        (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "") + " for this model")
    for name, shape in shapes.items():
        t = g.tensors.get(name)
        if t is None:
            raise GGUFError(f"{g.label(name)}: missing tensor")
        if t.shape != shape:
            raise GGUFError(f"{g.label(name)}: shape {t.shape}, expected {shape}")
    return g, c, info


def load_gguf(path) -> CausalLM:
    """Loads a GGUF BitNet model into the reference :class:`CausalLM`; ``model.gguf_info`` is its
    :class:`GGUFInfo` (architecture, the MLP activation used and where it came from)."""
    g, c, info = _open(path)
    model = CausalLM(c)
    h = c.hidden_size
    with torch.no_grad():
        model.embed_tokens.weight.copy_(_float_tensor(g, "token_embd.weight", (c.vocab_size, h)))
        model.norm.weight.copy_(_float_tensor(g, "output_norm.weight", (h,)))
        if not c.tie_word_embeddings:
            model.lm_head_weight.copy_(_float_tensor(g, "output.weight", (c.vocab_size, h)))
        for i in range(c.num_hidden_layers):
            _fill_layer(g, c, model.layers[i], i)
    model.gguf_info = info
    return model


def load_gguf_layer(path, index: int) -> tuple[DecoderLayer, ModelConfig, GGUFInfo]:
    """Decoder layer ``index`` of a GGUF file alone (only its tensors are decoded), its config and info."""
    g, c, info = _open(path)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < c.num_hidden_layers:
        raise GGUFError(f"{g.path}: layer {index!r} is out of range (layers 0..{c.num_hidden_layers - 1})")
    layer = DecoderLayer(c, index)
    with torch.no_grad():
        _fill_layer(g, c, layer, index)
    return layer, c, info


def _fill_layer(g: GGUFFile, c: ModelConfig, layer: DecoderLayer, i: int) -> None:
    """Decodes layer ``i``'s norms and projections into ``layer`` (under ``torch.no_grad``)."""
    h = c.hidden_size
    shapes = c.projection_shapes()
    layer.input_layernorm.weight.copy_(_float_tensor(g, f"blk.{i}.attn_norm.weight", (h,)))
    layer.post_attention_layernorm.weight.copy_(_float_tensor(g, f"blk.{i}.ffn_norm.weight", (h,)))
    if c.sub_norms:
        layer.self_attn.attn_sub_norm.weight.copy_(
            _float_tensor(g, f"blk.{i}.attn_sub_norm.weight", (c.q_size,)))
        layer.mlp.ffn_sub_norm.weight.copy_(
            _float_tensor(g, f"blk.{i}.ffn_sub_norm.weight", (c.intermediate_size,)))
    for gname, suffix in PROJECTION_NAMES.items():
        out_f, in_f = shapes[suffix]
        bl = _projection(g, f"blk.{i}.{gname}.weight", out_f, in_f, f"model.layers.{i}.{suffix}")
        parent, attr = suffix.split(".")
        setattr(getattr(layer, parent), attr, bl)
