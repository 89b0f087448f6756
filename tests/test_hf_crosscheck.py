"""Cross-check against Hugging Face transformers (4.57) on tiny random models, built offline.

Each case writes a checkpoint folder, loads it with ``transformers`` ``from_pretrained`` (its own bitnet
quantizer path) and with :func:`sw.model.checkpoint.load_checkpoint`, then compares greedy tokens
(identical) and logits (close).

Why not bit-exact: transformers runs fake-quant float arithmetic. ``AutoBitLinear`` computes
``F.linear(rne(x * s) / s, T) * weight_scale`` (dequantize the activation first, float GEMM, then
scale) and ``BitLinear`` computes ``F.linear(q, T) / (weight_scale * s)``; tern computes the exact
integer ``D = q @ T^T`` and ``(D / s_x) * w_scale`` (docs/MODEL.md, "Numerics"). transformers also computes
``s = 127 / amax`` as ``reciprocal(amax) * 127`` (one ulp off a true division for some amax), runs
attention on the full masked matrix (tern: one query at a time) and its LM head as one GEMM. These
differ in the last float32 bits, so most positions' logits agree to ~1e-5 (``TIGHT_ATOL``). A last-bit
difference occasionally moves one activation across a rounding boundary of ``act_quant`` (a +-1 change
of one q, about once per 1e4 quantized activations), which shifts that position's and later positions'
logits by ~0.5% of their scale: so a minority of positions may differ by up to ``FLIP_RTOL`` of the
largest logit. Greedy tokens must be identical.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")   # transformers' bitnet quantizer needs it

from transformers import BitNetConfig, BitNetForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.integrations.bitnet import pack_weights  # noqa: E402

from sw.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sw.model.config import ModelConfig  # noqa: E402
from sw.model.presets import random_model  # noqa: E402

TIGHT_ATOL = 1e-4       # per position, when no act_quant rounding flipped (measured: <= 2.7e-5)
FLIP_RTOL = 0.02        # any position: |diff| <= 2% of the largest |logit| (measured flips: ~0.5%)
MIN_TIGHT = 0.75        # fraction of positions that must agree to TIGHT_ATOL (measured: >= 97%)
NEW_TOKENS = 10
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(autouse=True, scope="module")
def _env():
    import torch._dynamo
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch._dynamo.config.patch(disable=True):   # transformers' bitnet code uses torch.compile
        yield
    torch.set_num_threads(n)


def _hf_random(cls, cfg_cls, seed, **kw):
    torch.manual_seed(seed)
    cfg = cfg_cls(initializer_range=1.0, torch_dtype="float32", **kw)
    m = cls(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return m


def _greedy_hf(hf, prompt):
    seq = prompt
    with torch.no_grad():
        for _ in range(NEW_TOKENS):   # full recompute, no cache: the plainest use of the HF model
            nxt = hf(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
        return seq[:, prompt.shape[1]:], hf(seq).logits


def _compare(folder, hf_cls, prompt):
    hf = hf_cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    ours = load_checkpoint(folder)
    hf_new, hf_logits = _greedy_hf(hf, prompt)
    new = ours.generate_greedy(prompt, NEW_TOKENS)
    assert torch.equal(new, hf_new)
    logits = ours(torch.cat([prompt, new], dim=1))
    per_pos = (logits - hf_logits).abs().amax(-1)          # (B, T) max |diff| per position
    scale = hf_logits.abs().max().item()
    tight = (per_pos <= TIGHT_ATOL).float().mean().item()
    print(f"{folder.name}: max |logit diff| {per_pos.max().item():.3g}, tight-position max "
          f"{per_pos[per_pos <= TIGHT_ATOL].max().item():.3g}, {tight:.0%} positions tight, "
          f"logit scale {scale:.3g}")
    assert tight >= MIN_TIGHT
    assert per_pos.max().item() <= FLIP_RTOL * scale
    return hf, ours


def _ternarize(w):
    """transformers' WeightQuant formula (absmean), written out: T in {-1,0,1} and gamma."""
    gamma = w.abs().mean().clamp(min=1e-5)
    return (w * (1.0 / gamma)).round().clamp(-1, 1), gamma


def _write_packed(hf_model, folder, linear_class):
    """The microsoft/bitnet-b1.58-2B-4T layout: uint8 packed weights (transformers' pack_weights)."""
    hf_model.save_pretrained(folder)                     # float model: config + float tensors
    path = folder / "model.safetensors"
    t = load_file(path)
    for k in list(t):
        if k.split(".")[-2] in PROJ:
            tern, gamma = _ternarize(t[k])
            t[k] = pack_weights(tern.to(torch.int8))
            ws = gamma if linear_class == "autobitlinear" else 1.0 / gamma   # BitLinear divides
            t[k + "_scale"] = ws.reshape(1).to(torch.float32)
    save_file(t, path, metadata={"format": "pt"})
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class,
                                  "quantization_mode": "offline"}
    (folder / "config.json").write_text(json.dumps(cfg))


def _write_online(hf_model, folder):
    """Float master weights; transformers quantizes them on the fly (AutoBitLinear online)."""
    hf_model.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                  "quantization_mode": "online"}
    (folder / "config.json").write_text(json.dumps(cfg))


BITNET = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
              pad_token_id=None)


def _prompt(seed, vocab=96):
    return torch.randint(3, vocab, (2, 6), generator=torch.Generator().manual_seed(seed))


def test_packed_autobitlinear_gqa_untied(tmp_path):
    hf = _hf_random(BitNetForCausalLM, BitNetConfig, 0, num_key_value_heads=2, tie_word_embeddings=False,
                    **BITNET)
    _write_packed(hf, tmp_path / "packed_auto_gqa", "autobitlinear")
    hf2, ours = _compare(tmp_path / "packed_auto_gqa", BitNetForCausalLM, _prompt(0))
    assert type(hf2.model.layers[0].self_attn.q_proj).__name__ == "AutoBitLinear"
    # the same ternary values and scales reached both models
    q = hf2.model.layers[1].mlp.down_proj
    assert torch.equal(ours.layers[1].mlp.down_proj.T.float(), q.weight)
    assert torch.equal(ours.layers[1].mlp.down_proj.w_scale.reshape(1), q.weight_scale)


def test_packed_bitlinear_class_mha_tied(tmp_path):
    hf = _hf_random(BitNetForCausalLM, BitNetConfig, 1, num_key_value_heads=4, tie_word_embeddings=True,
                    **BITNET)
    _write_packed(hf, tmp_path / "packed_bitlinear_tied", "bitlinear")
    hf2, ours = _compare(tmp_path / "packed_bitlinear_tied", BitNetForCausalLM, _prompt(1))
    assert type(hf2.model.layers[0].self_attn.q_proj).__name__ == "BitLinear"
    assert ours.lm_head is ours.embed_tokens.weight


def test_float_masters_bitnet_online(tmp_path):
    hf = _hf_random(BitNetForCausalLM, BitNetConfig, 2, num_key_value_heads=1, tie_word_embeddings=False,
                    **BITNET)
    _write_online(hf, tmp_path / "masters_bitnet")
    hf2, _ = _compare(tmp_path / "masters_bitnet", BitNetForCausalLM, _prompt(2))
    assert hf2.model.layers[0].mlp.up_proj.online_quant


def test_float_masters_llama_style_silu(tmp_path):
    hf = _hf_random(LlamaForCausalLM, LlamaConfig, 3, vocab_size=96, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True,
                    bos_token_id=1, eos_token_id=2)
    _write_online(hf, tmp_path / "masters_llama")
    _, ours = _compare(tmp_path / "masters_llama", LlamaForCausalLM, _prompt(3))
    assert ours.config.model_type == "llama" and not ours.config.sub_norms


@pytest.mark.parametrize("packed", [True, False])
def test_tern_saved_checkpoint_loads_in_transformers(tmp_path, packed):
    cfg = ModelConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2)
    m = random_model(cfg, seed=9, lazy=False)
    folder = tmp_path / ("tern_packed" if packed else "tern_unpacked")
    save_checkpoint(m, folder, packed=packed)
    _compare(folder, BitNetForCausalLM, _prompt(4))
