"""Decoder blocks: norms and RoPE against transformers, GQA head mapping, KV-cache exactness."""

import math

import pytest
import torch

from sw.model.config import ModelConfig
from sw.model.layers import DecoderLayer, LayerKV, RMSNorm, RotaryEmbedding
from sw.model.presets import random_layer


def _cfg(**kw):
    base = dict(vocab_size=32, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0)
    base.update(kw)
    return ModelConfig(**base)


def test_rmsnorm_equals_transformers():
    from transformers.models.bitnet.modeling_bitnet import BitNetRMSNorm
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 48, generator=g) * 7
    w = torch.randn(48, generator=g)
    ours, theirs = RMSNorm(48, 1e-5), BitNetRMSNorm(48, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(w)
        theirs.weight.copy_(w)
        assert torch.equal(ours(x), theirs(x))


def test_rope_equals_transformers():
    from transformers import BitNetConfig
    from transformers.models.bitnet.modeling_bitnet import BitNetRotaryEmbedding
    hc = BitNetConfig(hidden_size=64, num_attention_heads=4, rope_theta=500000.0)
    theirs = BitNetRotaryEmbedding(hc)
    pos = torch.arange(0, 37)
    cos_t, sin_t = theirs(torch.zeros(1, dtype=torch.float32), pos[None])
    cos, sin = RotaryEmbedding(16, 500000.0)(pos)
    assert torch.equal(cos, cos_t[0]) and torch.equal(sin, sin_t[0])


def _naive_layer(layer: DecoderLayer, x: torch.Tensor) -> torch.Tensor:
    """Straightforward float64 re-derivation: full-matrix causal softmax, explicit GQA head mapping."""
    c = layer.config
    a = layer.self_attn
    b, t, _ = x.shape
    h = layer.input_layernorm(x)
    q = a.q_proj(h).double().view(b, t, c.num_attention_heads, c.head_dim)
    k = a.k_proj(h).double().view(b, t, c.num_key_value_heads, c.head_dim)
    v = a.v_proj(h).double().view(b, t, c.num_key_value_heads, c.head_dim)
    half = c.head_dim // 2
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float64) / c.head_dim))
    ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]

    def rope(z):
        z1, z2 = z[..., :half], z[..., half:]
        return torch.cat((z1 * cos - z2 * sin, z2 * cos + z1 * sin), dim=-1)

    q, k = rope(q), rope(k)
    rep = c.num_attention_heads // c.num_key_value_heads
    out = torch.zeros(b, t, c.num_attention_heads, c.head_dim, dtype=torch.float64)
    for head in range(c.num_attention_heads):
        kv = head // rep
        s = torch.einsum("bid,bjd->bij", q[:, :, head], k[:, :, kv]) / math.sqrt(c.head_dim)
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        out[:, :, head] = torch.einsum("bij,bjd->bid", s.softmax(-1), v[:, :, kv])
    o = out.reshape(b, t, -1).float()
    if a.attn_sub_norm is not None:
        o = a.attn_sub_norm(o)
    x1 = x + a.o_proj(o)
    m = layer.mlp
    h2 = layer.post_attention_layernorm(x1)
    g = m.gate_proj(h2)
    g = torch.relu(g) ** 2 if c.hidden_act == "relu2" else g * torch.sigmoid(g)
    hh = g * m.up_proj(h2)
    if m.ffn_sub_norm is not None:
        hh = m.ffn_sub_norm(hh)
    return x1 + m.down_proj(hh)


@pytest.mark.parametrize("kw", [dict(), dict(num_key_value_heads=1), dict(num_key_value_heads=4),
                                dict(hidden_act="silu", sub_norms=False)])
def test_layer_matches_naive_float64_derivation(kw):
    c = _cfg(**kw)
    layer = random_layer(c, 1, seed=3)
    x = torch.randn(2, 9, 64, generator=torch.Generator().manual_seed(1))
    y = layer(x)
    assert y.shape == (2, 9, 64) and y.dtype == torch.float32
    # tolerance: float64 vs float32 attention; an act_quant rounding flip would exceed it
    torch.testing.assert_close(y, _naive_layer(layer, x), rtol=1e-5, atol=1e-5)


def test_gqa_equals_mha_with_duplicated_kv_heads():
    c_gqa = _cfg(num_attention_heads=4, num_key_value_heads=2)
    c_mha = _cfg(num_attention_heads=4, num_key_value_heads=4)
    gqa = random_layer(c_gqa, 0, seed=5)
    mha = random_layer(c_mha, 0, seed=5)
    sd = {k: v for k, v in gqa.state_dict().items() if ".k_proj." not in k and ".v_proj." not in k}
    mha.load_state_dict(sd, strict=False)  # norms, q, o, mlp
    hd = c_gqa.head_dim
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa.self_attn, name), getattr(mha.self_attn, name)
            heads = src.T.view(2, hd, -1)
            dst.T.copy_(heads.repeat_interleave(2, dim=0).reshape(4 * hd, -1))  # query head h uses kv h//2
            dst.w_scale.copy_(src.w_scale)
    x = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(gqa(x), mha(x))


def test_kv_cache_chunks_equal_full_forward():
    layer = random_layer(_cfg(), 0, seed=7)
    x = torch.randn(2, 10, 64, generator=torch.Generator().manual_seed(3))
    full = layer(x)
    cache = LayerKV()
    parts = [layer(x[:, :4], 0, cache), layer(x[:, 4:5], 4, cache), layer(x[:, 5:], 5, cache)]
    assert cache.length == 10
    assert torch.equal(torch.cat(parts, dim=1), full)


def test_layer_errors():
    layer = random_layer(_cfg(), 0)
    with pytest.raises(ValueError, match="layer input"):
        layer(torch.zeros(2, 64))
    cache = LayerKV()
    layer(torch.zeros(1, 3, 64), 0, cache)
    with pytest.raises(ValueError, match="start_pos"):
        layer(torch.zeros(1, 1, 64), 2, cache)


def test_bitlinear_names_follow_transformers():
    names = sorted(random_layer(_cfg(), 1).bitlinears())
    assert names == sorted(f"model.layers.1.{p}" for p in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
