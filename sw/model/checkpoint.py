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
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from hw.fileio import atomic_write

from .bitlinear import BitLinear
from .config import ConfigError, ModelConfig
from .layers import DecoderLayer
from .model import CausalLM
from .packing import PackingError, pack_ternary, packed_rows, unpack_ternary
from .quant import weight_quant

__all__ = ["CheckpointError", "load_checkpoint", "read_config", "model_from_state_dict", "save_checkpoint",
           "PROJECTIONS"]

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A bad or unsupported checkpoint (one line naming the file and tensor)."""


# -- reading -----------------------------------------------------------------------------------------

def read_config(folder) -> tuple[dict, ModelConfig]:
    """Reads ``folder/config.json``; returns (raw dict, :class:`ModelConfig`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing config.json")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot parse JSON ({e})") from None
    try:
        cfg = ModelConfig.from_hf_dict(raw)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return raw, cfg


class _Tensors:
    """Name -> tensor over the checkpoint's safetensors files (read on demand)."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self._open = safe_open
        self.folder = folder
        index = folder / "model.safetensors.index.json"
        self.where: dict[str, Path] = {}
        if index.is_file():
            try:
                wm = json.loads(index.read_text())["weight_map"]
                if not isinstance(wm, dict):
                    raise TypeError("weight_map is not an object")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{index}: bad index file ({e})") from None
            files = sorted({str(f) for f in wm.values()})
            for f in files:
                if not (folder / f).is_file():
                    raise CheckpointError(f"{folder / f}: safetensors file named in {index.name} is missing")
            for f in files:
                keys = self._keys(folder / f)
                for name, fn in wm.items():
                    if fn == f and name not in keys:
                        raise CheckpointError(f"{folder / f}: tensor {name} listed in {index.name} is not in the file")
                for name in keys:
                    if wm.get(name) == f:
                        self.where[name] = folder / f
        else:
            files = sorted(folder.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{folder}: no *.safetensors files")
            for f in files:
                for name in self._keys(f):
                    if name in self.where:
                        raise CheckpointError(f"{f}: tensor {name} also appears in {self.where[name].name}")
                    self.where[name] = f
        self._handles: dict[Path, Any] = {}
        self.files = sorted({p.name for p in self.where.values()})

    def _keys(self, path: Path) -> list[str]:
        try:
            with self._open(str(path), framework="pt") as h:
                return list(h.keys())
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
            raise CheckpointError(f"{path}: cannot read safetensors file ({_one_line(e)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def keys(self):
        return self.where.keys()

    def label(self, name: str) -> str:
        f = self.where.get(name)
        if f is None:   # not in any file: name the folder and the files searched
            return f"{self.folder} [{', '.join(self.files)}]: tensor {name}"
        return f"{f}: tensor {name}"

    def __getitem__(self, name: str) -> torch.Tensor:
        path = self.where[name]
        try:
            h = self._handles.get(path)
            if h is None:
                h = self._handles[path] = self._open(str(path), framework="pt")
            return h.get_tensor(name)
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

    def __getitem__(self, name):
        t = self.d[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{self.label(name)}: not a tensor ({type(t).__name__})")
        return t.detach().cpu()


def _float_tensor(src, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in src:
        raise CheckpointError(f"{src.label(name)}: missing tensor")
    t = src[name]
    if t.dtype not in _FLOAT_DTYPES:
        raise CheckpointError(f"{src.label(name)}: dtype {t.dtype}, expected a float dtype")
    if tuple(t.shape) != shape:
        raise CheckpointError(f"{src.label(name)}: shape {tuple(t.shape)}, expected {shape}")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{src.label(name)}: contains NaN or Inf")
    return t


def _scale(src, name: str, linear_class: str) -> torch.Tensor:
    if name not in src:
        raise CheckpointError(f"{src.label(name)}: missing tensor (offline bitnet checkpoints need weight_scale)")
    s = src[name]
    if s.dtype not in _FLOAT_DTYPES:
        raise CheckpointError(f"{src.label(name)}: dtype {s.dtype}, expected a float dtype")
    if s.numel() != 1 or s.dim() > 1:
        raise CheckpointError(f"{src.label(name)}: shape {tuple(s.shape)}, expected () or (1,)")
    s = s.to(torch.float32).reshape(())
    if not bool(torch.isfinite(s)) or not float(s) > 0:
        raise CheckpointError(f"{src.label(name)}: value {float(s)!r} must be finite and > 0")
    if linear_class == "bitlinear":
        return torch.tensor(1.0, dtype=torch.float32) / s   # transformers' BitLinear divides by weight_scale
    return s                                               # AutoBitLinear multiplies by weight_scale


def _projection(src, prefix: str, out_f: int, in_f: int, qc: Optional[Mapping]) -> BitLinear:
    wname, sname = f"{prefix}.weight", f"{prefix}.weight_scale"
    if wname not in src:
        raise CheckpointError(f"{src.label(wname)}: missing tensor")
    offline = qc is not None and qc.get("quantization_mode", "offline") == "offline"
    linear_class = qc.get("linear_class", "bitlinear") if qc is not None else None
    w = src[wname]
    if w.dtype == torch.uint8:
        if not offline:
            raise CheckpointError(f"{src.label(wname)}: packed uint8 weights need a bitnet quantization_config "
                                  "with quantization_mode 'offline' in config.json")
        if tuple(w.shape) != (packed_rows(out_f), in_f):
            raise CheckpointError(f"{src.label(wname)}: packed shape {tuple(w.shape)}, expected "
                                  f"{(packed_rows(out_f), in_f)}")
        try:
            t = unpack_ternary(w, out_f)
        except PackingError as e:
            raise CheckpointError(f"{src.label(wname)}: {e}") from None
        return BitLinear.from_ternary(t, _scale(src, sname, linear_class), name=prefix)
    if w.dtype not in _FLOAT_DTYPES:
        raise CheckpointError(f"{src.label(wname)}: dtype {w.dtype}, expected uint8 (packed) or a float dtype")
    if tuple(w.shape) != (out_f, in_f):
        raise CheckpointError(f"{src.label(wname)}: shape {tuple(w.shape)}, expected {(out_f, in_f)}")
    w = w.to(torch.float32)
    if not bool(torch.isfinite(w).all()):
        raise CheckpointError(f"{src.label(wname)}: contains NaN or Inf")
    if offline:
        if not bool(((w == -1) | (w == 0) | (w == 1)).all()):
            raise CheckpointError(f"{src.label(wname)}: offline-quantized float weights must hold only -1, 0, 1")
        return BitLinear.from_ternary(w, _scale(src, sname, linear_class), name=prefix)
    if sname in src:
        raise CheckpointError(f"{src.label(sname)}: unexpected weight_scale for float master weights "
                              "(no offline bitnet quantization_config)")
    t, gamma = weight_quant(w)
    return BitLinear.from_ternary(t, gamma, name=prefix)


def model_from_state_dict(config: ModelConfig, tensors, *, quantization_config: Optional[Mapping] = None,
                          source: str = "state dict") -> CausalLM:
    """Builds a :class:`CausalLM` from HF-named tensors (a mapping, or the loader's file view).

    ``quantization_config`` is the config.json's (or None); see the module docstring for layouts.
    """
    src = tensors if isinstance(tensors, (_Tensors, _Dict)) else _Dict(tensors, source)
    c = config
    model = CausalLM(c)
    used = set()

    def take_float(name, shape):
        used.add(name)
        return _float_tensor(src, name, shape)

    with torch.no_grad():
        model.embed_tokens.weight.copy_(take_float("model.embed_tokens.weight", (c.vocab_size, c.hidden_size)))
        model.norm.weight.copy_(take_float("model.norm.weight", (c.hidden_size,)))
        if c.tie_word_embeddings:
            used.add("lm_head.weight")   # transformers ties it to the embeddings whatever the file holds
        else:
            model.lm_head_weight.copy_(take_float("lm_head.weight", (c.vocab_size, c.hidden_size)))
        shapes = c.projection_shapes()
        for i in range(c.num_hidden_layers):
            layer: DecoderLayer = model.layers[i]
            p = f"model.layers.{i}"
            layer.input_layernorm.weight.copy_(take_float(f"{p}.input_layernorm.weight", (c.hidden_size,)))
            layer.post_attention_layernorm.weight.copy_(
                take_float(f"{p}.post_attention_layernorm.weight", (c.hidden_size,)))
            if c.sub_norms:
                layer.self_attn.attn_sub_norm.weight.copy_(
                    take_float(f"{p}.self_attn.attn_sub_norm.weight", (c.q_size,)))
                layer.mlp.ffn_sub_norm.weight.copy_(
                    take_float(f"{p}.mlp.ffn_sub_norm.weight", (c.intermediate_size,)))
            for suffix in PROJECTIONS:
                out_f, in_f = shapes[suffix]
                name = f"{p}.{suffix}"
                bl = _projection(src, name, out_f, in_f, quantization_config)
                used.update({f"{name}.weight", f"{name}.weight_scale"})
                parent, attr = suffix.split(".")
                setattr(getattr(layer, parent), attr, bl)
    extra = sorted(k for k in src.keys() if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if extra:
        raise CheckpointError(f"{src.label(extra[0])}: unexpected tensor"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                              + " for this config")
    return model


def load_checkpoint(folder) -> CausalLM:
    """Loads a Hugging Face BitNet checkpoint folder into the reference :class:`CausalLM`."""
    folder = Path(folder)
    raw, cfg = read_config(folder)
    src = _Tensors(folder)
    return model_from_state_dict(cfg, src, quantization_config=raw.get("quantization_config"))


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


