"""sw.model.demo_task: the demo task (formatting, parsing, the held-out split), the committed demo
model files and their held-out accuracy."""


import pytest
import torch

from sw.model import demo_task
from sw.model.tokenizer import CharTokenizer

DEMO_DIR = demo_task.default_model_dir()


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
