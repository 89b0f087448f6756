"""BitNet b1.58 transformer blocks in float32 on the CPU, following transformers' ``BitNetForCausalLM``.

Host-side ops (RMSNorm, RoPE, softmax attention, activations, residuals) are float32 and mirror
transformers 4.57's ``modeling_bitnet.py`` operation by operation; every projection is a
:class:`~sw.model.bitlinear.BitLinear` whose integer core can be replaced through the ``core=`` argument
(see :mod:`sw.model.bitlinear`).

Attention is computed **one query position at a time** over the keys it may see (``0..pos``), each with
the same tensor shapes and layouts whether the position comes from a prefill or from a KV-cache decode
step. That makes a cached decode bit-identical (``torch.equal``) to a full forward, at a small cost
(a loop of ``T`` batched matmuls per layer).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bitlinear import BitLinear, Core
from .config import ModelConfig

__all__ = ["RMSNorm", "RotaryEmbedding", "LayerKV", "KVCache", "Attention", "MLP", "DecoderLayer",
           "rotate_half", "repeat_kv"]


class RMSNorm(nn.Module):
    """``weight * (x * rsqrt(mean(x**2) + eps))`` in float32 (transformers' ``BitNetRMSNorm``)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=torch.float32), requires_grad=False)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, L, d) -> (B, n_kv * n_rep, L, d), each KV head repeated for its query group."""
    if n_rep == 1:
        return x
    b, n_kv, length, d = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, length, d).reshape(b, n_kv * n_rep, length, d)


class RotaryEmbedding(nn.Module):
    """Default RoPE (half-split), ``inv_freq = 1 / theta ** (arange(0, d, 2) / d)`` as transformers."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (T, head_dim) for integer ``positions`` (T,)."""
        freqs = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class LayerKV:
    """One layer's cache: keys (after RoPE) and values, each (B, n_kv, L, head_dim) float32."""

    def __init__(self):
        self.k: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            if k.shape[0] != self.k.shape[0]:
                raise ValueError(f"KV cache batch size {self.k.shape[0]} != input batch size {k.shape[0]}")
            self.k = torch.cat((self.k, k), dim=2)
            self.v = torch.cat((self.v, v), dim=2)
        return self.k, self.v


class KVCache:
    """Per-layer KV caches of a model; ``seq_len`` is the number of positions already processed."""

    def __init__(self, num_layers: int):
        self.layers = [LayerKV() for _ in range(num_layers)]

    @property
    def seq_len(self) -> int:
        return self.layers[0].length if self.layers else 0

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


class Attention(nn.Module):
    """Causal self-attention with GQA, RoPE, optional ``attn_sub_norm`` before ``o_proj``."""

    def __init__(self, config: ModelConfig, prefix: str = "self_attn"):
        super().__init__()
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.n_rep = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = BitLinear(c.hidden_size, c.q_size, name=f"{prefix}.q_proj")
        self.k_proj = BitLinear(c.hidden_size, c.kv_size, name=f"{prefix}.k_proj")
        self.v_proj = BitLinear(c.hidden_size, c.kv_size, name=f"{prefix}.v_proj")
        self.o_proj = BitLinear(c.q_size, c.hidden_size, name=f"{prefix}.o_proj")
        self.attn_sub_norm = RMSNorm(c.q_size, c.rms_norm_eps) if c.sub_norms else None
        self.rotary = RotaryEmbedding(c.head_dim, c.rope_theta)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: Optional[LayerKV] = None,
                core: Optional[Core] = None) -> torch.Tensor:
        b, t, _ = x.shape
        if cache is not None and cache.length != start_pos:
            raise ValueError(f"KV cache holds {cache.length} positions but start_pos={start_pos}")
        q = self.q_proj(x, core).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x, core).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x, core).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(torch.arange(start_pos, start_pos + t))
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        if cache is not None:
            k_all, v_all = cache.append(k, v)
        else:
            k_all, v_all = k, v
        k_all, v_all = repeat_kv(k_all, self.n_rep), repeat_kv(v_all, self.n_rep)
        out = torch.empty(b, self.num_heads, t, self.head_dim, dtype=torch.float32)
        for i in range(t):
            n = start_pos + i + 1 if cache is not None else i + 1
            qi = q[:, :, i:i + 1].contiguous()
            ki = k_all[:, :, :n].contiguous()
            vi = v_all[:, :, :n].contiguous()
            scores = torch.matmul(qi, ki.transpose(2, 3)) * self.scaling
            probs = F.softmax(scores, dim=-1, dtype=torch.float32)
            out[:, :, i:i + 1] = torch.matmul(probs, vi)
        a = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        if self.attn_sub_norm is not None:
            a = self.attn_sub_norm(a)
        return self.o_proj(a, core)


class MLP(nn.Module):
    """``down(sub_norm(act(gate(x)) * up(x)))``; act relu2 (``relu(x)**2``) or silu (SwiGLU)."""

    def __init__(self, config: ModelConfig, prefix: str = "mlp"):
        super().__init__()
        c = config
        self.act = c.hidden_act
        self.gate_proj = BitLinear(c.hidden_size, c.intermediate_size, name=f"{prefix}.gate_proj")
        self.up_proj = BitLinear(c.hidden_size, c.intermediate_size, name=f"{prefix}.up_proj")
        self.down_proj = BitLinear(c.intermediate_size, c.hidden_size, name=f"{prefix}.down_proj")
        self.ffn_sub_norm = RMSNorm(c.intermediate_size, c.rms_norm_eps) if c.sub_norms else None

    def forward(self, x: torch.Tensor, core: Optional[Core] = None) -> torch.Tensor:
        g = self.gate_proj(x, core)
        g = torch.square(F.relu(g)) if self.act == "relu2" else F.silu(g)
        h = g * self.up_proj(x, core)
        if self.ffn_sub_norm is not None:
            h = self.ffn_sub_norm(h)
        return self.down_proj(h, core)


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x += attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x))``."""

    def __init__(self, config: ModelConfig, layer_index: int = 0):
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        prefix = f"model.layers.{layer_index}"
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, f"{prefix}.self_attn")
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config, f"{prefix}.mlp")

    def bitlinears(self) -> dict[str, BitLinear]:
        """The seven projections by their dotted names (``model.layers.I.self_attn.q_proj``, ...)."""
        return {m.name: m for m in self.modules() if isinstance(m, BitLinear)}

    @torch.no_grad()
    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: Optional[LayerKV] = None,
                core: Optional[Core] = None) -> torch.Tensor:
        """x: float32 (B, T, hidden) at positions ``start_pos .. start_pos+T-1`` -> (B, T, hidden)."""
        if x.dim() != 3 or x.shape[-1] != self.config.hidden_size:
            raise ValueError(f"layer input must be (B, T, {self.config.hidden_size}), got {tuple(x.shape)}")
        x = x.to(torch.float32)
        h = x + self.self_attn(self.input_layernorm(x), start_pos, cache, core)
        return h + self.mlp(self.post_attention_layernorm(h), core)
