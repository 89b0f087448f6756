"""sw.driver.demo.run_demo: the embedded demo model through a backend, checked against the reference."""


import pytest
import torch

from sw.model import demo_task

DEMO_DIR = demo_task.default_model_dir()


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
