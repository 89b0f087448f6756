"""Quantization-aware training of the embedded demo model (a tiny BitNet b1.58 that adds numbers).

Usage::

    python -m sw.model.train --out DIR [--seed 0] [--steps 3000] [--threads 2]

The recipe is the BitNet b1.58 one (Ma et al., 2024): every one of the seven projections per layer
(q, k, v, o, gate, up, down) keeps *latent float weights*; the forward pass uses their absmean
ternarization ``clamp(rne(W / gamma), -1, 1) * gamma`` with ``gamma = max(mean|W|, 1e-5)`` and feeds
them per-token int8 absmax fake-quantized activations (the formulas of ``docs/MODEL.md``); both quantizers pass gradients
straight through (``x + (q(x) - x).detach()``). Embeddings, norms and the LM head stay float.

The architecture is exactly Hugging Face's ``BitNetForCausalLM`` (pre-norm RMSNorm, RoPE half-split,
GQA, ``attn_sub_norm`` before ``o_proj``, MLP ``down(ffn_sub_norm(relu(gate(x))**2 * up(x)))``); the
module below names its tensors like transformers does, so the trained state dict is exported with
:func:`sw.model.checkpoint.save_checkpoint` to the packed Hugging Face layout (2-bit codes, 4 per
byte, plus ``weight_scale``). After saving, the checkpoint is loaded back into the *reference ternary
inference model* (integer core + the reference epilogue) and its exact-match accuracy on held-out problems is
measured and printed; that number, not the fake-quant training model's, is the one reported.

Task: 3-digit addition with the sum written reversed (see :mod:`sw.model.demo_task`).

Reproducing the committed model (``sw/model/demo``)::

    python -m sw.model.train --out sw/model/demo --seed 0 --steps 3000

Wall time: 7 min 0 s on a shared 2-core machine (one torch thread, the default; 416 s of training,
then export and a 2,000-problem held-out evaluation of the saved model: 100%). See docs/DEMO.md.
Runs are reproducible from the seed for a given thread count and PyTorch build (CPU kernels may
reorder float reductions with a different thread count, which changes the last bits). One thread is
the default because on a busy 2-core machine two OpenMP threads ran 8x slower than one.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import demo_task
from .tokenizer import CharTokenizer

__all__ = ["TrainArgs", "DEMO_ARCH", "QATBitNetForCausalLM", "train", "main"]

# The demo model's shape (HF BitNetConfig fields). 128/256 are multiples of the accelerator's 64 lanes.
DEMO_ARCH = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=16,
    max_position_embeddings=32,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    hidden_act="relu2",
    tie_word_embeddings=False,
)


# -- fake quantizers with straight-through estimators (the reference formulas) -------------------------

def weight_dequant(w: torch.Tensor) -> torch.Tensor:
    """``T * gamma``: the absmean-ternarized weight the forward pass uses (no gradient path)."""
    gamma = w.abs().mean().clamp(min=1e-5)
    return torch.clamp(torch.round(w * (1.0 / gamma)), -1, 1) * gamma


def act_dequant(x: torch.Tensor) -> torch.Tensor:
    """``q / s_x``: the per-token int8 absmax fake-quantized activation (no gradient path)."""
    amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    s = torch.full_like(amax, 127.0) / amax   # a true IEEE division, as sw.model.quant.act_quant
    return torch.clamp(torch.round(x * s), -128, 127) / s


def _weight_fake_quant(w: torch.Tensor) -> torch.Tensor:
    return w + (weight_dequant(w) - w).detach()   # straight-through estimator


def _act_fake_quant(x: torch.Tensor) -> torch.Tensor:
    return x + (act_dequant(x) - x).detach()      # straight-through estimator


class QATBitLinear(nn.Linear):
    """BitLinear for training: latent float weight, ternary weight and int8 activations in forward."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_act_fake_quant(x), _weight_fake_quant(self.weight))


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class _Attention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.n_heads, self.n_kv = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c["head_dim"]
        h = c["hidden_size"]
        self.q_proj = QATBitLinear(h, self.n_heads * self.head_dim)
        self.k_proj = QATBitLinear(h, self.n_kv * self.head_dim)
        self.v_proj = QATBitLinear(h, self.n_kv * self.head_dim)
        self.o_proj = QATBitLinear(self.n_heads * self.head_dim, h)
        self.attn_sub_norm = _RMSNorm(self.n_heads * self.head_dim, c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(self.attn_sub_norm(a))


class _MLP(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = QATBitLinear(h, i)
        self.up_proj = QATBitLinear(h, i)
        self.down_proj = QATBitLinear(i, h)
        self.ffn_sub_norm = _RMSNorm(i, c["rms_norm_eps"])

    def forward(self, x):
        return self.down_proj(self.ffn_sub_norm(F.relu(self.gate_proj(x)).square() * self.up_proj(x)))


class _Layer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.input_layernorm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = _Attention(c)
        self.post_attention_layernorm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = _MLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Backbone(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = _RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class QATBitNetForCausalLM(nn.Module):
    """The training twin of ``BitNetForCausalLM``: same tensor names, QAT BitLinear projections."""

    def __init__(self, c: dict):
        super().__init__()
        self.c = dict(c)
        self.model = _Backbone(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        hd = c["head_dim"]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        std = 0.02
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))

    @torch.no_grad()
    def greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuation of equal-length prompts (no KV cache; sequences are 14 tokens)."""
        ids = torch.tensor(prompts, dtype=torch.long)
        start = ids.shape[1]
        for _ in range(max_new_tokens):
            nxt = self(ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids[:, start:].tolist()


# -- training -------------------------------------------------------------------------------------

class TrainArgs:
    """Hyper-parameters (defaults reproduce the committed demo model)."""

    def __init__(self, *, seed: int = 0, steps: int = 3000, batch_size: int = 256, lr: float = 3e-3,
                 warmup: int = 100, min_lr_ratio: float = 0.1, weight_decay: float = 0.0,
                 grad_clip: float = 1.0, threads: int = 1, log_every: int = 250):
        for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("threads", threads, 1),
                            ("warmup", warmup, 0), ("log_every", log_every, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
        if not lr > 0:
            raise ValueError(f"lr={lr!r} must be > 0")
        self.seed, self.steps, self.batch_size, self.lr = seed, steps, batch_size, lr
        self.warmup, self.min_lr_ratio, self.weight_decay = warmup, min_lr_ratio, weight_decay
        self.grad_clip, self.threads, self.log_every = grad_clip, threads, log_every

    def to_dict(self) -> dict:
        return dict(vars(self))

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` (step counts from 1)."""
        warm = min(1.0, step / self.warmup) if self.warmup else 1.0
        cos = 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return self.lr * warm * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos)


def demo_hf_config(tokenizer: CharTokenizer) -> dict:
    """The Hugging Face ``config.json`` contents of the demo model."""
    return dict(
        architectures=["BitNetForCausalLM"],
        model_type="bitnet",
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        attention_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        torch_dtype="float32",
        **DEMO_ARCH,
    )


def _loss(model: QATBitNetForCausalLM, batch: torch.Tensor) -> torch.Tensor:
    # Only the answer digits and <eos> are supervised: logits at positions PROMPT_LEN-1 .. SEQ_LEN-2.
    logits = model(batch[:, :-1])
    p = demo_task.PROMPT_LEN - 1
    return F.cross_entropy(logits[:, p:].reshape(-1, logits.shape[-1]), batch[:, p + 1:].reshape(-1))


def train(args: TrainArgs, *, log=print) -> tuple[QATBitNetForCausalLM, dict, dict]:
    """Trains the QAT model; returns (model, hf_config, stats)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = demo_task.make_tokenizer()
    cfg = demo_hf_config(tok)
    model = QATBitNetForCausalLM(cfg)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    data_gen = torch.Generator().manual_seed(args.seed)
    monitor = demo_task.held_out_problems(200, seed=args.seed + 1)
    t0 = time.perf_counter()
    model.train()
    loss_ema = None
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr_at(step)
        batch = demo_task.training_batch(args.batch_size, data_gen, tok)
        loss = _loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % args.log_every == 0 or step == args.steps:
            model.eval()
            acc = demo_task.evaluate(model.greedy, monitor, tok)
            model.train()
            log(f"step {step:5d}  loss {loss_ema:.4f}  lr {args.lr_at(step):.2e}  "
                f"fake-quant held-out acc {acc:.3f}  {time.perf_counter() - t0:6.1f}s")
    model.eval()
    stats = {"train_seconds": round(time.perf_counter() - t0, 1), "final_loss_ema": loss_ema,
             "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__}
    return model, cfg, stats


# -- export and evaluation with the reference ternary inference model ---------------------------

def to_reference(model: QATBitNetForCausalLM, cfg: dict):
    """The reference ternary :class:`~sw.model.model.CausalLM` of the trained latent weights.

    The float master weights are ternarized by :func:`sw.model.quant.weight_quant` (the formula the
    fake quantizer used in training), norms/embeddings/LM head are copied as float32."""
    from .checkpoint import model_from_state_dict
    from .config import ModelConfig

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    return model_from_state_dict(ModelConfig.from_hf_dict(cfg), state, source="trained QAT model")


def export(model: QATBitNetForCausalLM, cfg: dict, out: Path, tokenizer: CharTokenizer) -> None:
    """Writes config.json, model.safetensors (packed ternary layout) and tokenizer.json to ``out``."""
    from .checkpoint import save_checkpoint

    save_checkpoint(to_reference(model, cfg), out, packed=True)
    tokenizer.save(Path(out) / "tokenizer.json")


def reference_accuracy(out: Path, problems, batch: int = 500) -> float:
    """Exact-match accuracy of the reference ternary inference model loaded back from ``out``."""
    from .checkpoint import load_checkpoint

    ref = load_checkpoint(out)
    tok = CharTokenizer.from_file(Path(out) / "tokenizer.json")
    gen = demo_task.reference_generate_fn(ref)
    correct = 0.0
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        correct += demo_task.evaluate(gen, chunk, tok) * len(chunk)
    return correct / len(problems)


def main(argv=None) -> int:
    """``python -m sw.model.train``: the command line of :func:`train`, with the flag helpers and the
    error contract of ``tern`` (:mod:`sw.cli.common`): bad input is one line on stderr and exit code 2."""
    from sw.cli.common import Parser, UsageError, print_json

    prog = "python -m sw.model.train"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (created; files overwritten)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: reproducible everywhere, and fastest on a busy 2-core box)")
    p.add_argument("--eval-problems", type=int, default=2000,
                   help="held-out problems scored with the saved ternary model")
    try:
        a = p.parse_args(argv)
        try:
            args = TrainArgs(seed=a.seed, steps=a.steps, batch_size=a.batch_size, lr=a.lr, threads=a.threads)
        except ValueError as e:
            raise UsageError(f"{prog}: {e}") from None
        if a.out.exists() and not a.out.is_dir():
            raise UsageError(f"{prog}: --out {str(a.out)!r} exists and is not a folder")
    except UsageError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    model, cfg, stats = train(args)
    tok = demo_task.make_tokenizer()
    export(model, cfg, a.out, tok)
    problems = demo_task.held_out_problems(a.eval_problems, seed=12345)
    acc = reference_accuracy(a.out, problems)
    stats["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"held-out exact-match accuracy of the saved ternary model: {acc:.4f} "
          f"({round(acc * len(problems))}/{len(problems)})")
    print_json({"accuracy": acc, **stats})
    return 0

if __name__ == "__main__":
    sys.exit(main())
