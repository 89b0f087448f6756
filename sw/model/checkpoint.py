"""Hugging Face checkpoint import/export for the reference model (``docs/MODEL.md``, "Checkpoints").

A checkpoint folder holds ``config.json`` and one or more ``*.safetensors`` files (with or without
``model.safetensors.index.json``). Tensor names are transformers' (``model.embed_tokens.weight``,
``model.layers.I.self_attn.q_proj.weight``, ..., ``model.norm.weight``, ``lm_head.weight``).
Each of the seven projections per layer comes in one of three layouts:

1. **packed** (microsoft/bitnet-b1.58-2B-4T): ``weight`` uint8 ``(ceil(out/4), in)`` with four 2-bit codes
   ``t + 1`` per byte (:mod:`sw.model.packing`), plus ``weight_scale`` (1 element). Needs a bitnet
   ``quantization_config`` in offline mode.
2. **unpacked ternary** (what transformers' ``save_pretrained`` writes for ``AutoBitLinear`` offline):
   float ``weight`` ``(out, in)`` holding only -1/0/+1, plus ``weight_scale``.
3. **float master weights** (no ``quantization_config``, or ``quantization_mode: online``; the 1bitLLM
   checkpoints): float ``weight`` ``(out, in)``, ternarized at load by :func:`sw.model.quant.weight_quant`.

``weight_scale`` semantics depend on ``quantization_config.linear_class`` (transformers 4.57,
``integrations/bitnet.py``): ``autobitlinear`` multiplies (``F.linear(...) * weight_scale``), so
``w_scale = weight_scale``; ``bitlinear`` (the default class) divides (``y / (input_scale *
weight_scale)``), so ``w_scale = 1 / weight_scale`` in float32. See docs/MODEL.md.

Every problem raises :class:`CheckpointError` (a ``ValueError``) with a one-line message naming the file
and tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from hw.fileio import atomic_write, read_json

from .bitlinear import BitLinear
from .config import ConfigError, ModelConfig
from .layers import DecoderLayer, RMSNorm
from .model import CausalLM
from .packing import PackingError, pack_ternary, packed_rows, unpack_ternary
from .quant import weight_quant

__all__ = ["CheckpointError", "load_checkpoint", "open_checkpoint", "read_config", "model_from_state_dict",
           "check_layout", "CheckpointLayers", "LayerSequence", "LazyCausalLM", "save_checkpoint", "PROJECTIONS"]

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A bad or unsupported checkpoint (one line naming the file and tensor)."""


# -- reading -----------------------------------------------------------------------------------------

#: Bounds of the JSON files a checkpoint folder holds (hw.fileio.read_json); a config.json or index
#: is a few kB, tokenizer.json files are tens of MB at most.
CONFIG_MAX_BYTES = 4 * 1024 * 1024


def read_config(folder) -> tuple[dict, ModelConfig]:
    """Reads ``folder/config.json`` (bounded: :func:`hw.fileio.read_json`); returns (raw dict,
    :class:`ModelConfig`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing config.json")
    raw = read_json(path, what="config.json", max_bytes=CONFIG_MAX_BYTES, error=CheckpointError)
    try:
        cfg = ModelConfig.from_hf_dict(raw)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return raw, cfg


#: safetensors dtype names -> torch dtypes (names without a torch dtype stay strings)
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
              "I64": torch.int64, "BOOL": torch.bool}


class _Tensors:
    """Name -> tensor over the checkpoint's safetensors files. Only the headers are read up front
    (names, dtypes, shapes: :meth:`meta`); a tensor's data is read when it is asked for, through a
    memory map opened for that read alone, so no file stays mapped (and resident) between reads."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self._open = safe_open
        self.folder = folder
        index = folder / "model.safetensors.index.json"
        self.where: dict[str, Path] = {}
        self._meta: dict[str, tuple] = {}
        if index.is_file():
            doc = read_json(index, what="safetensors index", max_bytes=CONFIG_MAX_BYTES, error=CheckpointError)
            wm = doc.get("weight_map") if isinstance(doc, dict) else None
            if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
                raise CheckpointError(f"{index}: bad index file (weight_map must be an object of file names)")
            files = sorted(set(wm.values()))
            for f in files:
                if Path(f).name != f:
                    raise CheckpointError(f"{index}: bad index file (file name {f!r} is not in the folder)")
                if not (folder / f).is_file():
                    raise CheckpointError(f"{folder / f}: safetensors file named in {index.name} is missing")
            for f in files:
                keys = self._read_header(folder / f)
                for name, fn in wm.items():
                    if fn == f and name not in keys:
                        raise CheckpointError(f"{folder / f}: tensor {name} listed in {index.name} is not in the file")
                for name, meta in keys.items():
                    if wm.get(name) == f:
                        self.where[name] = folder / f
                        self._meta[name] = meta
        else:
            files = sorted(folder.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{folder}: no *.safetensors files")
            for f in files:
                for name, meta in self._read_header(f).items():
                    if name in self.where:
                        raise CheckpointError(f"{f}: tensor {name} also appears in {self.where[name].name}")
                    self.where[name] = f
                    self._meta[name] = meta
        self.files = sorted({p.name for p in self.where.values()})

    def _read_header(self, path: Path) -> dict[str, tuple]:
        """{name: (dtype, shape)} from a file's header (no tensor data is read)."""
        try:
            with self._open(str(path), framework="pt") as h:
                out = {}
                for name in h.keys():
                    sl = h.get_slice(name)
                    dt = sl.get_dtype()
                    out[name] = (_ST_DTYPES.get(dt, dt), tuple(sl.get_shape()))
                return out
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
            raise CheckpointError(f"{path}: cannot read safetensors file ({_one_line(e)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def keys(self):
        return self.where.keys()

    def meta(self, name: str) -> tuple:
        return self._meta[name]

    def label(self, name: str) -> str:
        f = self.where.get(name)
        if f is None:   # not in any file: name the folder and the files searched
            return f"{self.folder} [{', '.join(self.files)}]: tensor {name}"
        return f"{f}: tensor {name}"

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.rows(name, None, None)

    def rows(self, name: str, start: Optional[int], stop: Optional[int]) -> torch.Tensor:
        """The tensor, or its rows ``start:stop`` (read alone from the file)."""
        path = self.where[name]
        try:
            with self._open(str(path), framework="pt") as h:
                if start is None:
                    return h.get_tensor(name)
                return h.get_slice(name)[start:stop]
        except Exception as e:
            raise CheckpointError(f"{path}: tensor {name}: cannot read data ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class _Dict:
    """Adapter for an in-memory state dict."""

    def __init__(self, d: Mapping[str, torch.Tensor], source: str):
        self.d, self.source = d, source

    def __contains__(self, name):
        return name in self.d

    def keys(self):
        return self.d.keys()

    def label(self, name):
        return f"{self.source}: tensor {name}"

    def meta(self, name):
        t = self.d[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{self.label(name)}: not a tensor ({type(t).__name__})")
        return t.dtype, tuple(t.shape)

    def __getitem__(self, name):
        return self.d[name].detach().cpu()

    def rows(self, name, start, stop):
        t = self[name]
        return t if start is None else t[start:stop]


# -- the layout: every tensor's name, dtype and shape, checked before anything is allocated ------------

def _float_names(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the float tensors (embeddings, norms, LM head) of a model."""
    names = {"model.embed_tokens.weight": (c.vocab_size, c.hidden_size), "model.norm.weight": (c.hidden_size,)}
    if not c.tie_word_embeddings:
        names["lm_head.weight"] = (c.vocab_size, c.hidden_size)
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}"
        names[f"{p}.input_layernorm.weight"] = (c.hidden_size,)
        names[f"{p}.post_attention_layernorm.weight"] = (c.hidden_size,)
        if c.sub_norms:
            names[f"{p}.self_attn.attn_sub_norm.weight"] = (c.q_size,)
            names[f"{p}.mlp.ffn_sub_norm.weight"] = (c.intermediate_size,)
    return names


def _offline(qc: Optional[Mapping]) -> bool:
    return qc is not None and qc.get("quantization_mode", "offline") == "offline"


def check_layout(src, c: ModelConfig, qc: Optional[Mapping]) -> None:
    """Every tensor the model needs is there with a fitting dtype and shape, and no other tensor is
    (headers only: a config.json that does not match its tensors is rejected before any weight is
    read or any model memory is allocated)."""
    used = set()
    for name, shape in _float_names(c).items():
        used.add(name)
        if name not in src:
            raise CheckpointError(f"{src.label(name)}: missing tensor")
        dtype, got = src.meta(name)
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{src.label(name)}: dtype {dtype}, expected a float dtype")
        if got != shape:
            raise CheckpointError(f"{src.label(name)}: shape {got}, expected {shape}")
    if c.tie_word_embeddings:
        used.add("lm_head.weight")   # transformers ties it to the embeddings whatever the file holds
    offline = _offline(qc)
    for i in range(c.num_hidden_layers):
        for suffix, (out_f, in_f) in c.projection_shapes().items():
            prefix = f"model.layers.{i}.{suffix}"
            wname, sname = f"{prefix}.weight", f"{prefix}.weight_scale"
            used.update((wname, sname))
            if wname not in src:
                raise CheckpointError(f"{src.label(wname)}: missing tensor")
            dtype, shape = src.meta(wname)
            if dtype == torch.uint8:
                if not offline:
                    raise CheckpointError(f"{src.label(wname)}: packed uint8 weights need a bitnet "
                                          "quantization_config with quantization_mode 'offline' in config.json")
                if shape != (packed_rows(out_f), in_f):
                    raise CheckpointError(f"{src.label(wname)}: packed shape {shape}, expected "
                                          f"{(packed_rows(out_f), in_f)}")
            elif dtype in _FLOAT_DTYPES:
                if shape != (out_f, in_f):
                    raise CheckpointError(f"{src.label(wname)}: shape {shape}, expected {(out_f, in_f)}")
            else:
                raise CheckpointError(f"{src.label(wname)}: dtype {dtype}, expected uint8 (packed) or a float dtype")
            if offline:
                if sname not in src:
                    raise CheckpointError(f"{src.label(sname)}: missing tensor (offline bitnet checkpoints "
                                          "need weight_scale)")
                dtype, shape = src.meta(sname)
                if dtype not in _FLOAT_DTYPES:
                    raise CheckpointError(f"{src.label(sname)}: dtype {dtype}, expected a float dtype")
                if len(shape) > 1 or (shape[0] if shape else 1) != 1:
                    raise CheckpointError(f"{src.label(sname)}: shape {shape}, expected () or (1,)")
            elif sname in src:
                raise CheckpointError(f"{src.label(sname)}: unexpected weight_scale for float master weights "
                                      "(no offline bitnet quantization_config)")
    extra = sorted(k for k in src.keys() if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if extra:
        raise CheckpointError(f"{src.label(extra[0])}: unexpected tensor"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                              + " for this config")


# -- the values (after check_layout) -----------------------------------------------------------------

def _finite(src, name: str, t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{src.label(name)}: contains NaN or Inf")
    return t


#: rows of a large float tensor (the embeddings) read at once
FILL_ROWS = 4096


def _fill_float(src, name: str, dst: torch.Tensor) -> None:
    """Copies a float tensor into ``dst`` (converted to its dtype), :data:`FILL_ROWS` rows at a time
    for a large one (the embeddings: the whole file tensor and a converted copy never coexist)."""
    chunk_rows = FILL_ROWS
    if dst.dim() < 2 or dst.shape[0] <= chunk_rows:
        dst.copy_(_finite(src, name, src[name]))
        return
    for a in range(0, dst.shape[0], chunk_rows):
        b = min(a + chunk_rows, dst.shape[0])
        dst[a:b].copy_(_finite(src, name, src.rows(name, a, b)))


def _scale(src, name: str, linear_class: str) -> torch.Tensor:
    s = src[name].to(torch.float32).reshape(())
    if not bool(torch.isfinite(s)) or not float(s) > 0:
        raise CheckpointError(f"{src.label(name)}: value {float(s)!r} must be finite and > 0")
    if linear_class == "bitlinear":
        return torch.tensor(1.0, dtype=torch.float32) / s   # transformers' BitLinear divides by weight_scale
    return s                                               # AutoBitLinear multiplies by weight_scale


def _projection(src, prefix: str, out_f: int, in_f: int, qc: Optional[Mapping]) -> BitLinear:
    wname, sname = f"{prefix}.weight", f"{prefix}.weight_scale"
    offline = _offline(qc)
    linear_class = qc.get("linear_class", "bitlinear") if qc is not None else None
    w = src[wname]
    if w.dtype == torch.uint8:
        try:
            t = unpack_ternary(w, out_f)
        except PackingError as e:
            raise CheckpointError(f"{src.label(wname)}: {e}") from None
        return BitLinear.from_ternary(t, _scale(src, sname, linear_class), name=prefix)
    w = _finite(src, wname, w)
    if offline:
        if not bool(((w == -1) | (w == 0) | (w == 1)).all()):
            raise CheckpointError(f"{src.label(wname)}: offline-quantized float weights must hold only -1, 0, 1")
        return BitLinear.from_ternary(w, _scale(src, sname, linear_class), name=prefix)
    t, gamma = weight_quant(w)
    return BitLinear.from_ternary(t, gamma, name=prefix)


def _layer(src, c: ModelConfig, i: int, qc: Optional[Mapping]) -> DecoderLayer:
    """Decoder layer ``i`` built from its tensors (the layout already checked)."""
    layer = DecoderLayer(c, i)
    p = f"model.layers.{i}"
    with torch.no_grad():
        _fill_float(src, f"{p}.input_layernorm.weight", layer.input_layernorm.weight)
        _fill_float(src, f"{p}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
        if c.sub_norms:
            _fill_float(src, f"{p}.self_attn.attn_sub_norm.weight", layer.self_attn.attn_sub_norm.weight)
            _fill_float(src, f"{p}.mlp.ffn_sub_norm.weight", layer.mlp.ffn_sub_norm.weight)
        for suffix, (out_f, in_f) in c.projection_shapes().items():
            parent, attr = suffix.split(".")
            setattr(getattr(layer, parent), attr, _projection(src, f"{p}.{suffix}", out_f, in_f, qc))
    return layer


class LayerSequence(Sequence):
    """``n`` decoder layers, each built by ``build(i)`` when it is used and never kept (a model over
    them holds one layer at a time)."""

    def __init__(self, n: int, build):
        self.n, self.build = n, build

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"layer {i} out of range [0, {len(self)})")
        return self.build(i)


def CheckpointLayers(src, config: ModelConfig, quantization_config: Optional[Mapping]) -> LayerSequence:
    """The decoder layers of a checkpoint, each read from the files when it is used."""
    return LayerSequence(config.num_hidden_layers, lambda i: _layer(src, config, i, quantization_config))


#: rows of the LM head converted to float32 at once by :class:`LazyCausalLM`
LM_HEAD_ROWS = 4096


class LazyCausalLM(CausalLM):
    """A :class:`CausalLM` over a checkpoint's files: layers built when used (:class:`CheckpointLayers`),
    the embeddings (and an untied LM head) kept in the file's float dtype (bfloat16 for 2B4T: half
    the memory of float32). Exactly the reference's numbers: an embedding row becomes float32 (exact)
    before the first layer, and each logit is the reference's float32 dot product, the LM head being
    converted to float32 a block of :data:`LM_HEAD_ROWS` rows at a time."""

    def __init__(self, config: ModelConfig, src, quantization_config: Optional[Mapping]):
        with torch.device("meta"):   # nothing of the eager model's size is allocated
            super().__init__(config, layers=CheckpointLayers(src, config, quantization_config))
        c = config

        def read(name, shape):
            dtype = src.meta(name)[0]
            t = torch.empty(shape, dtype=dtype if dtype in (torch.float32, torch.float16, torch.bfloat16)
                            else torch.float32)
            _fill_float(src, name, t)
            return t

        self.embed_tokens = torch.nn.Embedding.from_pretrained(read("model.embed_tokens.weight",
                                                                    (c.vocab_size, c.hidden_size)), freeze=True)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        with torch.no_grad():
            _fill_float(src, "model.norm.weight", self.norm.weight)
        if not c.tie_word_embeddings:
            self.lm_head_weight = torch.nn.Parameter(read("lm_head.weight", (c.vocab_size, c.hidden_size)),
                                                     requires_grad=False)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        w = self.lm_head
        if w.dtype == torch.float32:
            return super().logits_from_hidden(h)
        flat = h.reshape(-1, h.shape[-1])
        out = torch.empty(flat.shape[0], w.shape[0], dtype=torch.float32)
        for a in range(0, w.shape[0], LM_HEAD_ROWS):
            block = w[a:a + LM_HEAD_ROWS].to(torch.float32)
            for i in range(flat.shape[0]):
                out[i, a:a + LM_HEAD_ROWS] = F.linear(flat[i], block)
        return out.reshape(*h.shape[:-1], w.shape[0])


def model_from_state_dict(config: ModelConfig, tensors, *, quantization_config: Optional[Mapping] = None,
                          source: str = "state dict", lazy: bool = False) -> CausalLM:
    """Builds a :class:`CausalLM` from HF-named tensors (a mapping, or the loader's file view).

    ``quantization_config`` is the config.json's (or None); see the module docstring for layouts. Every
    tensor's dtype and shape is checked against ``config`` first (:func:`check_layout`). ``lazy``: a
    :class:`LazyCausalLM` (layers built from the tensors when used, embeddings in their own dtype).
    """
    src = tensors if isinstance(tensors, (_Tensors, _Dict)) else _Dict(tensors, source)
    c = config
    check_layout(src, c, quantization_config)
    if lazy:
        return LazyCausalLM(c, src, quantization_config)
    layers = CheckpointLayers(src, c, quantization_config)
    model = CausalLM(c, layers=torch.nn.ModuleList(layers[i] for i in range(c.num_hidden_layers)))
    with torch.no_grad():
        _fill_float(src, "model.embed_tokens.weight", model.embed_tokens.weight)
        _fill_float(src, "model.norm.weight", model.norm.weight)
        if not c.tie_word_embeddings:
            _fill_float(src, "lm_head.weight", model.lm_head_weight)
    return model


def open_checkpoint(folder):
    """(raw config.json, :class:`ModelConfig`, the tensors' file view) of a checkpoint folder, the
    layout checked (headers only, nothing decoded)."""
    folder = Path(folder)
    raw, cfg = read_config(folder)
    src = _Tensors(folder)
    check_layout(src, cfg, raw.get("quantization_config"))
    return raw, cfg, src


def load_checkpoint(folder, *, lazy: bool = False) -> CausalLM:
    """Loads a Hugging Face BitNet checkpoint folder into the reference :class:`CausalLM`. With
    ``lazy=True`` the safetensors files stay on disk: the embeddings are read (a block of rows at a
    time) and each decoder layer is read from the memory map when the model uses it."""
    folder = Path(folder)
    raw, cfg = read_config(folder)
    src = _Tensors(folder)
    return model_from_state_dict(cfg, src, quantization_config=raw.get("quantization_config"), lazy=lazy)


# -- writing -----------------------------------------------------------------------------------------

def _reciprocal_scale(w_scale: torch.Tensor) -> torch.Tensor:
    """A float32 ``s`` with ``1/s == w_scale`` in float32 when one exists near ``1/w_scale``."""
    one = torch.tensor(1.0, dtype=torch.float32)
    s0 = one / w_scale
    cands = [s0]
    up = down = s0
    for _ in range(4):
        up = torch.nextafter(up, torch.tensor(float("inf")))
        down = torch.nextafter(down, torch.tensor(0.0))
        cands += [up, down]
    for s in cands:
        if torch.equal(one / s, w_scale):
            return s
    return s0


def save_checkpoint(model: CausalLM, folder, *, packed: bool = True, linear_class: str = "autobitlinear") -> Path:
    """Writes ``config.json`` and ``model.safetensors`` in the Hugging Face BitNet layout.

    ``packed=True``: uint8 2-bit weights + ``weight_scale`` (the microsoft/bitnet-b1.58-2B-4T layout);
    ``packed=False``: float32 ternary weights + ``weight_scale`` (what transformers' ``save_pretrained``
    writes for ``AutoBitLinear`` offline). ``quantization_config`` is
    ``{quant_method: bitnet, linear_class, quantization_mode: offline}``. With the default
    ``autobitlinear`` class ``weight_scale = w_scale`` and loading gives back bit-identical weights;
    with ``bitlinear`` (packed only) ``weight_scale`` is chosen so that ``1/weight_scale == w_scale`` in
    float32 whenever such a float32 exists (always for models loaded from such a checkpoint).
    Other files in ``folder`` are left alone; each file is written atomically.
    """
    if not isinstance(model, CausalLM):
        raise TypeError(f"model must be a CausalLM, got {type(model).__name__}")
    if linear_class not in ("autobitlinear", "bitlinear"):
        raise ValueError(f"linear_class={linear_class!r} must be 'autobitlinear' or 'bitlinear'")
    if not packed and linear_class != "autobitlinear":
        raise ValueError("unpacked (packed=False) checkpoints need linear_class='autobitlinear' "
                         "(transformers' BitLinear only holds packed uint8 weights)")
    from safetensors.torch import save_file

    c = model.config
    tensors: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": model.embed_tokens.weight.detach().clone().contiguous(),
        "model.norm.weight": model.norm.weight.detach().clone(),
    }
    if not c.tie_word_embeddings:
        tensors["lm_head.weight"] = model.lm_head_weight.detach().clone().contiguous()
    for i in range(c.num_hidden_layers):
        layer = model.layers[i]
        p = f"model.layers.{i}"
        tensors[f"{p}.input_layernorm.weight"] = layer.input_layernorm.weight.detach().clone()
        tensors[f"{p}.post_attention_layernorm.weight"] = layer.post_attention_layernorm.weight.detach().clone()
        if c.sub_norms:
            tensors[f"{p}.self_attn.attn_sub_norm.weight"] = layer.self_attn.attn_sub_norm.weight.detach().clone()
            tensors[f"{p}.mlp.ffn_sub_norm.weight"] = layer.mlp.ffn_sub_norm.weight.detach().clone()
        for suffix in PROJECTIONS:
            parent, attr = suffix.split(".")
            bl: BitLinear = getattr(getattr(layer, parent), attr)
            tensors[f"{p}.{suffix}.weight"] = pack_ternary(bl.T) if packed else bl.T.to(torch.float32)
            s = bl.w_scale.detach().reshape(())
            if linear_class == "bitlinear":
                s = _reciprocal_scale(s)
            tensors[f"{p}.{suffix}.weight_scale"] = s.reshape(1).clone()
    cfg = c.to_hf_dict()
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class,
                                  "quantization_mode": "offline"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(folder / "config.json",
                  lambda p: Path(p).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n"))
    return folder


