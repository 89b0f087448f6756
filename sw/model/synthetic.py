"""Synthetic checkpoints with a real model's exact layout (``docs/MODEL.md``, "Full-size checkpoints").

:func:`write_synthetic_checkpoint` writes a Hugging Face folder whose tensor names, dtypes and shapes
are those of microsoft/bitnet-b1.58-2B-4T (the default ``2b4t`` preset of :mod:`sw.model.presets`, or
any :class:`~sw.model.config.ModelConfig` of the ``bitnet`` family): bfloat16 embeddings and norms,
projections as packed uint8 (``ceil(out/4), in``: :mod:`sw.model.packing`) with a bfloat16
``weight_scale`` of shape ``(1,)``, tied embeddings, ``quantization_config`` bitnet offline. Values
are random and deterministic in ``(seed, tensor)``; the file is written one tensor at a time
(:class:`sw.model.convert.SafetensorsWriter`), so generating the 1.2 GB 2B4T folder needs little memory.

:func:`synthetic_reference_model` builds the same model straight from the generator (no file is
read; its layers are generated when used), the reference a loaded folder must equal bit for bit.

``python -m sw.model.synthetic FOLDER [--preset 2b4t] [--layers N] [--seed S]`` writes a folder.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import torch

from hw.fileio import atomic_write_many

from .bitlinear import BitLinear
from .checkpoint import PROJECTIONS, LayerSequence, _float_names
from .config import ModelConfig
from .layers import DecoderLayer
from .model import CausalLM
from .packing import pack_ternary, packed_rows
from .presets import resolve_config

__all__ = ["write_synthetic_checkpoint", "synthetic_reference_model", "synthetic_config"]

_ROWS = 8192   # rows of a large float tensor generated at once


def synthetic_config(name_or_config="2b4t", *, num_layers: Optional[int] = None) -> ModelConfig:
    c = resolve_config(name_or_config)
    if c.model_type != "bitnet":
        raise ValueError(f"synthetic checkpoints have the 2B4T (bitnet) layout; {c.model_type!r} is not it")
    return c if num_layers is None else c.replace(num_hidden_layers=num_layers)


def _gen(seed: int, *salt: int) -> torch.Generator:
    h = seed
    for s in salt:
        h = (h * 1_000_003 + s + 1) % (2**63)
    return torch.Generator().manual_seed(h)


def _float_rows(seed: int, index: int, name: str, shape: tuple, a: int, b: int) -> torch.Tensor:
    """Rows ``a:b`` of float tensor number ``index`` (bfloat16): embeddings N(0, 1), norms 1 + 0.1 N(0, 1).
    A 2-D tensor is generated in fixed blocks of rows, so any row range gives the same values."""
    if len(shape) == 1:
        x = 1.0 + 0.1 * torch.randn(shape, generator=_gen(seed, index, 0))
        return x.to(torch.bfloat16)[a:b]
    chunks = []
    for start in range(a - a % _ROWS, b, _ROWS):
        n = min(_ROWS, shape[0] - start)
        x = torch.randn((n, *shape[1:]), generator=_gen(seed, index, start))
        chunks.append(x.to(torch.bfloat16)[max(a - start, 0):b - start])
    return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


def _ternary(seed: int, layer: int, k: int, out_f: int, in_f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T int8, weight_scale bfloat16 (1,)) of projection ``k`` of ``layer``."""
    g = _gen(seed, 1_000 + layer, k)
    t = torch.randint(-1, 2, (out_f, in_f), generator=g, dtype=torch.int8)
    u = float(torch.rand((), generator=g))
    return t, torch.tensor([(0.5 + u) / math.sqrt(in_f)], dtype=torch.bfloat16)


def write_synthetic_checkpoint(folder, config="2b4t", *, seed: int = 0, num_layers: Optional[int] = None) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` (the 2B4T layout, random values) into ``folder``."""
    from .convert import SafetensorsWriter
    c = synthetic_config(config, num_layers=num_layers)
    if not c.tie_word_embeddings:
        raise ValueError("synthetic checkpoints have 2B4T's tied embeddings")
    floats = _float_names(c)
    specs = [(n, torch.bfloat16, shape) for n, shape in floats.items()]
    shapes = c.projection_shapes()
    for i in range(c.num_hidden_layers):
        for suffix in PROJECTIONS:
            out_f, in_f = shapes[suffix]
            specs.append((f"model.layers.{i}.{suffix}.weight", torch.uint8, (packed_rows(out_f), in_f)))
            specs.append((f"model.layers.{i}.{suffix}.weight_scale", torch.bfloat16, (1,)))

    def write_model(tmp: Path):
        with open(tmp, "wb") as f:
            w = SafetensorsWriter(f, specs, {"format": "pt"})
            for index, (name, shape) in enumerate(floats.items()):
                if len(shape) == 1:
                    w.write(name, _float_rows(seed, index, name, shape, 0, shape[0]))
                    continue
                # a large tensor: its rows go out a block at a time
                w.begin(name)
                for a in range(0, shape[0], _ROWS):
                    w.write_part(_float_rows(seed, index, name, shape, a, min(a + _ROWS, shape[0])))
                w.end()
            for i in range(c.num_hidden_layers):
                for k, suffix in enumerate(PROJECTIONS):
                    t, s = _ternary(seed, i, k, *shapes[suffix])
                    w.write(f"model.layers.{i}.{suffix}.weight", pack_ternary(t))
                    w.write(f"model.layers.{i}.{suffix}.weight_scale", s)
            w.close()

    cfg = c.to_hf_dict()
    cfg["torch_dtype"] = "bfloat16"
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                  "quantization_mode": "offline"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_many({folder / "model.safetensors": write_model,
                       folder / "config.json": lambda p: p.write_text(json.dumps(cfg, indent=2) + "\n")})
    return folder


def _generated_layer(c: ModelConfig, seed: int, i: int) -> DecoderLayer:
    """Layer ``i`` as :func:`write_synthetic_checkpoint` writes it, from the generator."""
    floats = list(_float_names(c))
    layer = DecoderLayer(c, i)
    p = f"model.layers.{i}"
    norms = {"input_layernorm": layer.input_layernorm, "post_attention_layernorm": layer.post_attention_layernorm,
             "self_attn.attn_sub_norm": layer.self_attn.attn_sub_norm, "mlp.ffn_sub_norm": layer.mlp.ffn_sub_norm}
    with torch.no_grad():
        for n, norm in norms.items():
            name = f"{p}.{n}.weight"
            shape = tuple(norm.weight.shape)
            norm.weight.copy_(_float_rows(seed, floats.index(name), name, shape, 0, shape[0]).to(torch.float32))
        shapes = c.projection_shapes()
        for k, suffix in enumerate(PROJECTIONS):
            t, s = _ternary(seed, i, k, *shapes[suffix])
            parent, attr = suffix.split(".")
            setattr(getattr(layer, parent), attr, BitLinear.from_ternary(t, s.to(torch.float32)[0],
                                                                         name=f"{p}.{suffix}"))
    return layer


def synthetic_reference_model(config="2b4t", *, seed: int = 0, num_layers: Optional[int] = None) -> CausalLM:
    """The model :func:`write_synthetic_checkpoint` writes, built from the generator (layers generated
    when used; the autobitlinear ``w_scale`` is the bfloat16 ``weight_scale`` as float32)."""
    c = synthetic_config(config, num_layers=num_layers)
    model = CausalLM(c, layers=LayerSequence(c.num_hidden_layers, lambda i: _generated_layer(c, seed, i)))
    floats = _float_names(c)
    with torch.no_grad():
        for index, (name, shape) in enumerate(floats.items()):
            if name == "model.embed_tokens.weight":
                w = model.embed_tokens.weight
                for a in range(0, shape[0], _ROWS):
                    b = min(a + _ROWS, shape[0])
                    w[a:b].copy_(_float_rows(seed, index, name, shape, a, b).to(torch.float32))
            elif name == "model.norm.weight":
                model.norm.weight.copy_(_float_rows(seed, index, name, shape, 0, shape[0]).to(torch.float32))
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sw.model.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--preset", default="2b4t")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N layers")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    folder = write_synthetic_checkpoint(a.folder, a.preset, seed=a.seed, num_layers=a.layers)
    print(f"{folder}: {(folder / 'model.safetensors').stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
