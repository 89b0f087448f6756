"""sw.model.train: the QAT model is exactly transformers' BitNet architecture, its fake quantizers are
the reference quantizers, a short run exports a loadable checkpoint, and bad command-line input."""


import pytest
import torch

from sw.model import demo_task
from sw.model.tokenizer import CharTokenizer


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
