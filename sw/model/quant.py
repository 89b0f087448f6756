"""BitNet b1.58 quantizers and the exact integer core (``docs/MODEL.md``, "Numerics", to the letter).

All float math is float32 and ``rne`` is ``torch.round`` (round half to even).

- :func:`weight_quant`: per-tensor absmean ternarization
  ``gamma = max(mean(|W|), 1e-5)``, ``T = clamp(rne(W * (1/gamma)), -1, 1)``, ``w_scale = gamma``.
- :func:`act_quant`: per-token (last dimension) absmax int8 quantization
  ``amax = max(max|x|, 1e-5)``, ``s_x = 127 / amax``, ``q = clamp(rne(x * s_x), -128, 127)``.
- :func:`ternary_matmul`: ``D[t, n] = sum_k q[t, k] * T[n, k]`` as exact integers (int32).
- :func:`epilogue`: ``y = (D.float32 / s_x) * w_scale``, in that order.

``act_quant`` never produces -128: ``|x * s_x| <= 127 * (1 + 2**-23)`` for every element, which rounds
to at most 127 in magnitude. The integer core therefore satisfies ``|D| <= 127 * K``; it accepts any
int8 ``q`` and checks ``128 * K < 2**31`` so that the int32 result can never overflow.
"""

from __future__ import annotations

import torch

__all__ = [
    "GAMMA_FLOOR", "AMAX_FLOOR", "ACT_QMIN", "ACT_QMAX", "MAX_K",
    "weight_quant", "act_quant", "ternary_matmul", "epilogue", "quantized_linear",
]

GAMMA_FLOOR = 1e-5     # floor of mean(|W|)
AMAX_FLOOR = 1e-5      # floor of max|x| per token
ACT_QMIN, ACT_QMAX = -128, 127
MAX_K = (2**31 - 1) // 128   # largest reduction length whose int32 result cannot overflow
_F32_EXACT_K = 2**24 // 128  # up to this K every partial sum is an integer < 2**24: exact in float32


def _as_float32(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)})")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    return x


def weight_quant(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternarizes a weight tensor (per-tensor absmean).

    Returns ``(T, w_scale)``: ``T`` int8 with the shape of ``w`` and values in {-1, 0, +1};
    ``w_scale`` a 0-dim float32 tensor equal to ``gamma = max(mean(|W|), 1e-5)``.
    ``w`` is converted to float32 first (bf16/fp16 convert exactly).
    """
    w = _as_float32(w, "weight")
    gamma = w.abs().mean().clamp(min=GAMMA_FLOOR)
    inv = torch.ones_like(gamma) / gamma          # 1/gamma, one IEEE division
    t = torch.clamp(torch.round(w * inv), -1, 1).to(torch.int8)
    return t, gamma.reshape(())


def act_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token int8 absmax quantization along the last dimension.

    Returns ``(q, s_x)``: ``q`` int8 with the shape of ``x``; ``s_x`` float32 of shape
    ``x.shape[:-1] + (1,)`` (the multiplier ``127 / amax``).
    """
    x = _as_float32(x, "activation")
    if x.dim() == 0:
        raise ValueError("activation must have at least one dimension")
    amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=AMAX_FLOOR)
    # a true IEEE division: torch's ``127.0 / amax`` (Python scalar on the left) computes
    # ``reciprocal(amax) * 127`` with two roundings, which is off by one ulp for some amax
    s_x = torch.full_like(amax, 127.0) / amax
    q = torch.clamp(torch.round(x * s_x), ACT_QMIN, ACT_QMAX).to(torch.int8)
    return q, s_x


def ternary_matmul(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact integer core ``D = q @ T^T``: ``q`` int8 (..., K), ``T`` int8 (N, K) in {-1,0,1}.

    Returns int32 (..., N). Computed in float32 when ``K <= 2**17`` (every partial sum is an integer of
    magnitude <= 128*K <= 2**24, so float32 is exact whatever the summation order) and in float64
    otherwise (exact up to 2**53); ``K`` must not exceed :data:`MAX_K` so that ``|D| < 2**31``.
    """
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise TypeError(f"q must be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int8:
        raise TypeError(f"T must be an int8 tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.dim() != 2:
        raise ValueError(f"T must be 2-D (N, K), got shape {tuple(t.shape)}")
    if q.dim() < 1 or q.shape[-1] != t.shape[1]:
        raise ValueError(f"q shape {tuple(q.shape)} does not match T shape {tuple(t.shape)} (K)")
    k = t.shape[1]
    if k > MAX_K:
        raise ValueError(f"K={k} exceeds {MAX_K}: the int32 result could overflow")
    if t.numel() and int(t.abs().max()) > 1:
        raise ValueError("T has values outside {-1, 0, 1}")
    ftype = torch.float32 if k <= _F32_EXACT_K else torch.float64
    d = torch.matmul(q.to(ftype), t.to(ftype).T)
    out = d.to(torch.int32)
    # the documented range (a cheap guard that the float path stayed exact)
    assert d.numel() == 0 or float(d.abs().max()) <= 128 * k
    return out


def epilogue(d: torch.Tensor, s_x: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """``y = (D.float32 / s_x) * w_scale`` exactly in that order (float32)."""
    if not isinstance(d, torch.Tensor) or d.is_floating_point() or d.is_complex():
        raise TypeError(f"D must be an integer tensor, got {getattr(d, 'dtype', type(d).__name__)}")
    if s_x.dtype != torch.float32 or w_scale.dtype != torch.float32:
        raise TypeError(f"s_x and w_scale must be float32, got {s_x.dtype} and {w_scale.dtype}")
    return (d.to(torch.float32) / s_x) * w_scale


def quantized_linear(x: torch.Tensor, t: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """The whole BitLinear computation on the reference core: ``epilogue(q @ T^T, s_x, w_scale)``."""
    q, s_x = act_quant(x)
    return epilogue(ternary_matmul(q, t), s_x, w_scale)
