"""The demo task: 3-digit addition with the answer written least-significant digit first.

Format (one fixed-length sequence of 14 tokens; operands zero-padded to 3 digits)::

    <bos> a2 a1 a0 + b2 b1 b0 = s0 s1 s2 s3 <eos>
          '-- prompt: "123+045=" --'  '-- target: "8610" (168 reversed, 4 digits) --'

Writing the sum in reverse lets the model produce each digit right after the digits it depends on
(the carry flows in generation order), the standard trick that makes addition easy for small
transformers; the fixed width keeps every digit at a fixed position. :func:`parse_answer` turns the
generated text back into the integer.

Split: every pair ``(a, b)`` in ``[0, 999]**2`` is assigned to the held-out set or to the training set
by a fixed integer hash of ``a * 1000 + b`` (:func:`is_held_out`, about 5% held out). Training batches
are drawn only from the training pairs and evaluation problems only from the held-out pairs, so the
model is always measured on additions it has never seen.

The committed demo model that solves the task (``sw/model/demo``, trained by
``python -m sw.model.train``) is loaded by :func:`load_demo_model`; :func:`reference_generate_fn` makes
the ``generate`` function of :func:`solve` and :func:`evaluate` from a reference model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .tokenizer import CharTokenizer

__all__ = [
    "N_DIGITS", "ANSWER_DIGITS", "MAX_OPERAND", "PROMPT_LEN", "SEQ_LEN", "HELD_OUT_MODULUS",
    "Problem", "make_tokenizer", "format_prompt", "format_target", "parse_answer", "is_held_out",
    "held_out_mask", "sample_pairs", "training_batch", "held_out_problems", "solve", "evaluate",
    "default_model_dir", "load_demo_model", "reference_generate_fn",
]

N_DIGITS = 3                       # digits per operand
ANSWER_DIGITS = N_DIGITS + 1       # digits of the (reversed, zero-padded) sum
MAX_OPERAND = 10 ** N_DIGITS - 1   # 999
PROMPT_LEN = 1 + 2 * N_DIGITS + 2  # <bos> a + b =  -> 9 tokens
SEQ_LEN = PROMPT_LEN + ANSWER_DIGITS + 1  # + answer + <eos> -> 14 tokens
HELD_OUT_MODULUS = 20              # 1 in 20 pairs is held out

_HASH_MULT = 2654435761            # Knuth's multiplicative hash constant (odd, so a bijection mod 2**32)

VOCAB = [*"0123456789", "+", "=", "<bos>", "<eos>", "<pad>"]


def make_tokenizer() -> CharTokenizer:
    """The demo tokenizer: digits 0-9 are ids 0-9, '+'=10, '='=11, <bos>=12, <eos>=13, <pad>=14."""
    return CharTokenizer(VOCAB, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    def __post_init__(self):
        for name in ("a", "b"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_OPERAND:
                raise ValueError(f"operand {name}={v!r} must be an integer in [0, {MAX_OPERAND}]")

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def prompt(self) -> str:
        return format_prompt(self.a, self.b)

    @property
    def target(self) -> str:
        return format_target(self.answer)

    def __str__(self) -> str:
        return f"{self.a}+{self.b}"


def format_prompt(a: int, b: int) -> str:
    """``format_prompt(123, 45) == "123+045="``."""
    for name, v in (("a", a), ("b", b)):
        if not 0 <= v <= MAX_OPERAND:
            raise ValueError(f"operand {name}={v} must be in [0, {MAX_OPERAND}]")
    return f"{a:0{N_DIGITS}d}+{b:0{N_DIGITS}d}="


def format_target(s: int) -> str:
    """The sum reversed and zero-padded: ``format_target(168) == "8610"``."""
    if not 0 <= s <= 2 * MAX_OPERAND:
        raise ValueError(f"sum {s} must be in [0, {2 * MAX_OPERAND}]")
    return f"{s:0{ANSWER_DIGITS}d}"[::-1]


def parse_answer(text: str) -> int | None:
    """Integer of a generated answer (reversed digits); None when it is not exactly 4 digits."""
    if len(text) != ANSWER_DIGITS or not text.isdigit() or not text.isascii():
        return None
    return int(text[::-1])


def held_out_mask(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Boolean tensor: which pairs belong to the held-out split (vectorized :func:`is_held_out`)."""
    x = ((a.long() * (MAX_OPERAND + 1) + b.long()) * _HASH_MULT) % (1 << 32)
    return ((x >> 16) % HELD_OUT_MODULUS) == 0


def is_held_out(a: int, b: int) -> bool:
    """True when the pair ``(a, b)`` is reserved for evaluation (never used in training)."""
    x = ((a * (MAX_OPERAND + 1) + b) * _HASH_MULT) % (1 << 32)
    return (x >> 16) % HELD_OUT_MODULUS == 0


def sample_pairs(n: int, generator: torch.Generator, *, held_out: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniformly random pairs from one split (rejection sampling), as two int64 tensors."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    got_a, got_b, need = [], [], n
    while need > 0:
        a = torch.randint(0, MAX_OPERAND + 1, (2 * need + 16,), generator=generator)
        b = torch.randint(0, MAX_OPERAND + 1, (2 * need + 16,), generator=generator)
        m = held_out_mask(a, b)
        if not held_out:
            m = ~m
        got_a.append(a[m][:need])
        got_b.append(b[m][:need])
        need -= got_a[-1].numel()
    if not got_a:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(got_a), torch.cat(got_b)


def encode_pairs(a: torch.Tensor, b: torch.Tensor, tokenizer: CharTokenizer | None = None) -> torch.Tensor:
    """Full token sequences ``[n, SEQ_LEN]`` (prompt, reversed answer, <eos>), vectorized.

    Digit ``d`` is token id ``d`` in the demo tokenizer (checked against ``tokenizer``)."""
    tok = tokenizer or make_tokenizer()
    if [tok.token_to_id(str(d)) for d in range(10)] != list(range(10)):
        raise ValueError("encode_pairs needs a tokenizer whose digit d has id d")
    s = a + b
    full = lambda v: torch.full_like(a, v)  # noqa: E731
    cols = [full(tok.bos_id)]
    cols += [a // 100, a // 10 % 10, a % 10, full(tok.token_to_id("+"))]
    cols += [b // 100, b // 10 % 10, b % 10, full(tok.token_to_id("="))]
    cols += [s % 10, s // 10 % 10, s // 100 % 10, s // 1000, full(tok.eos_id)]
    return torch.stack(cols, 1)


def training_batch(n: int, generator: torch.Generator, tokenizer: CharTokenizer | None = None) -> torch.Tensor:
    """``[n, SEQ_LEN]`` token ids of random training-split problems."""
    a, b = sample_pairs(n, generator, held_out=False)
    return encode_pairs(a, b, tokenizer)


def held_out_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` distinct held-out problems, reproducible from ``seed``."""
    pairs = _held_out_table()
    if not 0 <= n <= pairs.shape[0]:
        raise ValueError(f"n={n} must be in [0, {pairs.shape[0]}] (the size of the held-out split)")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(pairs.shape[0], generator=g)[:n]
    return [Problem(int(pairs[i, 0]), int(pairs[i, 1])) for i in idx]


_HELD_OUT_CACHE: torch.Tensor | None = None


def _held_out_table() -> torch.Tensor:
    global _HELD_OUT_CACHE
    if _HELD_OUT_CACHE is None:
        r = torch.arange(MAX_OPERAND + 1)
        a, b = torch.meshgrid(r, r, indexing="ij")
        a, b = a.reshape(-1), b.reshape(-1)
        m = held_out_mask(a, b)
        _HELD_OUT_CACHE = torch.stack([a[m], b[m]], 1)
    return _HELD_OUT_CACHE


GenerateFn = Callable[[list[list[int]], int], list[list[int]]]


def solve(generate: GenerateFn, problems: Sequence[Problem], tokenizer: CharTokenizer | None = None,
          ) -> tuple[list[list[int]], list[int | None]]:
    """Runs ``generate(prompt_ids, max_new_tokens)`` on the problems' prompts.

    ``generate`` takes a list of prompt id lists and returns, for each, the list of newly generated ids
    (greedy). Returns (generated ids per problem, parsed integer answer per problem or None)."""
    tok = tokenizer or make_tokenizer()
    prompts = [tok.encode(p.prompt, add_bos=True) for p in problems]
    outs = generate(prompts, ANSWER_DIGITS + 1)
    if len(outs) != len(prompts):
        raise ValueError(f"generate returned {len(outs)} sequences for {len(prompts)} prompts")
    answers = [parse_answer(tok.decode(o, skip_special=True, stop_at_eos=True)) for o in outs]
    return [list(map(int, o)) for o in outs], answers


def evaluate(generate: GenerateFn, problems: Sequence[Problem], tokenizer: CharTokenizer | None = None) -> float:
    """Exact-match accuracy: the generated answer is the 4 reversed digits of the sum, then <eos>."""
    if not problems:
        raise ValueError("evaluate needs at least one problem")
    tok = tokenizer or make_tokenizer()
    outs, _ = solve(generate, problems, tok)
    correct = 0
    for p, o in zip(problems, outs):
        expected = tok.encode(p.target, add_bos=False, add_eos=True)
        correct += int(o[:len(expected)] == expected)
    return correct / len(problems)


def default_model_dir() -> Path:
    """Folder of the committed demo model (``sw/model/demo``)."""
    return Path(__file__).resolve().parent / "demo"


def load_demo_model(model_dir: str | Path | None = None):
    """(reference :class:`~sw.model.model.CausalLM`, :class:`CharTokenizer`) of the committed demo
    model (or of the demo model folder ``model_dir``)."""
    from .checkpoint import load_checkpoint

    d = Path(model_dir) if model_dir is not None else default_model_dir()
    if not (d / "model.safetensors").is_file():
        raise ValueError(f"{d}: no model.safetensors (not a demo model folder, or the demo model is missing "
                         "from this install)")
    model = load_checkpoint(d)
    tok = CharTokenizer.from_file(d / "tokenizer.json")
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"{d}: tokenizer has {tok.vocab_size} tokens, model vocab_size is "
                         f"{model.config.vocab_size}")
    return model, tok


def reference_generate_fn(model) -> GenerateFn:
    """``generate(prompts, max_new_tokens)`` of a reference CausalLM (exact host integer core), for
    :func:`solve` and :func:`evaluate`."""
    def generate(prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        return model.generate_greedy(prompts, max_new_tokens).tolist()
    return generate
