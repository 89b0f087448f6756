"""The embedded demo model: tokenizer, task, split, committed checkpoint and its accuracy."""

import json

import pytest
import torch

from sw.model import demo_task
from sw.model.tokenizer import CharTokenizer

DEMO_DIR = demo_task.default_model_dir()


# -- tokenizer ----------------------------------------------------------------------------------

def test_tokenizer_ids_and_round_trip():
    tok = demo_task.make_tokenizer()
    assert tok.vocab_size == 15
    ids = tok.encode("907+015=", add_bos=True)
    assert ids == [12, 9, 0, 7, 10, 0, 1, 5, 11]
    assert tok.decode(ids) == "907+015="
    assert tok.decode(ids, skip_special=False) == "<bos>907+015="
    for text in ["", "0", "999+999=", "1+2=3", "=+=+"]:
        assert tok.decode(tok.encode(text, add_eos=True)) == text
    assert tok.decode([1, 2, tok.eos_id, 3], stop_at_eos=True) == "12"


def test_tokenizer_unknown_character_is_named():
    tok = demo_task.make_tokenizer()
    with pytest.raises(ValueError, match=r"character 'x' at position 3"):
        tok.encode("123x4")
    with pytest.raises(ValueError, match=r"character '<'"):
        tok.encode("<bos>")  # special tokens cannot be spelled in text
    with pytest.raises(ValueError, match="token id 15"):
        tok.decode([1, 15])
    with pytest.raises(TypeError):
        tok.encode(123)


def test_tokenizer_json_round_trip_and_bad_files(tmp_path):
    tok = demo_task.make_tokenizer()
    p = tmp_path / "tokenizer.json"
    tok.save(p)
    back = CharTokenizer.from_file(p)
    assert back.vocab == tok.vocab and back.to_dict() == tok.to_dict()
    assert CharTokenizer.from_file(tmp_path).vocab == tok.vocab  # a folder means folder/tokenizer.json
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        CharTokenizer.from_file(bad)
    d = tok.to_dict()
    d["vocab"] = d["vocab"][:-1]  # drops <pad>
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="pad_token '<pad>' is not in the vocab"):
        CharTokenizer.from_file(bad)
    d = tok.to_dict()
    d["vocab"] = ["0", "0", "<bos>", "<eos>", "<pad>"]
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer.from_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        CharTokenizer.from_file(tmp_path / "missing.json")


# -- task -----------------------------------------------------------------------------------------

def test_formatting_and_parsing():
    assert demo_task.format_prompt(123, 45) == "123+045="
    assert demo_task.format_target(168) == "8610"
    assert demo_task.format_target(1998) == "8991"
    assert demo_task.parse_answer("8610") == 168
    for bad in ["861", "86100", "86a0", ""]:
        assert demo_task.parse_answer(bad) is None
    with pytest.raises(ValueError, match="operand a=1000"):
        demo_task.Problem(1000, 1)


def test_encoded_sequences_spell_the_sums():
    tok = demo_task.make_tokenizer()
    g = torch.Generator().manual_seed(3)
    batch = demo_task.training_batch(64, g, tok)
    assert batch.shape == (64, demo_task.SEQ_LEN)
    for row in batch.tolist():
        text = tok.decode(row, skip_special=False)
        a, b = int(text[5:8]), int(text[9:12])  # "<bos>aaa+bbb=ssss<eos>"
        assert text == f"<bos>{a:03d}+{b:03d}={str(a + b).zfill(4)[::-1]}<eos>"


def test_held_out_split_is_disjoint_and_about_5_percent():
    # Exhaustive over all 10**6 pairs: the vectorized mask equals the scalar rule, and training
    # batches never contain a held-out pair.
    r = torch.arange(1000)
    a, b = (t.reshape(-1) for t in torch.meshgrid(r, r, indexing="ij"))
    mask = demo_task.held_out_mask(a, b)
    n_held = int(mask.sum())
    assert 0.045 < n_held / 10**6 < 0.055
    for i in torch.randint(0, 10**6, (500,), generator=torch.Generator().manual_seed(0)).tolist():
        assert bool(mask[i]) == demo_task.is_held_out(i // 1000, i % 1000)
    g = torch.Generator().manual_seed(1)
    batch = demo_task.training_batch(20000, g)
    ta = batch[:, 1] * 100 + batch[:, 2] * 10 + batch[:, 3]
    tb = batch[:, 5] * 100 + batch[:, 6] * 10 + batch[:, 7]
    assert not bool(mask[ta * 1000 + tb].any())
    probs = demo_task.held_out_problems(500, seed=0)
    assert len(set(probs)) == 500
    assert all(bool(mask[p.a * 1000 + p.b]) for p in probs)
    assert probs == demo_task.held_out_problems(500, seed=0)
    assert probs != demo_task.held_out_problems(500, seed=1)


# -- the training model is exactly HF BitNetForCausalLM ------------------------------------------

def test_qat_model_matches_transformers_bitnet_architecture(monkeypatch):
    """With the fake quantizers switched off, the QAT model computes what transformers'
    BitNetForCausalLM (float, eager attention) computes with the same state dict: same tensor names,
    norms, RoPE, GQA, sub-norms and relu**2 MLP. (Float comparison against another project's code,
    hence a tolerance.)"""
    transformers = pytest.importorskip("transformers")
    from sw.model import train as tr

    tok = demo_task.make_tokenizer()
    cfg = tr.demo_hf_config(tok)
    torch.manual_seed(0)
    qat = tr.QATBitNetForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights so that a misplaced norm would show
        for name, p in qat.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf_cfg = transformers.BitNetConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    hf_cfg._attn_implementation = "eager"
    hf = transformers.BitNetForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(qat.state_dict(), strict=True)
    assert not missing and not unexpected
    ids = demo_task.training_batch(4, torch.Generator().manual_seed(0), tok)
    monkeypatch.setattr(tr, "_weight_fake_quant", lambda w: w)
    monkeypatch.setattr(tr, "_act_fake_quant", lambda x: x)
    with torch.no_grad():
        ours = qat(ids)
        theirs = hf(input_ids=ids).logits
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5), (ours - theirs).abs().max()
