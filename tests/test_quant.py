"""The reference quantizers (docs/MODEL.md, "Numerics") and integer core against independent numpy references."""

import numpy as np
import pytest
import torch

from sw.model.quant import MAX_K, act_quant, epilogue, quantized_linear, ternary_matmul, weight_quant


def _np_weight_quant(w: np.ndarray):
    """numpy float32 reference; exact when sum(|W|) is exact and n is a power of two (as used here)."""
    w = w.astype(np.float32)
    gamma = np.float32(max(np.float32(np.abs(w).astype(np.float64).sum() / w.size), np.float32(1e-5)))
    inv = np.float32(1.0) / gamma
    t = np.clip(np.round(w * inv), -1, 1).astype(np.int8)
    return t, gamma


def _np_act_quant(x: np.ndarray):
    x = x.astype(np.float32)
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-5)).astype(np.float32)
    s = (np.float32(127.0) / amax).astype(np.float32)
    q = np.clip(np.round(x * s), -128, 127).astype(np.int8)
    return q, s


# -- weight_quant ----------------------------------------------------------------------------------

def test_weight_quant_matches_numpy_on_exact_grid():
    rng = np.random.default_rng(0)
    # multiples of 2**-10 below 2 in magnitude, 1024 elements: the sum of |W| is exact in float32
    w = (rng.integers(-2047, 2048, size=(64, 16)) / 1024.0).astype(np.float32)
    t, s = weight_quant(torch.from_numpy(w))
    t_ref, s_ref = _np_weight_quant(w)
    assert t.dtype == torch.int8 and s.dtype == torch.float32 and s.shape == ()
    assert np.array_equal(t.numpy(), t_ref)
    assert s.item() == float(s_ref)
    assert set(np.unique(t.numpy())) <= {-1, 0, 1}


def test_weight_quant_ties_round_half_to_even_at_gamma_half():
    # mean(|W|) = 8/8 = 1 exactly, so W * (1/gamma) = W: 0.5 and -0.5 (= +-gamma/2) round to 0,
    # 1.5 rounds to 2 -> clamped 1, 2.0 -> clamped 1
    w = torch.tensor([[0.5, -0.5, 1.5, -1.5], [0.0, 1.0, 2.0, 1.0]])
    t, s = weight_quant(w)
    assert s.item() == 1.0
    assert torch.equal(t, torch.tensor([[0, 0, 1, -1], [0, 1, 1, 1]], dtype=torch.int8))


def test_weight_quant_just_above_half_gamma_rounds_away():
    # gamma = 1 again; 0.5 + 2**-10 and 2.5 - 2**-10 keep the sum at 8 exactly
    w = torch.tensor([[0.5 + 2**-10, -0.5, 1.5, -1.5], [0.0, 1.0, 2.0 - 2**-10, 1.0]])
    t, s = weight_quant(w)
    assert s.item() == 1.0
    assert torch.equal(t, torch.tensor([[1, 0, 1, -1], [0, 1, 1, 1]], dtype=torch.int8))


def test_weight_quant_all_zero_uses_gamma_floor():
    t, s = weight_quant(torch.zeros(8, 4))
    assert torch.equal(t, torch.zeros(8, 4, dtype=torch.int8))
    assert s.item() == float(np.float32(1e-5))


def test_weight_quant_tiny_values_fall_under_floor():
    # mean |W| = 4e-6 < 1e-5: gamma is the floor, W/gamma = 0.4 -> 0; 6e-6/1e-5 = 0.6 -> 1
    w = torch.tensor([[4e-6, -4e-6], [6e-6, 2e-6]])
    t, s = weight_quant(w)
    assert s.item() == float(np.float32(1e-5))
    assert torch.equal(t, torch.tensor([[0, 0], [1, 0]], dtype=torch.int8))


def test_weight_quant_huge_values():
    w = torch.tensor([[2.0**100, -(2.0**100)], [0.0, 2.0**102]])  # mean 1.5 * 2**100 (exact)
    t, s = weight_quant(w)
    assert torch.equal(t, torch.tensor([[1, -1], [0, 1]], dtype=torch.int8))
    assert s.item() == 1.5 * 2.0**100


def test_weight_quant_bf16_input_converts_exactly():
    w = (torch.arange(-8, 8, dtype=torch.float32) / 4).reshape(4, 4)
    t1, s1 = weight_quant(w.to(torch.bfloat16))
    t2, s2 = weight_quant(w)
    assert torch.equal(t1, t2) and torch.equal(s1, s2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weight_quant_rejects_non_finite(bad):
    w = torch.ones(2, 2)
    w[0, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        weight_quant(w)


def test_weight_quant_rejects_integer_and_empty():
    with pytest.raises(TypeError):
        weight_quant(torch.ones(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="empty"):
        weight_quant(torch.ones(0, 2))


# -- act_quant -------------------------------------------------------------------------------------

def test_act_quant_matches_numpy_random():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 5, 257)) * rng.uniform(0.01, 100, size=(3, 5, 1))).astype(np.float32)
    q, s = act_quant(torch.from_numpy(x))
    q_ref, s_ref = _np_act_quant(x)
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert s.shape == (3, 5, 1)
    assert np.array_equal(q.numpy(), q_ref)
    assert np.array_equal(s.numpy(), s_ref)


def test_act_quant_all_zero_row_uses_amax_floor():
    x = torch.zeros(2, 16)
    x[1, 3] = 2.0
    q, s = act_quant(x)
    assert torch.equal(q[0], torch.zeros(16, dtype=torch.int8))
    assert s[0, 0].item() == float(np.float32(127.0) / np.float32(1e-5))
    assert q[1, 3].item() == 127 and int(q[1].abs().sum()) == 127


def test_act_quant_ties_round_half_to_even():
    # amax = 127 -> s_x = 1 exactly, so q = rne(x)
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -3.5]])
    q, s = act_quant(x)
    assert s.item() == 1.0
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, 126, -4]]


def test_act_quant_tiny_and_huge_rows():
    x = torch.tensor([[1e-7, -5e-8, 0.0], [1e30, -3e29, 5e29]])
    q, s = act_quant(x)
    # row 0: amax floor 1e-5 -> s = 1.27e7, 1e-7 * s = 1.27 -> 1, -0.635 -> -1
    assert q[0].tolist() == [1, -1, 0]
    assert q[1].tolist() == [127, -38, 64]   # -0.3 * 127 = -38.1, 0.5 * 127 = 63.5 -> 64 (even)


def test_act_quant_never_produces_minus_128():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 64)).astype(np.float32)
    # make the negative extreme the row maximum in half of the rows, with assorted magnitudes
    x[::2, 0] = -np.abs(x[::2]).max(axis=1) * rng.uniform(1.0, 1.5, size=2000)
    x *= rng.uniform(1e-4, 1e4, size=(4000, 1)).astype(np.float32)
    q, _ = act_quant(torch.from_numpy(x))
    assert int(q.min()) == -127 and int(q.max()) == 127
    assert q[::2, 0].eq(-127).all()


def test_act_quant_rejects_nan():
    with pytest.raises(ValueError, match="NaN or Inf"):
        act_quant(torch.tensor([[1.0, float("nan")]]))


# -- integer core and epilogue ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 2560, 6912])
def test_ternary_matmul_equals_int64_reference(k):
    g = torch.Generator().manual_seed(k)
    q = torch.randint(-128, 128, (5, k), generator=g, dtype=torch.int8)
    q[0] = -128                      # extreme rows: |D| up to 128 * K
    t = torch.randint(-1, 2, (9, k), generator=g, dtype=torch.int8)
    t[0] = -1
    d = ternary_matmul(q, t)
    ref = q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T
    assert d.dtype == torch.int32
    assert np.array_equal(d.numpy(), ref)
    assert d[0, 0].item() == 128 * k


def test_ternary_matmul_float64_path_is_exact():
    k = 2**17 + 5                    # above the float32-exact bound: float64 path
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-128, 128, (2, k), generator=g, dtype=torch.int8)
    q[1] = 127
    t = torch.randint(-1, 2, (3, k), generator=g, dtype=torch.int8)
    t[2] = 1
    ref = q.numpy().astype(np.int64) @ t.numpy().astype(np.int64).T
    assert np.array_equal(ternary_matmul(q, t).numpy(), ref)
    assert ref[1, 2] == 127 * k


def test_ternary_matmul_batched_leading_dims():
    g = torch.Generator().manual_seed(3)
    q = torch.randint(-128, 128, (2, 3, 40), generator=g, dtype=torch.int8)
    t = torch.randint(-1, 2, (6, 40), generator=g, dtype=torch.int8)
    ref = np.einsum("btk,nk->btn", q.numpy().astype(np.int64), t.numpy().astype(np.int64))
    assert np.array_equal(ternary_matmul(q, t).numpy(), ref)


def test_ternary_matmul_validation():
    q = torch.zeros(2, 4, dtype=torch.int8)
    with pytest.raises(TypeError):
        ternary_matmul(q.float(), torch.zeros(3, 4, dtype=torch.int8))
    with pytest.raises(ValueError, match="does not match"):
        ternary_matmul(q, torch.zeros(3, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match="outside"):
        ternary_matmul(q, torch.full((3, 4), 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="overflow"):
        ternary_matmul(torch.zeros(1, MAX_K + 1, dtype=torch.int8), torch.zeros(1, MAX_K + 1, dtype=torch.int8))


def test_epilogue_order_matches_numpy():
    rng = np.random.default_rng(4)
    d = rng.integers(-100000, 100000, size=(7, 11)).astype(np.int32)
    s = rng.uniform(0.1, 1000, size=(7, 1)).astype(np.float32)
    w = np.float32(0.0137)
    y = epilogue(torch.from_numpy(d), torch.from_numpy(s), torch.tensor(w))
    ref = (d.astype(np.float32) / s) * w
    assert y.dtype == torch.float32
    assert np.array_equal(y.numpy(), ref)
    # the other association differs for some elements, so the order is really (D / s_x) * w_scale
    other = d.astype(np.float32) * (w / s)
    assert not np.array_equal(ref, other)


def test_quantized_linear_composes_the_three_steps():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 32, generator=g)
    t = torch.randint(-1, 2, (8, 32), generator=g, dtype=torch.int8)
    w = torch.tensor(0.25)
    q_ref, s_ref = _np_act_quant(x.numpy())
    d_ref = q_ref.astype(np.int64) @ t.numpy().astype(np.int64).T
    y_ref = (d_ref.astype(np.float32) / s_ref) * np.float32(0.25)
    assert np.array_equal(quantized_linear(x, t, w).numpy(), y_ref)
