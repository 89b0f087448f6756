"""Whole transformer layers and models through the accelerator: every output torch.equal to the
reference model (sw.model) running its own exact host core."""


import pytest
import torch

from hw.config import TernConfig
from sw.driver.models import (DriverBackend, ModelSpecError, generate, layer_check, layer_input, load_layer,
                              load_model)
from sw.driver.runtime import Accelerator
from sw.model.config import ModelConfig
from sw.model.layers import LayerKV
from sw.model.presets import random_layer, random_model

# K split (acc 14 bits, 16 lanes: (2**13-1) // 2048 = 3 words per chunk), N padded (rows 3), token groups
# (act_depth 16): every compiler rule is on the path of a real layer
TIGHT = TernConfig(rows=3, lanes=16, acc_width=14, act_depth=16, wgt_depth=8, out_depth=4, bus_bytes=4)

# the RTL backends' configuration in every driver test (one Verilator build): the demo's K in one-word
# chunks (13-bit accumulator)
RTL_SMALL = TernConfig(rows=4, lanes=16, acc_width=13, act_depth=16, wgt_depth=4, out_depth=4)

SMALL_RELU2 = ModelConfig(vocab_size=50, hidden_size=40, intermediate_size=72, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          hidden_act="relu2", sub_norms=True, eos_token_id=1)
SMALL_SWIGLU = ModelConfig(vocab_size=50, hidden_size=48, intermediate_size=88, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                           hidden_act="silu", sub_norms=False, model_type="llama", eos_token_id=1)


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("tokens", [1, 9])
def test_demo_layers_bit_exact(index, tokens):
    layer, mc = load_layer("demo", index)
    x = layer_input(mc, tokens, seed=index + 10 * tokens)
    acc = Accelerator(TernConfig())
    chk = layer_check(acc, layer, x)
    assert torch.equal(chk.output, chk.reference_output)
    assert [r.kind for r in acc.records] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]
    assert all(r.layer == index and r.tokens == tokens for r in acc.records)


@pytest.mark.parametrize("mc", [SMALL_RELU2, SMALL_SWIGLU], ids=["relu2", "swiglu"])
def test_random_small_layers_bit_exact_with_k_split(mc):
    layer = random_layer(mc, 1, seed=3)
    acc = Accelerator(TIGHT)
    x = layer_input(mc, 20, seed=1)
    chk = layer_check(acc, layer, x)
    assert torch.equal(chk.output, chk.reference_output)
    chunks = {r.kind: r.chunks for r in acc.records}
    assert chunks["down_proj"] == 2 and chunks["q_proj"] == 1   # 5 or 6 words of K in chunks of <= 3
    assert max(r.groups for r in acc.records) > chunks["down_proj"]   # tokens were grouped too


def test_kv_cache_decode_steps_bit_exact():
    """Prefill then cached decode steps, layer by layer, with the accelerator's and the reference's own
    caches: every step's output torch.equal."""
    layer, mc = load_layer("demo", 1)
    acc = Accelerator(TernConfig(rows=8, lanes=32))
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(1, 8, mc.hidden_size, generator=g)
    ca, cr = LayerKV(), LayerKV()
    with torch.no_grad():
        a = layer(xs[:, :5], 0, ca, acc.core)
        r = layer(xs[:, :5], 0, cr, None)
        assert torch.equal(a, r)
        for p in range(5, 8):
            a = layer(xs[:, p:p + 1], p, ca, acc.core)
            r = layer(xs[:, p:p + 1], p, cr, None)
            assert torch.equal(a, r)
    assert ca.length == cr.length == 8


def test_demo_model_generation_matches_reference():
    lm = load_model("demo")
    prompts = [lm.tokenizer.encode(p, add_bos=True) for p in ("123+045=", "999+999=", "500+007=")]
    acc = Accelerator(TernConfig(rows=8, lanes=32))
    steps = []
    toks = generate(lm.model, prompts, 5, acc, on_step=lambda s, nxt: steps.append(s))
    ref = lm.model.generate_greedy(prompts, 5)
    assert torch.equal(toks, ref)
    assert toks[0].tolist() == lm.tokenizer.encode("8610", add_bos=False, add_eos=True)   # 123 + 45 = 168, reversed
    assert steps == [0, 1, 2, 3, 4]
    assert len(acc.records) == 5 * 2 * 7 and acc.generated_tokens == 15
    assert {r.step for r in acc.records} == set(range(5))
    assert all(r.tokens == (27 if r.step == 0 else 3) for r in acc.records)   # prefill 3 x 9, then 3 x 1


@pytest.mark.parametrize("mc", [SMALL_RELU2, SMALL_SWIGLU], ids=["relu2", "swiglu"])
def test_random_model_generation_matches_reference(mc):
    model = random_model(mc, seed=2)
    acc = Accelerator(TIGHT)
    ids = [[3, 17, 5, 44, 9, 12]]
    toks = generate(model, ids, 4, acc)
    assert torch.equal(toks, model.generate_greedy(ids, 4))
    # logits of a full forward through the accelerator, not only the argmax
    assert torch.equal(model.forward(ids, core=acc.core), model.forward(ids))


def test_driver_backend_in_run_demo():
    from sw.driver.demo import run_demo
    r = run_demo(n_problems=2, seed=3, backend="sim", config=TernConfig(rows=8, lanes=32), clock_mhz=100,
                 quiet=True)
    assert r["match"] is True and r["backend"] == "sim"
    assert r["tokens"] == r["reference_tokens"]
    assert r["cycles"] > 0 and 0 < r["utilization"] <= 1 and r["tokens_per_s"] > 0
    assert r["tokens_per_s"] == pytest.approx(10 / (r["cycles"] / 100e6), rel=1e-12)   # 2 problems x 5 tokens
    b = DriverBackend("sim", TernConfig(rows=8, lanes=32))
    r2 = run_demo(n_problems=2, seed=3, backend=b, quiet=True)
    assert r2["cycles"] == r["cycles"] and r2["calls"] == 2 * 7 * 5


def test_bad_model_specs(tmp_path):
    with pytest.raises(ModelSpecError, match="no such checkpoint folder"):
        load_model(str(tmp_path / "missing"))
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ModelSpecError, match="not a folder"):
        load_model(str(f))
    with pytest.raises(ValueError, match="config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelSpecError, match="out of range"):
        load_layer("demo", 2)
    with pytest.raises(ModelSpecError, match="out of range"):
        load_layer("2b4t", 30)


def test_demo_layer_on_verilator():
    layer, mc = load_layer("demo", 0)
    acc = Accelerator(RTL_SMALL, "verilator")
    chk = layer_check(acc, layer, layer_input(mc, 2, seed=4))
    assert torch.equal(chk.output, chk.reference_output)


def test_demo_layer_on_amaranth():
    layer, mc = load_layer("demo", 1)
    acc = Accelerator(RTL_SMALL, "amaranth")
    chk = layer_check(acc, layer, layer_input(mc, 2, seed=4))
    assert torch.equal(chk.output, chk.reference_output)


def test_model_config_without_loading_weights(tmp_path):
    """``model_config`` reads only configurations, and agrees with the loaded models."""
    from sw.driver.models import load_model, model_config, num_layers
    from sw.model.checkpoint import CheckpointError
    from sw.model.presets import preset_config

    assert model_config("demo") == load_model("demo").config
    assert model_config("2B4T") == preset_config("2b4t") and num_layers("2b4t") == 30
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        model_config(str(tmp_path))
    with pytest.raises(ModelSpecError, match="no such checkpoint folder"):
        model_config(str(tmp_path / "missing"))


def test_checkpoint_tokenizers_and_lazy_loading(tmp_path, monkeypatch):
    """A folder's tokenizer.json runs through the tokenizers library (transformers is not imported),
    a bad one is one line, and a folder above LAZY_BYTES loads lazily with the same logits."""
    import sys

    import sw.driver.models as dm
    from sw.model.checkpoint import LazyCausalLM, save_checkpoint
    from sw.model.tokenizer import HFTokenizer, TokenizerError
    from test_tokenizer import build_bpe_tokenizer
    cfg = SMALL_RELU2.replace(vocab_size=300, bos_token_id=0)
    save_checkpoint(random_model(cfg, seed=2, lazy=False), tmp_path)
    build_bpe_tokenizer(tmp_path / "tokenizer.json", vocab_size=300)
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    lm = load_model(str(tmp_path))
    assert isinstance(lm.tokenizer, HFTokenizer) and "transformers" not in sys.modules
    assert lm.tokenizer("the fox")["input_ids"][0] == 0 and lm.notes == ()
    monkeypatch.setattr(dm, "LAZY_BYTES", 0)
    lazy = load_model(str(tmp_path))
    assert isinstance(lazy.model, LazyCausalLM) and lazy.notes == ("loaded lazily",)
    ids = [lm.tokenizer.encode("the quick fox")]
    assert torch.equal(lazy.model(ids), lm.model(ids))
    (tmp_path / "tokenizer.json").write_text("[" * 1000 + "]" * 1000)
    with pytest.raises(TokenizerError, match="tokenizer.json: tokenizer.json is nested more than 64 levels"):
        load_model(str(tmp_path))


def test_gguf_tokenizer_is_used_for_prompts(tmp_path, capsys):
    from helpers import run_json
    from sw.model.convert import convert
    from sw.model.checkpoint import save_checkpoint
    from sw.model.tokenizer import HFTokenizer
    from test_tokenizer import build_bpe_tokenizer
    cfg = SMALL_RELU2.replace(vocab_size=300, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
                              intermediate_size=128, bos_token_id=0)
    save_checkpoint(random_model(cfg, seed=2, lazy=False), tmp_path / "ck")
    build_bpe_tokenizer(tmp_path / "ck" / "tokenizer.json", vocab_size=300)
    convert(tmp_path / "ck", tmp_path / "m.gguf", "gguf-i2_s")
    lm = load_model(str(tmp_path / "m.gguf"))
    assert isinstance(lm.tokenizer, HFTokenizer)
    code, r = run_json(capsys, "run", "--model", str(tmp_path / "m.gguf"), "--prompt", "hello world",
                       "--max-new-tokens", "2", "--rows", "8", "--lanes", "32")
    assert code == 0 and r["match"] is True and r["prompt_ids"] == lm.tokenizer.encode("hello world")
    assert r["text"] == lm.tokenizer.decode(r["tokens"])
