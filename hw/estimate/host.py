"""The host's share of one token: the work that does not run on the tern core, in bytes and operations.

The tern core runs the seven BitLinear projections of every layer. Everything else runs on the host
CPU (``sw/model``'s own code does it in the reference and in the driver):

* ``embedding``: one bf16 row of ``hidden_size`` read per token;
* ``lm_head``: the unquantized ``vocab_size x hidden_size`` bf16 matrix read once per layer pass (the
  T tokens of a prefill share it) and ``vocab_size x hidden_size`` MACs per token; the core cannot run
  it (it has no floating-point datapath), so it runs on the host;
* ``kv_cache``: per layer, K and V of ``num_kv_heads x head_dim`` bf16 values per position: the
  ``context`` cached positions read once per pass, the new token's K and V written;
* ``attention``: per layer ``2 x num_heads x head_dim x (context + 1)`` MACs (scores and the weighted
  sum of V) and 4 operations per score for the softmax (max, subtract, exp, normalize), and RoPE on
  the query and key heads (3 operations per element);
* ``norms``: every RMSNorm (input and post-attention per layer, the two sub-norms of the bitnet family,
  the final norm): ``d`` MACs (sum of squares) + ``2 d`` operations (scale, weight), and its bf16
  weights read once per pass;
* ``activation_quant``: per projection, the int8 absmax quantization of its input (3 operations per
  input element: absolute maximum, scale, round) and the dequantization epilogue of its output
  (2 operations per output element);
* ``elementwise``: the MLP activation and gating (2 operations per intermediate element) and the two
  residual additions (``2 x hidden_size``) per layer;
* ``host_transfers``: the host's side of the host <-> core streams (it writes the activations and the
  program the core reads and reads the results the core writes): the same bytes as the core's
  ``act``, ``instr`` and ``out`` streams.

Counts are per token; a T-token prefill divides what the tokens share (the LM head's and the norms'
weights, the cached K and V) by T. The logits, the hidden state and the norms' intermediate values are
assumed to stay in the host's caches (not counted as memory traffic).
"""

from __future__ import annotations

__all__ = ["host_work", "BF16_BYTES"]

BF16_BYTES = 2


def host_work(shape, *, context: int, tokens: int, core_bus_bytes_per_token: dict) -> dict:
    """``{part: {"bytes": memory bytes per token, "macs": MACs per token, "ops": other operations per
    token}}`` of the host's parts of one token of ``shape`` (a :class:`hw.estimate.ModelShape`).

    ``context``: positions already in the KV cache; ``tokens``: tokens per layer pass;
    ``core_bus_bytes_per_token``: the core's streams per token (``act``, ``out``, ``instr``), whose
    host side is ``host_transfers``."""
    s, T, C, L = shape, tokens, context, shape.layers
    b = BF16_BYTES
    q_width = s.num_heads * s.head_dim
    kv_width = s.num_kv_heads * s.head_dim
    norm_dims = [s.hidden_size, s.hidden_size] + ([s.hidden_size, s.intermediate_size] if s.sub_norms else [])
    norm_elems = L * sum(norm_dims) + s.hidden_size              # + the final norm
    proj_in = sum(K for _, _, K in s.projections)
    proj_out = sum(N for _, N, _ in s.projections)
    bus = core_bus_bytes_per_token
    return {
        "embedding": {"bytes": s.hidden_size * b, "macs": 0, "ops": 0},
        "lm_head": {"bytes": s.vocab_size * s.hidden_size * b / T, "macs": s.vocab_size * s.hidden_size,
                    "ops": 0},
        "kv_cache": {"bytes": L * 2 * kv_width * b * (C / T + 1), "macs": 0, "ops": 0},
        "attention": {"bytes": 0, "macs": L * 2 * q_width * (C + 1),
                      "ops": L * (4 * s.num_heads * (C + 1) + 3 * (q_width + kv_width))},
        "norms": {"bytes": norm_elems * b / T, "macs": norm_elems, "ops": 2 * norm_elems},
        "activation_quant": {"bytes": 0, "macs": 0, "ops": L * (3 * proj_in + 2 * proj_out)},
        "elementwise": {"bytes": 0, "macs": 0, "ops": L * (2 * s.intermediate_size + 2 * s.hidden_size)},
        "host_transfers": {"bytes": bus["act"] + bus["out"] + bus["instr"], "macs": 0, "ops": 0},
    }
