"""BitLinear: a ternary projection computed with the exact integer core (``docs/MODEL.md``, "Numerics").

``y = epilogue(core(act_quant(x).q, T), s_x, w_scale)`` where ``core`` is the **integer-core hook**:

    core(q: int8 (N, K), T: int8 (M, K), linear: BitLinear) -> integer tensor (N, M)

The default core is :func:`sw.model.quant.ternary_matmul` (exact, on the host). The accelerator driver
passes its own core (through ``CausalLM.core`` / the ``core=`` argument of every ``forward``) to compute
``D = q @ T^T`` on the simulator, RTL or board; everything else (quantizing activations, the epilogue,
norms, attention, ...) stays on the host and is identical, so a correct core gives bit-identical
outputs. The ``linear`` argument gives the core the layer's ``name``, ``T`` and ``w_scale`` (e.g. to
look up weights it already packed for the device). The returned ``D`` is checked for shape and int32
range and converted to int32.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from .quant import act_quant, epilogue, ternary_matmul, weight_quant

__all__ = ["BitLinear", "BitLinearTrace", "Core", "reference_core"]

Core = Callable[[torch.Tensor, torch.Tensor, "BitLinear"], torch.Tensor]


def reference_core(q: torch.Tensor, t: torch.Tensor, linear: "BitLinear") -> torch.Tensor:
    """The host integer core: exact ``q @ T^T`` (int32)."""
    return ternary_matmul(q, t)


class BitLinearTrace(NamedTuple):
    """Everything one BitLinear call computed (leading dims of ``x`` kept).

    x: float32 (..., K) input; q: int8 (..., K); s_x: float32 (..., 1); T: int8 (M, K);
    w_scale: float32 0-dim; D: int32 (..., M); y: float32 (..., M) = (D.float() / s_x) * w_scale.
    """
    x: torch.Tensor
    q: torch.Tensor
    s_x: torch.Tensor
    T: torch.Tensor
    w_scale: torch.Tensor
    D: torch.Tensor
    y: torch.Tensor


class BitLinear(nn.Module):
    """Ternary linear layer ``in_features -> out_features`` without bias.

    Buffers: ``T`` int8 (out_features, in_features) in {-1, 0, +1}; ``w_scale`` float32 0-dim
    (the multiplied per-tensor scale, ``gamma``). ``name`` is the layer's dotted name in the model
    (e.g. ``model.layers.0.self_attn.q_proj``), used in error messages and by accelerator cores.
    """

    def __init__(self, in_features: int, out_features: int, *, name: str = ""):
        super().__init__()
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"BitLinear {what}={v!r} must be a positive integer")
        self.in_features = in_features
        self.out_features = out_features
        self.name = name
        self.register_buffer("T", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_scale", torch.ones((), dtype=torch.float32))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_float(cls, w: torch.Tensor, *, name: str = "") -> "BitLinear":
        """Ternarizes float master weights ``w`` (out, in) with :func:`weight_quant`."""
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"{name or 'BitLinear'}: weight must be a 2-D tensor, got "
                             f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")
        t, s = weight_quant(w)
        return cls.from_ternary(t, s, name=name)

    @classmethod
    def from_ternary(cls, t: torch.Tensor, w_scale, *, name: str = "") -> "BitLinear":
        """From ternary values ``t`` (out, in; any integer or float dtype holding -1/0/1) and the
        multiplied scale ``w_scale`` (a positive finite number or 1-element tensor, made float32)."""
        label = name or "BitLinear"
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{label}: ternary weight must be a 2-D tensor")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{label}: ternary weight contains NaN or Inf")
        if not bool(((t == -1) | (t == 0) | (t == 1)).all()):
            raise ValueError(f"{label}: ternary weight has values outside {{-1, 0, 1}}")
        s = torch.as_tensor(w_scale).detach()
        if s.numel() != 1:
            raise ValueError(f"{label}: w_scale must have exactly one element, got shape {tuple(s.shape)}")
        s = s.to(torch.float32).reshape(())
        if not bool(torch.isfinite(s)) or not float(s) > 0:
            raise ValueError(f"{label}: w_scale={float(s)!r} must be finite and > 0")
        m = cls(t.shape[1], t.shape[0], name=name)
        m.T.copy_(t.to(torch.int8))
        m.w_scale.copy_(s)
        return m

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, name={self.name!r}"

    # -- compute ------------------------------------------------------------------------------
    def _integer_core(self, q: torch.Tensor, core: Optional[Core]) -> torch.Tensor:
        lead = q.shape[:-1]
        q2 = q.reshape(-1, self.in_features)
        d = (core or reference_core)(q2, self.T, self)
        if not isinstance(d, torch.Tensor) or d.is_floating_point() or d.is_complex() or d.dtype == torch.bool:
            raise TypeError(f"{self.name or 'BitLinear'}: integer core returned "
                            f"{getattr(d, 'dtype', type(d).__name__)}, expected an integer tensor")
        if tuple(d.shape) != (q2.shape[0], self.out_features):
            raise ValueError(f"{self.name or 'BitLinear'}: integer core returned shape {tuple(d.shape)}, "
                             f"expected {(q2.shape[0], self.out_features)}")
        if d.dtype != torch.int32:
            if d.numel() and (int(d.max()) > 2**31 - 1 or int(d.min()) < -2**31):
                raise ValueError(f"{self.name or 'BitLinear'}: integer core result exceeds int32")
            d = d.to(torch.int32)
        return d.reshape(*lead, self.out_features)

    def forward_exact(self, x: torch.Tensor, core: Optional[Core] = None) -> BitLinearTrace:
        """Runs the layer and returns every intermediate (:class:`BitLinearTrace`)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{self.name or 'BitLinear'}: input has {x.shape[-1]} features, "
                             f"expected {self.in_features}")
        q, s_x = act_quant(x)
        d = self._integer_core(q, core)
        y = epilogue(d, s_x, self.w_scale)
        return BitLinearTrace(x, q, s_x, self.T, self.w_scale, d, y)

    def forward(self, x: torch.Tensor, core: Optional[Core] = None) -> torch.Tensor:
        return self.forward_exact(x, core).y

    def dequantized_weight(self) -> torch.Tensor:
        """``T * w_scale`` as float32 (what fake-quant float code multiplies by)."""
        return self.T.to(torch.float32) * self.w_scale
