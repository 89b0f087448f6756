"""Shape presets of real BitNet b1.58 models, with random ternary weights of the real sizes.

| name   | model                              | hidden | interm. | layers | heads | kv | head_dim | vocab  | act   |
|--------|------------------------------------|--------|---------|--------|-------|----|----------|--------|-------|
| 2b4t   | microsoft/bitnet-b1.58-2B-4T       | 2560   | 6912    | 30     | 20    | 5  | 128      | 128256 | relu2 |
| 700m   | 1bitLLM/bitnet_b1_58-large         | 1536   | 4096    | 24     | 16    | 16 | 96       | 32002  | silu  |
| 1.3b   | 1bitLLM/bitnet_b1_58-xl            | 2048   | 5460    | 24     | 32    | 32 | 64       | 32002  | silu  |
| 3b     | 1bitLLM/bitnet_b1_58-3B            | 3200   | 8640    | 26     | 32    | 32 | 100      | 32002  | silu  |

Random weights are deterministic in ``(seed, layer_index)``: ternary codes uniform over {-1, 0, +1},
``w_scale`` uniform in [0.5, 1.5) / sqrt(in_features) (keeps activations O(1) through the stack), RMSNorm
weights ``1 + 0.1 * N(0, 1)``. A full 2b4t model holds ~2.1 GB of int8 ternary weights plus a 1.3 GB
float32 embedding, so :func:`random_model` builds its layers **lazily** (each one generated from its
seed when used, never stored), and :func:`random_layer` builds a single layer cheaply.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Optional

import torch

from .bitlinear import BitLinear
from .checkpoint import LayerSequence
from .config import ModelConfig
from .layers import DecoderLayer
from .model import CausalLM

__all__ = ["PRESETS", "preset_config", "layer_shapes", "random_layer", "random_model", "LazyLayers",
           "resolve_config"]

#: What the three 1bitLLM reproductions share (LLaMA blocks, SwiGLU, no sub-norms, one tokenizer).
_1BITLLM = dict(vocab_size=32002, num_hidden_layers=24, max_position_embeddings=2048, rms_norm_eps=1e-5,
                rope_theta=10000.0, hidden_act="silu", sub_norms=False, tie_word_embeddings=True,
                bos_token_id=1, eos_token_id=2, pad_token_id=32000, model_type="llama")

PRESETS: dict[str, ModelConfig] = {
    "2b4t": ModelConfig(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
                        num_attention_heads=20, num_key_value_heads=5, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, rope_theta=500000.0, hidden_act="relu2", sub_norms=True,
                        tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
                        model_type="bitnet"),
    "700m": ModelConfig(**_1BITLLM, hidden_size=1536, intermediate_size=4096, num_attention_heads=16,
                        num_key_value_heads=16),
    "1.3b": ModelConfig(**_1BITLLM, hidden_size=2048, intermediate_size=5460, num_attention_heads=32,
                        num_key_value_heads=32),
    "3b": ModelConfig(**{**_1BITLLM, "num_hidden_layers": 26}, hidden_size=3200, intermediate_size=8640,
                      num_attention_heads=32, num_key_value_heads=32),
}


def preset_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a shape preset (``2b4t``, ``700m``, ``1.3b``, ``3b``)."""
    if not isinstance(name, str) or name.lower() not in PRESETS:
        raise ValueError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name.lower()]


def resolve_config(name_or_config) -> ModelConfig:
    """``name_or_config`` itself if it is a :class:`ModelConfig`, else the preset of that name."""
    return name_or_config if isinstance(name_or_config, ModelConfig) else preset_config(name_or_config)


def layer_shapes(name_or_config) -> tuple:
    """``((name, N, K), ...)`` of the seven BitLinear projections of one decoder layer of a model (a
    preset name or a :class:`ModelConfig`), in layer order: ``q``, ``k``, ``v``, ``o``, ``gate``,
    ``up``, ``down`` (``N`` output, ``K`` input features). The one home of model shapes: the
    simulator workloads, benchmarks and the estimator take them from here."""
    c = resolve_config(name_or_config)
    return tuple((suffix.split(".")[-1].removesuffix("_proj"), n, k)
                 for suffix, (n, k) in c.projection_shapes().items())


def _generator(seed: int, salt: int) -> torch.Generator:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return torch.Generator().manual_seed((seed * 1_000_003 + salt) % (2**63))


def random_layer(name, layer_index: int, seed: int = 0) -> DecoderLayer:
    """One decoder layer of preset ``name`` (or a :class:`ModelConfig`) with random weights.

    Deterministic in ``(seed, layer_index)``; ``layer_index`` must be < num_hidden_layers.
    """
    c = resolve_config(name)
    if not isinstance(layer_index, int) or isinstance(layer_index, bool) or not 0 <= layer_index < c.num_hidden_layers:
        raise ValueError(f"layer_index={layer_index!r} must be in [0, {c.num_hidden_layers})")
    g = _generator(seed, 1 + layer_index)
    layer = DecoderLayer(c, layer_index)
    with torch.no_grad():
        for norm in (layer.input_layernorm, layer.post_attention_layernorm,
                     layer.self_attn.attn_sub_norm, layer.mlp.ffn_sub_norm):
            if norm is not None:
                norm.weight.copy_(1.0 + 0.1 * torch.randn(norm.weight.shape, generator=g))
        for bl in [m for m in layer.modules() if isinstance(m, BitLinear)]:
            bl.T.copy_(torch.randint(-1, 2, bl.T.shape, generator=g, dtype=torch.int8))
            u = float(torch.rand((), generator=g))
            bl.w_scale.fill_((0.5 + u) / math.sqrt(bl.in_features))
    return layer


class _LayerCache:
    """The random layers generated so far in this process, keyed by ``(config, seed, index)``, least
    recently used first out beyond ``$TERN_PRESET_CACHE_MB`` (default 4096 MiB) of tensors: a layer
    is generated once and shared by every model that uses it (the device and the reference pass of
    ``tern run``). Layers hold no state between calls (the KV cache is the caller's)."""

    def __init__(self):
        self._items: OrderedDict = OrderedDict()
        self.nbytes = 0

    def get(self, config: ModelConfig, index: int, seed: int) -> DecoderLayer:
        key = (config, seed, index)
        layer = self._items.get(key)
        if layer is not None:
            self._items.move_to_end(key)
            return layer
        layer = random_layer(config, index, seed)
        budget = int(float(os.environ.get("TERN_PRESET_CACHE_MB", "4096")) * (1 << 20))
        size = sum(t.numel() * t.element_size() for t in (*layer.parameters(), *layer.buffers()))
        if size <= budget:
            self._items[key] = layer
            self.nbytes += size
            while self.nbytes > budget:
                _, old = self._items.popitem(last=False)
                self.nbytes -= sum(t.numel() * t.element_size() for t in (*old.parameters(), *old.buffers()))
        return layer


_LAYERS = _LayerCache()


class LazyLayers(LayerSequence):
    """A read-only sequence of random layers generated on first access (kept in a per-process cache,
    shared by every model of the same preset and seed: :class:`_LayerCache`)."""

    def __init__(self, config: ModelConfig, seed: int):
        self.config, self.seed = config, seed
        super().__init__(config.num_hidden_layers, lambda i: _LAYERS.get(config, i, seed))


def random_model(name, seed: int = 0, *, num_layers: Optional[int] = None, lazy: bool = True) -> CausalLM:
    """A :class:`CausalLM` of preset ``name`` with random weights.

    ``num_layers`` keeps only the first layers (a cheaper model of the same layer shapes). With
    ``lazy=True`` (default) each layer is generated from the seed when first used and kept in a
    per-process cache shared by every such model (:class:`LazyLayers`; bounded by
    ``$TERN_PRESET_CACHE_MB``, beyond which the least recently used are generated again).
    """
    c = resolve_config(name)
    if num_layers is not None:
        if not isinstance(num_layers, int) or not 1 <= num_layers <= c.num_hidden_layers:
            raise ValueError(f"num_layers={num_layers!r} must be in [1, {c.num_hidden_layers}]")
        c = c.replace(num_hidden_layers=num_layers)
    layers = LazyLayers(c, seed) if lazy else torch.nn.ModuleList(random_layer(c, i, seed)
                                                                  for i in range(c.num_hidden_layers))
    model = CausalLM(c, layers=layers)
    g = _generator(seed, 0)
    with torch.no_grad():
        model.embed_tokens.weight.copy_(torch.randn(model.embed_tokens.weight.shape, generator=g))
        model.norm.weight.copy_(1.0 + 0.1 * torch.randn(model.norm.weight.shape, generator=g))
        if model.lm_head_weight is not None:
            model.lm_head_weight.copy_(torch.randn(model.lm_head_weight.shape, generator=g)
                                       / math.sqrt(c.hidden_size))
    return model
