"""BitLinear: D equals an independent int64 matmul, the epilogue, the integer-core hook."""

import numpy as np
import pytest
import torch

from sw.model.bitlinear import BitLinear, reference_core
from sw.model.quant import weight_quant


def _np_reference(x: np.ndarray, t: np.ndarray, w_scale: np.float32):
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-5)).astype(np.float32)
    s = (np.float32(127) / amax).astype(np.float32)
    q = np.clip(np.round(x * s), -128, 127).astype(np.int64)
    d = q @ t.astype(np.int64).T
    return q, s, d, (d.astype(np.float32) / s) * w_scale


def _layer(seed=0, out=24, inp=40):
    g = torch.Generator().manual_seed(seed)
    return BitLinear.from_float(torch.randn(out, inp, generator=g) * 0.02, name="test.proj"), g


def test_from_float_uses_weight_quant():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 8, generator=g)
    bl = BitLinear.from_float(w)
    t, s = weight_quant(w)
    assert torch.equal(bl.T, t) and torch.equal(bl.w_scale, s)
    assert bl.T.dtype == torch.int8 and bl.w_scale.dtype == torch.float32


def test_forward_exact_matches_integer_reference():
    bl, g = _layer()
    x = torch.randn(2, 5, 40, generator=g) * 3
    tr = bl.forward_exact(x)
    q, s, d, y = _np_reference(x.numpy(), bl.T.numpy(), np.float32(bl.w_scale.item()))
    assert tr.q.shape == (2, 5, 40) and tr.s_x.shape == (2, 5, 1) and tr.D.shape == (2, 5, 24)
    assert tr.D.dtype == torch.int32
    assert np.array_equal(tr.q.numpy().astype(np.int64), q)
    assert np.array_equal(tr.D.numpy().astype(np.int64), d)
    assert np.array_equal(tr.y.numpy(), y)
    assert torch.equal(bl(x), tr.y)


def test_core_hook_receives_flat_q_and_is_used():
    bl, g = _layer(2)
    x = torch.randn(3, 4, 40, generator=g)
    calls = []

    def core(q, t, linear):
        calls.append((tuple(q.shape), q.dtype, linear.name))
        return reference_core(q, t, linear).to(torch.int64) + 1   # a wrong core: off by one

    tr_ref = bl.forward_exact(x)
    tr = bl.forward_exact(x, core)
    assert calls == [((12, 40), torch.int8, "test.proj")]
    assert torch.equal(tr.D, tr_ref.D + 1)
    assert tr.D.dtype == torch.int32
    assert torch.equal(tr.y, ((tr_ref.D + 1).float() / tr.s_x) * bl.w_scale)


def test_core_hook_result_is_checked():
    bl, g = _layer(3)
    x = torch.randn(2, 40, generator=g)
    with pytest.raises(ValueError, match="shape"):
        bl(x, lambda q, t, m: torch.zeros(2, 23, dtype=torch.int32))
    with pytest.raises(TypeError, match="integer"):
        bl(x, lambda q, t, m: torch.zeros(2, 24))
    with pytest.raises(ValueError, match="int32"):
        bl(x, lambda q, t, m: torch.full((2, 24), 2**31, dtype=torch.int64))


def test_from_ternary_and_validation():
    t = torch.tensor([[1, 0, -1], [0, 0, 1]])
    bl = BitLinear.from_ternary(t, 0.5)
    assert bl.T.tolist() == [[1, 0, -1], [0, 0, 1]] and bl.w_scale.item() == 0.5
    assert torch.equal(bl.dequantized_weight(), torch.tensor([[0.5, 0, -0.5], [0, 0, 0.5]]))
    with pytest.raises(ValueError, match="outside"):
        BitLinear.from_ternary(torch.tensor([[2, 0]]), 1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="w_scale"):
            BitLinear.from_ternary(t, bad)
    with pytest.raises(ValueError, match="one element"):
        BitLinear.from_ternary(t, torch.ones(2))
    with pytest.raises(ValueError, match="in_features"):
        BitLinear(0, 3)
    with pytest.raises(ValueError, match="features"):
        BitLinear(3, 2)(torch.zeros(1, 4))
