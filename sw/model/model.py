"""The reference ternary causal LM (``BitNetForCausalLM`` / 1bitLLM LLaMA-style), float32 on the CPU.

Embeddings and the LM head are float32 and not quantized; the seven projections of every layer are
:class:`~sw.model.bitlinear.BitLinear`. **Accelerator hook**: ``CausalLM.core`` (default ``None``: the
exact host core) is passed to every BitLinear call; a driver sets it (or passes ``core=`` to
:meth:`CausalLM.forward` / :meth:`CausalLM.generate_greedy`, or uses ``with model.using_core(fn):``) to
compute ``D = q @ T^T`` on its backend. See :mod:`sw.model.bitlinear` for the core's signature.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bitlinear import BitLinear, Core
from .config import ModelConfig
from .layers import DecoderLayer, KVCache, RMSNorm

__all__ = ["CausalLM"]

IdsLike = Union[torch.Tensor, Sequence[int], Sequence[Sequence[int]]]


class CausalLM(nn.Module):
    """Embeddings -> decoder layers -> final RMSNorm -> LM head (tied to the embeddings or not).

    ``layers`` may be given (any indexable sequence of :class:`DecoderLayer` of length
    ``num_hidden_layers``, e.g. the lazy one of :mod:`sw.model.presets`); by default they are created
    with zero weights (fill them with a checkpoint loader).
    """

    def __init__(self, config: ModelConfig, layers: Optional[Sequence[DecoderLayer]] = None):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size, dtype=torch.float32)
        self.embed_tokens.weight.requires_grad_(False)
        if layers is None:
            layers = nn.ModuleList(DecoderLayer(c, i) for i in range(c.num_hidden_layers))
        elif len(layers) != c.num_hidden_layers:
            raise ValueError(f"got {len(layers)} layers, config has num_hidden_layers={c.num_hidden_layers}")
        self.layers = layers
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if c.tie_word_embeddings:
            self.lm_head_weight = None
        else:
            self.lm_head_weight = nn.Parameter(torch.zeros(c.vocab_size, c.hidden_size), requires_grad=False)
        self.core: Optional[Core] = None

    # -- weights -------------------------------------------------------------------------------
    @property
    def lm_head(self) -> torch.Tensor:
        """The (vocab, hidden) float32 LM head matrix (the embedding matrix when tied)."""
        return self.embed_tokens.weight if self.lm_head_weight is None else self.lm_head_weight

    def bitlinears(self) -> Iterator[BitLinear]:
        """All BitLinear projections, layer by layer (q, k, v, o, gate, up, down)."""
        for i in range(self.config.num_hidden_layers):
            for m in self.layers[i].modules():
                if isinstance(m, BitLinear):
                    yield m

    @contextlib.contextmanager
    def using_core(self, core: Optional[Core]):
        """``with model.using_core(fn): ...`` runs every BitLinear's integer core through ``fn``."""
        old, self.core = self.core, core
        try:
            yield self
        finally:
            self.core = old

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_hidden_layers)

    # -- forward -------------------------------------------------------------------------------
    def _check_ids(self, ids: IdsLike) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor):
            ids = torch.tensor(ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
            raise ValueError(f"token ids must be a non-empty (batch, seq) array, got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise TypeError(f"token ids must be integers, got {ids.dtype}")
        ids = ids.to(torch.long)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside [0, {self.config.vocab_size})")
        return ids

    @torch.no_grad()
    def hidden_states(self, ids: IdsLike, cache: Optional[KVCache] = None,
                      core: Optional[Core] = None) -> torch.Tensor:
        """Final-norm hidden states (B, T, hidden) for ``ids`` continuing ``cache`` (if given)."""
        ids = self._check_ids(ids)
        core = core if core is not None else self.core
        start = cache.seq_len if cache is not None else 0
        if start + ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {start + ids.shape[1]} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        x = F.embedding(ids, self.embed_tokens.weight)
        for i in range(self.config.num_hidden_layers):
            x = self.layers[i](x, start, cache[i] if cache is not None else None, core)
        return self.norm(x)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """LM head applied one position at a time (the same op in prefill and decode: bit-identical)."""
        w = self.lm_head
        flat = h.reshape(-1, h.shape[-1])
        rows = [F.linear(flat[i], w) for i in range(flat.shape[0])]
        return torch.stack(rows).reshape(*h.shape[:-1], w.shape[0])

    @torch.no_grad()
    def forward(self, ids: IdsLike, cache: Optional[KVCache] = None, core: Optional[Core] = None,
                *, last_only: bool = False) -> torch.Tensor:
        """Logits float32 (B, T, vocab), or (B, 1, vocab) for the last position with ``last_only``."""
        h = self.hidden_states(ids, cache, core)
        if last_only:
            h = h[:, -1:]
        return self.logits_from_hidden(h)

    @torch.no_grad()
    def generate_greedy(self, ids: IdsLike, max_new_tokens: int, core: Optional[Core] = None,
                        *, stop_at_eos: bool = False, on_token=None) -> torch.Tensor:
        """Greedy continuation with the KV cache; returns only the new tokens, int64 (B, max_new_tokens).

        ``ids``: a prompt (list of ints / 1-D tensor) or a batch of equal-length prompts (2-D).
        Ties in argmax pick the lowest token id (``torch.argmax``). With ``stop_at_eos``, generation stops
        once every sequence has produced an ``eos_token_id`` (the result may then be shorter; tokens after
        a sequence's eos are still the greedy ones, callers cut them). ``on_token(step, ids)``, if
        given, is called with the ids (B,) chosen at each step (0-based) before the next step runs.
        """
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a non-negative integer")
        ids = self._check_ids(ids)
        b = ids.shape[0]
        out = torch.empty(b, 0, dtype=torch.long)
        if max_new_tokens == 0:
            return out
        cache = self.new_cache()
        eos = torch.tensor(self.config.eos_token_id, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        step_in = ids
        new = []
        for step in range(max_new_tokens):
            logits = self.forward(step_in, cache, core, last_only=True)[:, -1]
            nxt = torch.argmax(logits, dim=-1)
            new.append(nxt)
            if on_token is not None:
                on_token(step, nxt)
            if stop_at_eos and len(eos):
                done |= torch.isin(nxt, eos)
                if bool(done.all()):
                    break
            step_in = nxt[:, None]
        return torch.stack(new, dim=1)
