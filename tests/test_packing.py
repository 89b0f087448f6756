"""2-bit checkpoint packing against transformers' own pack_weights / unpack_weights."""

import itertools

import pytest
import torch

from sw.model.packing import PackingError, pack_ternary, packed_rows, unpack_ternary

hf_bitnet = pytest.importorskip("transformers.integrations.bitnet")


@pytest.fixture(autouse=True)
def _no_dynamo():
    # transformers wraps unpack_weights in torch.compile; run it eagerly (no C++ toolchain needed)
    import torch._dynamo
    with torch._dynamo.config.patch(disable=True):
        yield


@pytest.mark.parametrize("out,inp", [(4, 3), (8, 5), (12, 16), (64, 7)])
def test_pack_matches_transformers(out, inp):
    g = torch.Generator().manual_seed(out * 100 + inp)
    t = torch.randint(-1, 2, (out, inp), generator=g, dtype=torch.int8)
    ours = pack_ternary(t)
    theirs = hf_bitnet.pack_weights(t.clone())   # pack_weights adds 1 in place
    assert ours.dtype == torch.uint8 and ours.shape == (out // 4, inp)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("out", [1, 2, 3, 5, 6, 7, 9, 13])
def test_pack_odd_rows_matches_transformers(out):
    g = torch.Generator().manual_seed(out)
    t = torch.randint(-1, 2, (out, 6), generator=g, dtype=torch.int8)
    ours = pack_ternary(t)
    assert ours.shape == (packed_rows(out), 6) == ((out + 3) // 4, 6)
    assert torch.equal(ours, hf_bitnet.pack_weights(t.clone()))
    assert torch.equal(unpack_ternary(ours, out), t)


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 8), (16, 4)])
def test_unpack_matches_transformers(rows, cols):
    g = torch.Generator().manual_seed(rows * cols)
    t = torch.randint(-1, 2, (4 * rows, cols), generator=g, dtype=torch.int8)
    packed = hf_bitnet.pack_weights(t.clone())
    theirs = hf_bitnet.unpack_weights(packed, dtype=torch.float32)
    ours = unpack_ternary(packed)
    assert ours.dtype == torch.int8
    assert torch.equal(ours.float(), theirs)
    assert torch.equal(ours, t)


def test_layout_rows_i_plus_multiples_of_r():
    # out=8 -> R=2: byte row 0 holds rows 0,2,4,6 in bit fields 0..3; byte row 1 holds rows 1,3,5,7
    t = torch.tensor([[-1], [0], [1], [-1], [0], [1], [1], [0]], dtype=torch.int8)
    codes = (t + 1).flatten().tolist()
    expect0 = codes[0] | codes[2] << 2 | codes[4] << 4 | codes[6] << 6
    expect1 = codes[1] | codes[3] << 2 | codes[5] << 4 | codes[7] << 6
    assert pack_ternary(t).flatten().tolist() == [expect0, expect1]


def test_every_byte_value_unpacks_or_is_rejected():
    for b in range(256):
        fields = [(b >> (2 * j)) & 3 for j in range(4)]
        packed = torch.tensor([[b]], dtype=torch.uint8)
        if 3 in fields:
            with pytest.raises(PackingError, match="code 3"):
                unpack_ternary(packed)
        else:
            assert unpack_ternary(packed).flatten().tolist() == [f - 1 for f in fields]


def test_exhaustive_small_round_trip():
    # every ternary column of length 5 (3**5 = 243), packed into 2 byte rows with 3 padding fields
    cols = torch.tensor(list(itertools.product((-1, 0, 1), repeat=5)), dtype=torch.int8).T.contiguous()
    packed = pack_ternary(cols)
    assert packed.shape == (2, 243)
    assert torch.equal(unpack_ternary(packed, 5), cols)
    assert torch.equal(packed, hf_bitnet.pack_weights(cols.clone()))


def test_padding_field_with_code_3_is_rejected():
    packed = pack_ternary(torch.zeros(5, 2, dtype=torch.int8))   # R=2, rows 5..7 are padding
    packed[1, 1] |= 3 << 6                                       # field 3 of byte row 1 = row 7
    with pytest.raises(PackingError, match="row 7"):
        unpack_ternary(packed, 5)


def test_validation_errors():
    with pytest.raises(PackingError, match="outside"):
        pack_ternary(torch.tensor([[2]]))
    with pytest.raises(PackingError, match="NaN"):
        pack_ternary(torch.tensor([[float("nan")]]))
    with pytest.raises(PackingError, match="uint8"):
        unpack_ternary(torch.zeros(2, 2, dtype=torch.int8))
    with pytest.raises(PackingError, match="expected ceil"):
        unpack_ternary(torch.zeros(2, 2, dtype=torch.uint8), 9)
    with pytest.raises(PackingError):
        packed_rows(0)
