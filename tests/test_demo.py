"""The embedded demo model: tokenizer, task, split, committed checkpoint and its accuracy
(sw.model.demo_task), and the demo through a backend (sw.driver.demo.run_demo)."""

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


# -- training quantizers are the reference quantizers (sw.model.quant) ------------------------------

def test_training_fake_quant_equals_reference_quantizers():
    from sw.model import train as tr
    from sw.model.quant import act_quant, weight_quant

    g = torch.Generator().manual_seed(0)
    for shape in [(64, 128), (5, 7), (256, 128)]:
        w = torch.randn(shape, generator=g) * 0.03
        t, scale = weight_quant(w)
        assert torch.equal(tr.weight_dequant(w), t.to(torch.float32) * scale)
        x = torch.randn(3, 9, shape[1], generator=g) * 4
        q, s_x = act_quant(x)
        assert torch.equal(tr.act_dequant(x), q.to(torch.float32) / s_x)
    # straight-through estimators: the gradient passes unchanged
    w = torch.randn(8, 16, generator=g, requires_grad=True)
    x = torch.randn(4, 16, generator=g, requires_grad=True)
    (tr._weight_fake_quant(w) * 3.0).sum().backward()
    (tr._act_fake_quant(x) * 2.0).sum().backward()
    assert torch.equal(w.grad, torch.full_like(w, 3.0)) and torch.equal(x.grad, torch.full_like(x, 2.0))


def test_short_training_run_exports_a_loadable_packed_checkpoint(tmp_path):
    from safetensors import safe_open

    from sw.model import train as tr
    from sw.model.checkpoint import load_checkpoint
    from sw.model.packing import unpack_ternary
    from sw.model.quant import weight_quant

    model, cfg, stats = tr.train(tr.TrainArgs(seed=3, steps=3, batch_size=16, log_every=1000),
                                 log=lambda *_: None)
    tok = demo_task.make_tokenizer()
    tr.export(model, cfg, tmp_path, tok)
    ref = load_checkpoint(tmp_path)
    latent = model.state_dict()
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        for name, w in latent.items():
            if not name.endswith("_proj.weight"):
                assert torch.equal(f.get_tensor(name), w), name
                continue
            packed = f.get_tensor(name)
            assert packed.dtype == torch.uint8 and packed.shape == ((w.shape[0] + 3) // 4, w.shape[1])
            t, scale = weight_quant(w)
            assert torch.equal(unpack_ternary(packed, w.shape[0]), t), name
            assert torch.equal(f.get_tensor(name + "_scale"), scale.reshape(1)), name
    blq = ref.layers[1].mlp.down_proj
    assert torch.equal(blq.T, weight_quant(latent["model.layers.1.mlp.down_proj.weight"])[0])
    assert CharTokenizer.from_file(tmp_path / "tokenizer.json").to_dict() == tok.to_dict()


def test_train_command_line_bad_input_is_one_line_exit_2(capsys, tmp_path):
    from sw.model import train as tr

    (tmp_path / "file").write_text("x")
    for argv, needle in ((["--out", str(tmp_path), "--steps", "0"], "steps=0 must be an integer >= 1"),
                         ([], "the following arguments are required: --out"),
                         (["--out", str(tmp_path / "file")], "exists and is not a folder")):
        assert tr.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and needle in err, err


# -- the committed demo model -------------------------------------------------------------------------

def test_committed_demo_files():
    from safetensors import safe_open

    from sw.model.checkpoint import read_config

    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (DEMO_DIR / f).is_file(), f
    size = (DEMO_DIR / "model.safetensors").stat().st_size
    assert size <= 5 * 1024 * 1024, size
    raw, cfg = read_config(DEMO_DIR)
    assert raw["quantization_config"]["quant_method"] == "bitnet"
    assert cfg.model_type == "bitnet" and cfg.sub_norms and cfg.hidden_act == "relu2"
    assert cfg.hidden_size % 64 == 0 and cfg.intermediate_size % 64 == 0
    assert CharTokenizer.from_file(DEMO_DIR / "tokenizer.json").to_dict() == demo_task.make_tokenizer().to_dict()
    with safe_open(str(DEMO_DIR / "model.safetensors"), "pt") as f:
        for i in range(cfg.num_hidden_layers):
            for suffix, (out_f, in_f) in cfg.projection_shapes().items():
                w = f.get_tensor(f"model.layers.{i}.{suffix}.weight")
                assert w.dtype == torch.uint8 and tuple(w.shape) == ((out_f + 3) // 4, in_f)


def test_demo_model_held_out_accuracy():
    """>= 95% exact match on 500 held-out additions, with the reference ternary inference model
    (exact integer core + the reference epilogue) loaded from the committed packed checkpoint; the expected
    answers are Python's a + b."""
    from sw.model.checkpoint import load_checkpoint

    model = load_checkpoint(DEMO_DIR)
    tok = CharTokenizer.from_file(DEMO_DIR / "tokenizer.json")
    problems = demo_task.held_out_problems(500, seed=2024)
    prompts = [tok.encode(f"{p.a:03d}+{p.b:03d}=") for p in problems]
    out = model.generate_greedy(prompts, 5).tolist()
    correct = 0
    for p, o in zip(problems, out):
        want = [int(c) for c in str(p.a + p.b).zfill(4)[::-1]] + [tok.eos_id]
        correct += o == want
    assert correct / len(problems) >= 0.95, correct


# -- sw.driver.demo.run_demo ---------------------------------------------------------------------------

class _CoreBackend:
    """A backend that runs the model with an independent integer core (int64 numpy matmul)."""
    name = "numpy-core"

    def __init__(self, corrupt: bool = False):
        self.model, _ = demo_task.load_demo_model()
        self.corrupt = corrupt
        self.stats = {"core_calls": 0}

    def _core(self, q, t, linear):
        import numpy as np
        self.stats["core_calls"] += 1
        return torch.from_numpy(q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T)

    def generate(self, prompts, max_new_tokens):
        out = self.model.generate_greedy(prompts, max_new_tokens, core=self._core).tolist()
        if self.corrupt:  # a faulty accelerator: one wrong token in the third answer
            out[2][1] = (out[2][1] + 1) % 10
        return out


def test_run_demo_reference_and_backends():
    from sw.driver.demo import run_demo

    r = run_demo(n_problems=6, seed=1, quiet=True)
    probs = demo_task.held_out_problems(6, seed=1)
    assert r["problems"] == [f"{p.a}+{p.b}" for p in probs]
    assert r["backend"] == "reference" and r["match"] is True
    assert r["tokens"] == r["reference_tokens"] and len(r["tokens"]) == 6
    assert r["expected"] == [p.a + p.b for p in probs]
    assert r["accuracy"] == sum(a == e for a, e in zip(r["answers"], r["expected"])) / 6

    b = _CoreBackend()
    r2 = run_demo(n_problems=6, seed=1, backend=b, quiet=True)
    # 2 layers x 7 projections x 5 generation steps (prefill + 4 cached decodes)
    assert r2["match"] is True and r2["tokens"] == r["reference_tokens"] and r2["core_calls"] == 70

    r3 = run_demo(n_problems=6, seed=1, backend=_CoreBackend(corrupt=True), quiet=True)
    assert r3["reference_tokens"] == r["reference_tokens"]
    assert r3["match"] is False and r3["correct"][2] is False


def test_run_demo_prints_a_table_and_rejects_bad_arguments():
    from rich.console import Console

    from sw.driver.demo import run_demo

    console = Console(record=True, width=120)
    r = run_demo(n_problems=3, seed=0, console=console)
    text = console.export_text()
    for p, a in zip(r["problems"], r["answers"]):
        assert p in text and str(a) in text
    with pytest.raises(ValueError, match="n_problems=0"):
        run_demo(n_problems=0, quiet=True)
    with pytest.raises(TypeError, match="backend"):
        run_demo(n_problems=1, backend=42, quiet=True)


def test_run_demo_accepts_an_integer_core_backend():
    import numpy as np

    from sw.driver.demo import run_demo

    class CoreOnly:
        name = "core-only"

        def core(self, q, t, linear):
            return torch.from_numpy(q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T)

    ref = run_demo(n_problems=4, seed=5, quiet=True)
    r = run_demo(n_problems=4, seed=5, backend=CoreOnly(), quiet=True)
    assert r["backend"] == "core-only" and r["match"] is True and r["tokens"] == ref["reference_tokens"]


def test_demo_checkpoint_also_works_in_transformers():
    """The committed file is a real Hugging Face packed BitNet checkpoint: transformers'
    BitNetForCausalLM (its own unpacking and float fake-quant kernels) loads it and solves held-out
    problems too."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model = transformers.BitNetForCausalLM.from_pretrained(str(DEMO_DIR), dtype=torch.float32).eval()
    tok = demo_task.make_tokenizer()
    problems = demo_task.held_out_problems(200, seed=7)
    ids = torch.tensor([tok.encode(p.prompt) for p in problems])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_id)[:, ids.shape[1]:]
    correct = sum(o.tolist() == [int(c) for c in str(p.a + p.b).zfill(4)[::-1]] + [tok.eos_id]
                  for p, o in zip(problems, out))
    assert correct / len(problems) >= 0.95, correct


def test_run_demo_bad_model_dir(tmp_path):
    from sw.driver.demo import run_demo

    with pytest.raises(ValueError, match="no model.safetensors"):
        run_demo(n_problems=1, model_dir=tmp_path, quiet=True)
