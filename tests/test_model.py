"""CausalLM (shapes, KV-cache decode, greedy generation, the core hook), ModelConfig and presets."""

import pytest
import torch

from sw.model.bitlinear import reference_core
from sw.model.config import ConfigError, ModelConfig
from sw.model.presets import PRESETS, LazyLayers, preset_config, random_layer, random_model


def _cfg(**kw):
    base = dict(vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                bos_token_id=1, eos_token_id=2)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def model():
    return random_model(_cfg(), seed=11, lazy=False)


def test_logits_shape_and_dtype(model):
    ids = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(0))
    logits = model(ids)
    assert logits.shape == (3, 7, 40) and logits.dtype == torch.float32
    assert model(ids, last_only=True).shape == (3, 1, 40)
    assert torch.equal(model(ids, last_only=True)[:, 0], logits[:, -1])


def test_kv_cache_decode_equals_full_forward(model):
    ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :5], cache)] + [model(ids[:, i:i + 1], cache) for i in range(5, 12)]
    assert cache.seq_len == 12
    assert torch.equal(torch.cat(steps, dim=1), full)


def test_generate_greedy_equals_recomputing_full_forward(model):
    prompt = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(2))
    new = model.generate_greedy(prompt, 8)
    seq = prompt.clone()
    for _ in range(8):  # no cache: argmax of a full forward over the whole sequence
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert new.shape == (2, 8) and new.dtype == torch.long
    assert torch.equal(new, seq[:, 6:])
    # batch rows are independent
    assert torch.equal(model.generate_greedy(prompt[1].tolist(), 8), new[1:])
    assert model.generate_greedy(prompt, 0).shape == (2, 0)


def test_generate_greedy_reports_every_token(model):
    prompt = torch.tensor([[1, 5, 9], [2, 3, 4]])
    seen = []
    new = model.generate_greedy(prompt, 5, on_token=lambda step, ids: seen.append((step, ids.clone())))
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    assert torch.equal(torch.stack([ids for _, ids in seen], dim=1), new)


def test_core_hook_is_used_for_every_projection(model):
    calls = []

    def core(q, t, linear):
        calls.append(linear.name)
        return reference_core(q, t, linear)

    ids = torch.tensor([[3, 4, 5]])
    ref = model(ids)
    with model.using_core(core):
        out = model(ids)
    assert torch.equal(out, ref)
    assert len(calls) == 7 * 2 and calls[0] == "model.layers.0.self_attn.q_proj"
    assert calls[-1] == "model.layers.1.mlp.down_proj"
    assert model.core is None

    def zero_core(q, t, linear):
        return torch.zeros(q.shape[0], t.shape[0], dtype=torch.int32)

    zeroed = model.hidden_states(ids, core=zero_core)   # all projections 0: residual stream = embeddings
    assert torch.equal(zeroed, model.norm(model.embed_tokens.weight[ids]))


def test_tied_embeddings_share_the_matrix():
    m = random_model(_cfg(tie_word_embeddings=True), seed=1, lazy=False)
    assert m.lm_head is m.embed_tokens.weight and m.lm_head_weight is None
    m2 = random_model(_cfg(tie_word_embeddings=False), seed=1, lazy=False)
    assert m2.lm_head is m2.lm_head_weight


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="outside"):
        model(torch.tensor([[40]]))
    with pytest.raises(ValueError, match="outside"):
        model([[-1, 2]])
    with pytest.raises(TypeError):
        model(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate_greedy([1, 2], -1)


def test_stop_at_eos():
    m = random_model(_cfg(), seed=11, lazy=False)
    prompt = [5, 6, 7]
    free = m.generate_greedy(prompt, 10)[0].tolist()
    eos = free[3]
    m2 = random_model(_cfg(eos_token_id=eos), seed=11, lazy=False)
    stopped = m2.generate_greedy(prompt, 10, stop_at_eos=True)[0].tolist()
    assert stopped == free[:free.index(eos) + 1]


# -- ModelConfig -----------------------------------------------------------------------------------

def test_config_defaults_and_projection_shapes():
    c = _cfg()
    assert c.head_dim == 16 and c.q_size == 64 and c.kv_size == 32 and c.eos_token_id == (2,)
    assert c.projection_shapes()["self_attn.k_proj"] == (32, 64)
    assert c.projection_shapes()["mlp.down_proj"] == (64, 96)


@pytest.mark.parametrize("kw,match", [
    (dict(hidden_size=0), "hidden_size"),
    (dict(num_key_value_heads=3), "multiple"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(rms_norm_eps=-1.0), "rms_norm_eps"),
    (dict(rope_theta=float("nan")), "rope_theta"),
    (dict(head_dim=15), "even"),
    (dict(bos_token_id=40), "bos_token_id"),
    (dict(eos_token_id=[1, 99]), "eos_token_id"),
    (dict(vocab_size=True), "vocab_size"),
])
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)


def test_config_from_hf_dict_bitnet_and_llama():
    c = ModelConfig.from_hf_dict({
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": 128256,
        "hidden_size": 2560, "intermediate_size": 6912, "num_hidden_layers": 30, "num_attention_heads": 20,
        "num_key_value_heads": 5, "hidden_act": "relu2", "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
        "bos_token_id": 128000, "eos_token_id": 128001,
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline"}})
    assert c == preset_config("2b4t")
    ll = ModelConfig.from_hf_dict({
        "architectures": ["BitnetForCausalLM"], "model_type": "llama", "vocab_size": 32002,
        "hidden_size": 1536, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "num_key_value_heads": 16, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_scaling": None,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32000})
    assert ll == preset_config("700m")
    assert ModelConfig.from_hf_dict(ll.to_hf_dict()) == ll
    assert ModelConfig.from_hf_dict(c.to_hf_dict()) == c


@pytest.mark.parametrize("patch,match", [
    (dict(model_type="gpt2"), "unsupported model_type"),
    (dict(model_type="llama", architectures=["LlamaForCausalLM"]), "unsupported architecture"),
    (dict(architectures=["MistralForCausalLM"]), "unsupported architecture"),
    (dict(quantization_config={"quant_method": "gptq"}), "quant_method"),
    (dict(quantization_config={"quant_method": "bitnet", "use_rms_norm": True}), "use_rms_norm"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "rope_scaling"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(hidden_size="64"), "hidden_size"),
    (dict(vocab_size=None), "vocab_size"),
])
def test_config_from_hf_dict_rejects(patch, match):
    d = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": 40, "hidden_size": 64,
         "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}
    d.update(patch)
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_hf_dict(d)


# -- presets -----------------------------------------------------------------------------------------

def test_preset_shapes():
    c = preset_config("2b4t")
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.head_dim, c.vocab_size) == (2560, 6912, 30, 20, 5, 128, 128256)
    assert c.projection_shapes() == {
        "self_attn.q_proj": (2560, 2560), "self_attn.k_proj": (640, 2560), "self_attn.v_proj": (640, 2560),
        "self_attn.o_proj": (2560, 2560), "mlp.gate_proj": (6912, 2560), "mlp.up_proj": (6912, 2560),
        "mlp.down_proj": (2560, 6912)}
    assert [(preset_config(n).hidden_size, preset_config(n).head_dim) for n in ("700m", "1.3b", "3b")] == \
        [(1536, 96), (2048, 64), (3200, 100)]
    assert set(PRESETS) == {"2b4t", "700m", "1.3b", "3b"}
    with pytest.raises(ValueError, match="unknown model preset"):
        preset_config("7b")


def test_random_layer_is_deterministic_and_ternary():
    a = random_layer("700m", 3, seed=1)
    b = random_layer("700m", 3, seed=1)
    c = random_layer("700m", 4, seed=1)
    qa, qb, qc = (l.self_attn.q_proj for l in (a, b, c))
    assert qa.T.shape == (1536, 1536)
    assert torch.equal(qa.T, qb.T) and torch.equal(qa.w_scale, qb.w_scale)
    assert not torch.equal(qa.T, qc.T)
    assert set(qa.T.unique().tolist()) == {-1, 0, 1}
    assert a.self_attn.attn_sub_norm is None          # LLaMA-style presets have no sub-norms
    with pytest.raises(ValueError, match="layer_index"):
        random_layer("3b", 26)


def test_lazy_random_model_equals_materialized():
    lazy = random_model(_cfg(), seed=4)
    full = random_model(_cfg(), seed=4, lazy=False)
    assert isinstance(lazy.layers, LazyLayers)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(lazy(ids), full(ids))


def test_random_model_truncated_2b4t_layer_shapes_without_allocating_it():
    # only the layer list is lazy; build one layer of the real size to check it
    layer = random_layer("2b4t", 29, seed=0)
    assert layer.mlp.down_proj.T.shape == (2560, 6912)
    assert layer.self_attn.k_proj.T.shape == (640, 2560)
    x = torch.randn(1, 2, 2560, generator=torch.Generator().manual_seed(0))
    y = layer(x)
    assert y.shape == (1, 2, 2560) and bool(torch.isfinite(y).all())
