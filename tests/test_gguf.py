"""GGUF import (sw/model/gguf.py): TQ1_0 / TQ2_0 files written by ``gguf.GGUFWriter`` and
``gguf.quants.quantize``, I2_S files written by this file's own writer (bitnet.cpp's layout as
docs/MODEL.md describes it). Every loaded projection is checked against ``gguf.quants.dequantize``
(TQ types) or a per-weight I2_S decoder written here; the tensor table against ``gguf.GGUFReader``; a
loaded layer through the simulator against the reference (``torch.equal``); bad files give one line."""

import struct

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import quants  # noqa: E402

from helpers import assert_one_line_error, run, run_json  # noqa: E402
from sw.model.gguf import (PROJECTION_NAMES, TYPE_I2_S, GGUFError, decode_i2s, encode_i2s,  # noqa: E402
                           gguf_config, load_gguf, read_gguf)

H, FFN, HEADS, KV, VOCAB = 256, 512, 4, 2, 64
HEAD_DIM = H // HEADS
# GGUF names -> numpy shapes (out, in) of the seven projections
PROJ_SHAPES = {"attn_q": (H, H), "attn_k": (KV * HEAD_DIM, H), "attn_v": (KV * HEAD_DIM, H),
               "attn_output": (H, H), "ffn_gate": (FFN, H), "ffn_up": (FFN, H), "ffn_down": (H, FFN)}


def _weights(layers=1, *, sub_norms=True, untied=False, seed=0, zero_block=True):
    """Random float tensors (GGUF names, numpy shapes) and ternary projections (T, gamma), gamma a
    float16 value so that TQ files hold it exactly."""
    rng = np.random.default_rng(seed)
    floats = {"token_embd.weight": rng.standard_normal((VOCAB, H)).astype(np.float32),
              "output_norm.weight": (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)}
    if untied:
        floats["output.weight"] = rng.standard_normal((VOCAB, H)).astype(np.float32)
    proj = {}
    for i in range(layers):
        floats[f"blk.{i}.attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
        floats[f"blk.{i}.ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
        if sub_norms:
            floats[f"blk.{i}.attn_sub_norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
            floats[f"blk.{i}.ffn_sub_norm.weight"] = (1 + 0.1 * rng.standard_normal(FFN)).astype(np.float32)
        for n, shape in PROJ_SHAPES.items():
            t = rng.integers(-1, 2, size=shape).astype(np.int8)
            if zero_block:
                t[0, :256] = 0            # an all-zero block: TQ writers store d = 0 there
            gamma = np.float32(np.float16(rng.uniform(0.01, 0.1)))
            proj[f"blk.{i}.{n}.weight"] = (t, gamma)
    return floats, proj


def _metadata_writer(w, arch, layers, *, act=None):
    w.add_block_count(layers)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_context_length(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)   # what llama.cpp's BitNet converter writes
    w.add_rope_scaling_factor(1.0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if act is not None:
        w.add_string(f"{arch}.hidden_act", act)


def write_tq(path, qtype, *, arch="bitnet-b1.58", layers=1, act=None, floats=None, proj=None, **kw):
    """A TQ1_0 / TQ2_0 file through gguf.GGUFWriter; returns (floats, proj)."""
    if floats is None:
        floats, proj = _weights(layers, **kw)
    w = gguf.GGUFWriter(str(path), arch)
    _metadata_writer(w, arch, layers, act=act)
    for name, a in floats.items():
        w.add_tensor(name, a)
    for name, (t, gamma) in proj.items():
        wf = t.astype(np.float32) * gamma
        w.add_tensor(name, quants.quantize(wf, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return floats, proj


def _s(b: str) -> bytes:
    return struct.pack("<Q", len(b.encode())) + b.encode()


def write_raw_gguf(path, metadata: dict, tensors: list, align=32):
    """A GGUF v3 file written by hand: metadata {key: str | int (uint32) | float (float32)},
    tensors [(name, dims in GGML order, type id, data bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for k, v in metadata.items():
        out += _s(k)
        if isinstance(v, str):
            out += struct.pack("<I", 8) + _s(v)
        elif isinstance(v, float):
            out += struct.pack("<If", 6, v)
        else:
            out += struct.pack("<II", 4, v)
    off, blobs = 0, []
    for name, dims, ttype, data in tensors:
        out += _s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", ttype, off)
        blobs.append((off, data))
        off += -(-len(data) // align) * align
    out += bytes(-len(out) % align)
    base = len(out)
    out += bytes(off)
    for o, data in blobs:
        out[base + o:base + o + len(data)] = data
    path.write_bytes(bytes(out))


def _raw_metadata(arch, layers, act=None):
    m = {"general.architecture": arch, f"{arch}.block_count": layers, f"{arch}.embedding_length": H,
         f"{arch}.feed_forward_length": FFN, f"{arch}.attention.head_count": HEADS,
         f"{arch}.attention.head_count_kv": KV, f"{arch}.context_length": 64,
         f"{arch}.attention.layer_norm_rms_epsilon": 1e-5, f"{arch}.rope.freq_base": 500000.0}
    if act is not None:
        m[f"{arch}.hidden_act"] = act
    return m


def write_i2s(path, *, arch="bitnet-b1.58", layers=1, act=None, floats=None, proj=None, patch=None, **kw):
    """An I2_S file through write_raw_gguf; ``patch(list of tensors)`` may edit the table."""
    if floats is None:
        floats, proj = _weights(layers, **kw)
    tensors = [(n, tuple(reversed(a.shape)), 0, a.astype("<f4").tobytes()) for n, a in floats.items()]
    tensors += [(n, tuple(reversed(t.shape)), TYPE_I2_S, encode_i2s(t, g)) for n, (t, g) in proj.items()]
    if patch is not None:
        patch(tensors)
    write_raw_gguf(path, _raw_metadata(arch, layers, act), tensors)
    return floats, proj


def _i2s_by_hand(raw: bytes, shape):
    """Per-weight I2_S decoder, bitnet.cpp's quantize_i2_s loop read backwards: weight i is in block
    i // 128, at j = i % 128: byte 32 (i // 128) + j % 32, bits shifted by 6 - 2 (j // 32)."""
    n = shape[0] * shape[1]
    t = [((raw[32 * (i // 128) + (i % 128) % 32] >> (6 - 2 * ((i % 128) // 32))) & 3) - 1 for i in range(n)]
    return np.array(t, dtype=np.int8).reshape(shape), struct.unpack("<f", raw[n // 4:n // 4 + 4])[0]


def _projections(model, i):
    layer = model.layers[i]
    return {n: getattr(getattr(layer, s.split(".")[0]), s.split(".")[1]) for n, s in PROJECTION_NAMES.items()}


# -- decoding ---------------------------------------------------------------------------------------

def test_encode_i2s_bitnet_cpp_block_layout():
    # weights 0, 32, 64, 96 of a 128-weight block share byte 0 (bits 7..6, 5..4, 3..2, 1..0); weight 1
    # is in byte 1's high bits. t = -1, 0, +1, +1 there -> codes 0, 1, 2, 2 -> 0b00_01_10_10
    t = np.zeros(256, np.int8)
    t[[0, 32, 64, 96]] = [-1, 0, 1, 1]
    t[1], t[128] = 1, -1
    b = encode_i2s(t, 0.5)
    assert b[0] == 0b00011010 and b[1] == 0b10010101 and b[32] == 0b00010101 and b[2] == 0b01010101
    assert b[64:68] == bytes([0, 0, 0, 0x3F]) and len(b) == 64 + 32   # scale 0.5 (LE float32), pad to 32
    codes, s = decode_i2s(np.frombuffer(b, np.uint8), (2, 128))
    assert np.array_equal(codes.astype(np.int8) - 1, t.reshape(2, 128)) and s == np.float32(0.5)
    with pytest.raises(ValueError, match="multiple of 128"):
        encode_i2s(np.zeros(64, np.int8), 1.0)


@pytest.mark.parametrize("qtype", [QT.TQ1_0, QT.TQ2_0])
def test_tq_every_tensor_matches_gguf_dequantize(tmp_path, qtype):
    path = tmp_path / "m.gguf"
    floats, proj = write_tq(path, qtype, layers=2, untied=True)
    model = load_gguf(path)
    reader = gguf.GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    n_checked = 0
    for i in range(2):
        for n, bl in _projections(model, i).items():
            name = f"blk.{i}.{n}.weight"
            t, gamma = proj[name]
            assert torch.equal(bl.T, torch.from_numpy(t))                          # the written codes
            assert bl.w_scale.item() == float(gamma)                               # float16 gamma exactly
            deq = quants.dequantize(by_name[name].data, qtype)                      # upstream decoder
            assert torch.equal(bl.T.float() * bl.w_scale, torch.from_numpy(np.asarray(deq)))
            n_checked += 1
    assert n_checked == 14
    assert torch.equal(model.embed_tokens.weight, torch.from_numpy(floats["token_embd.weight"]))
    assert torch.equal(model.lm_head_weight, torch.from_numpy(floats["output.weight"]))
    assert torch.equal(model.layers[1].mlp.ffn_sub_norm.weight, torch.from_numpy(floats["blk.1.ffn_sub_norm.weight"]))
    # the tensor table read here agrees with gguf.GGUFReader's
    g = read_gguf(path)
    assert set(g.tensors) == set(by_name)
    for name, t in by_name.items():
        assert g.tensors[name].dims == tuple(int(d) for d in t.shape)
        assert g.tensors[name].type == int(t.tensor_type)
        assert g.tensors[name].offset == int(t.data_offset) and g.tensors[name].nbytes == int(t.n_bytes)


def test_i2s_every_tensor_matches_a_per_weight_decoder(tmp_path):
    path = tmp_path / "m.gguf"
    floats, proj = write_i2s(path, layers=2)
    model = load_gguf(path)
    g = read_gguf(path)
    for i in range(2):
        for n, bl in _projections(model, i).items():
            name = f"blk.{i}.{n}.weight"
            t, s = _i2s_by_hand(g.raw(name).tobytes(), PROJ_SHAPES[n])
            assert np.array_equal(t, proj[name][0])
            assert torch.equal(bl.T, torch.from_numpy(t)) and bl.w_scale.item() == s == float(proj[name][1])
    assert torch.equal(model.norm.weight, torch.from_numpy(floats["output_norm.weight"]))
    assert model.config.tie_word_embeddings


def test_float_projection_holding_ternary_values(tmp_path):
    path = tmp_path / "m.gguf"
    floats, proj = _weights(1)
    tensors = [(n, tuple(reversed(a.shape)), 0, a.astype("<f4").tobytes()) for n, a in floats.items()]
    tensors += [(n, tuple(reversed(t.shape)), 1, (t.astype(np.float32) * g).astype("<f2").tobytes())
                for n, (t, g) in proj.items()]
    write_raw_gguf(path, _raw_metadata("bitnet", 1), tensors)
    model = load_gguf(path)
    for n, bl in _projections(model, 0).items():
        t, gamma = proj[f"blk.0.{n}.weight"]
        assert torch.equal(bl.T, torch.from_numpy(t)) and bl.w_scale.item() == float(gamma)


def test_quantized_and_half_float_tensors_decode_like_gguf(tmp_path):
    path = tmp_path / "m.gguf"
    floats, proj = _weights(1)
    q8 = quants.quantize(floats["token_embd.weight"], QT.Q8_0)
    w = gguf.GGUFWriter(str(path), "bitnet")
    _metadata_writer(w, "bitnet", 1)
    for name, a in floats.items():
        if name == "token_embd.weight":
            w.add_tensor(name, q8, raw_dtype=QT.Q8_0)
        else:
            w.add_tensor(name, a.astype(np.float16))
    for name, (t, gamma) in proj.items():
        w.add_tensor(name, quants.quantize(t.astype(np.float32) * gamma, QT.TQ2_0), raw_dtype=QT.TQ2_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model = load_gguf(path)
    assert torch.equal(model.embed_tokens.weight, torch.from_numpy(quants.dequantize(q8, QT.Q8_0)))
    assert torch.equal(model.layers[0].input_layernorm.weight,
                       torch.from_numpy(floats["blk.0.attn_norm.weight"].astype(np.float16).astype(np.float32)))


# -- metadata ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, act, expected, source", [
    ("bitnet-b1.58", None, "relu2", "default for architecture 'bitnet-b1.58'"),
    ("bitnet", None, "silu", "default for architecture 'bitnet'"),
    ("bitnet", "relu2", "relu2", "metadata bitnet.hidden_act"),
    ("bitnet-b1.58", "silu", "silu", "metadata bitnet-b1.58.hidden_act"),
])
def test_activation_follows_the_file(tmp_path, arch, act, expected, source):
    path = tmp_path / "m.gguf"
    write_i2s(path, arch=arch, act=act)
    model = load_gguf(path)
    assert model.config.hidden_act == expected
    assert model.gguf_info.hidden_act_source == source and source in model.gguf_info.describe()
    assert model.gguf_info.weight_types == ("I2_S",)
    from sw.driver.models import load_model
    lm = load_model(str(path))
    assert lm.kind == "gguf" and lm.config.hidden_act == expected and source in lm.notes[0]


def test_config_from_metadata(tmp_path):
    path = tmp_path / "m.gguf"
    write_tq(path, QT.TQ2_0, layers=2, sub_norms=False, untied=True, arch="bitnet")
    c = gguf_config(path)
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers) == (VOCAB, H, FFN, 2)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (HEADS, KV, HEAD_DIM)
    assert (c.max_position_embeddings, c.rope_theta, c.bos_token_id, c.eos_token_id) == (64, 500000.0, 1, (2,))
    assert c.rms_norm_eps == pytest.approx(1e-5) and c.rms_norm_eps == float(np.float32(1e-5))
    assert not c.sub_norms and c.model_type == "llama" and not c.tie_word_embeddings and c.hidden_act == "silu"
    from sw.driver.models import model_config, num_layers
    assert model_config(str(path)) == c and num_layers(str(path)) == 2


def test_tern_estimate_on_a_gguf_file(capsys, tmp_path):
    path = tmp_path / "m.gguf"
    write_i2s(path, layers=2)
    code, r = run_json(capsys, "estimate", "--model", str(path))
    assert code == 0 and r["layers"] == 2 and r["model"] == str(path)


# -- through the accelerator -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["TQ1_0", "I2_S"])
def test_layer_through_the_simulator_is_bit_exact(tmp_path, kind):
    from hw.config import TernConfig
    from sw.driver.models import layer_check, layer_input, load_layer
    from sw.driver.runtime import Accelerator
    path = tmp_path / "m.gguf"
    write_tq(path, QT.TQ1_0) if kind == "TQ1_0" else write_i2s(path)
    layer, mc = load_layer(str(path), 0)
    chk = layer_check(Accelerator(TernConfig(rows=8, lanes=32)), layer, layer_input(mc, 2, seed=3))
    assert chk.bit_exact and chk.output.abs().max() > 0
    whole = load_gguf(path).layers[0]   # the layer decoded alone equals the whole model's layer 0
    assert all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(), whole.state_dict().values()))
    assert len(layer.state_dict()) == len(whole.state_dict()) > 7


def test_tern_layer_and_run_on_a_gguf_file(capsys, tmp_path):
    path = tmp_path / "m.gguf"
    write_tq(path, QT.TQ2_0, layers=2)
    code, r = run_json(capsys, "layer", "--model", str(path), "--layer", "1", "--tokens", "1",
                       "--rows", "8", "--lanes", "32")
    assert code == 0 and r["bit_exact"] is True
    code, r = run_json(capsys, "run", "--model", str(path), "--prompt-ids", "1,5,9", "--max-new-tokens", "2",
                       "--rows", "8", "--lanes", "32")
    assert code == 0 and r["match"] is True


# -- bad files: one line naming the file / tensor / value ---------------------------------------------

def _bad(tmp_path, make, needle):
    path = tmp_path / "bad.gguf"
    make(path)
    with pytest.raises(GGUFError) as e:
        load_gguf(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and needle in msg, msg
    return path


def test_wrong_magic_and_truncation(tmp_path):
    _bad(tmp_path, lambda p: p.write_bytes(b"GGML" + bytes(40)), "not a GGUF file")
    _bad(tmp_path, lambda p: p.write_bytes(b"GG"), "truncated")

    def cut_header(p):
        write_i2s(p)
        p.write_bytes(p.read_bytes()[:200])
    _bad(tmp_path, cut_header, "truncated")

    def cut_data(p):
        write_i2s(p)
        p.write_bytes(p.read_bytes()[:-100])
    _bad(tmp_path, cut_data, "truncated: tensor blk.0.ffn_down.weight")


def test_unknown_type_row_length_and_shape(tmp_path):
    def unknown(p):
        write_i2s(p, patch=lambda ts: ts.__setitem__(-1, (*ts[-1][:2], 99, ts[-1][3])))
    _bad(tmp_path, unknown, "tensor blk.0.ffn_down.weight: unknown GGML type 99")

    def short_rows(p):   # a TQ2_0 tensor whose rows hold 128 weights
        write_i2s(p, patch=lambda ts: ts.append(("blk.0.extra.weight", (128, 2), int(QT.TQ2_0), bytes(132))))
    _bad(tmp_path, short_rows, "tensor blk.0.extra.weight: row length 128 is not a multiple of 256")

    def wrong_shape(p):
        floats, proj = _weights(1)
        proj["blk.0.attn_k.weight"] = (np.zeros((H, H), np.int8), np.float32(0.5))
        write_i2s(p, floats=floats, proj=proj)
    _bad(tmp_path, wrong_shape, f"tensor blk.0.attn_k.weight: shape ({H}, {H}), expected ({KV * HEAD_DIM}, {H})")

    def extra(p):
        write_i2s(p, patch=lambda ts: ts.append(("blk.0.attn_q.scale", (1,), 0, bytes(4))))
    _bad(tmp_path, extra, "tensor blk.0.attn_q.scale: unexpected tensor")

    def missing(p):
        write_i2s(p, patch=lambda ts: ts.pop(0))
    _bad(tmp_path, missing, "token_embd.weight: missing tensor")


def test_block_scales_that_differ_are_rejected(tmp_path):
    def differ(p):
        floats, proj = _weights(1)
        t, g = proj["blk.0.ffn_up.weight"]
        w = t.astype(np.float32) * g
        w[1] *= 2                                        # row 1's blocks carry 2 gamma
        qd = quants.quantize(w, QT.TQ2_0)
        wr = gguf.GGUFWriter(str(p), "bitnet")
        _metadata_writer(wr, "bitnet", 1)
        for n, a in floats.items():
            wr.add_tensor(n, a)
        for n, (tt, gg) in proj.items():
            data = qd if n == "blk.0.ffn_up.weight" else quants.quantize(tt.astype(np.float32) * gg, QT.TQ2_0)
            wr.add_tensor(n, data, raw_dtype=QT.TQ2_0)
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()
    _bad(tmp_path, differ, "tensor blk.0.ffn_up.weight: TQ2_0 block scales differ")


def test_bad_codes_scales_and_metadata(tmp_path):
    def code3(p):
        def patch(ts):
            n, dims, ty, data = ts[-1]
            ts[-1] = (n, dims, ty, b"\xff" + data[1:])
        write_i2s(p, patch=patch)
    _bad(tmp_path, code3, "tensor blk.0.ffn_down.weight: I2_S weight (0, 0) has code 3")

    def bad_scale(p):
        floats, proj = _weights(1)
        proj["blk.0.attn_v.weight"] = (proj["blk.0.attn_v.weight"][0], np.float32(-1.0))
        write_i2s(p, floats=floats, proj=proj)
    _bad(tmp_path, bad_scale, "tensor blk.0.attn_v.weight: I2_S scale -1.0 must be finite and > 0")

    _bad(tmp_path, lambda p: write_i2s(p, arch="llama"), "general.architecture='llama' is not supported")

    def yarn(p):
        write_raw_gguf(p, {**_raw_metadata("bitnet", 1), "bitnet.rope.scaling.type": "yarn"}, [])
    _bad(tmp_path, yarn, "bitnet.rope.scaling.type='yarn' with factor 1.0 is not supported")
    _bad(tmp_path, lambda p: write_i2s(p, act="gelu"), "bitnet-b1.58.hidden_act='gelu' is not supported")


def test_cli_bad_gguf_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(60))
    for cmd in (["layer", "--model", str(bad), "--layer", "0"], ["run", "--model", str(bad), "--prompt-ids", "1"]):
        code, out, err = run(capsys, *cmd)
        assert_one_line_error(code, out, err, "not a GGUF file")
    code, out, err = run(capsys, "layer", "--model", str(tmp_path / "none.gguf"), "--layer", "0")
    assert_one_line_error(code, out, err, "no such GGUF file")
    good = tmp_path / "m.gguf"
    write_i2s(good)
    code, out, err = run(capsys, "layer", "--model", str(good), "--layer", "1")
    assert_one_line_error(code, out, err, "out of range")
    from sw.driver.models import ModelSpecError, load_layer
    with pytest.raises(ModelSpecError, match="out of range"):
        load_layer(str(good), 3)


def test_wrong_block_counts_and_sizes_are_rejected_before_allocating(tmp_path, monkeypatch):
    """Metadata that contradicts the tensor table (block counts, a huge feed-forward length, dims
    whose product overflows 64 bits) is one line, found before any model memory is sized by it."""
    import sw.model.gguf as G

    def no_model(*a, **k):
        raise AssertionError("a model was allocated before the tensor table was checked")

    monkeypatch.setattr(G, "CausalLM", no_model)
    monkeypatch.setattr(G, "DecoderLayer", no_model)

    def meta(**kv):
        return lambda p: write_raw_gguf(p, {**_raw_metadata("bitnet-b1.58", 1), **kv}, _i2s_tensors())
    _bad(tmp_path, meta(**{"bitnet-b1.58.block_count": 10**9}),
         "block_count=1000000000, but the file has no tensors of block 1")

    def drop_block_1(ts):
        ts[:] = [t for t in ts if not t[0].startswith("blk.1.")]
    _bad(tmp_path, lambda p: write_i2s(p, layers=2, patch=drop_block_1), "has no tensors of block 1")

    def more_blocks(p):
        write_i2s(p, patch=lambda ts: ts.append(("blk.7.attn_norm.weight", (H,), 0, bytes(4 * H))))
    _bad(tmp_path, more_blocks, "block_count=1, but the file has tensors of block 7")
    _bad(tmp_path, meta(**{"bitnet-b1.58.feed_forward_length": 2**31}),
         f"tensor blk.0.ffn_sub_norm.weight: shape ({FFN},), expected (2147483648,)")

    def overflow(p):
        write_i2s(p, patch=lambda ts: ts.append(("blk.0.huge.weight", (2**32, 2**32 + 1), 0, b"")))
    _bad(tmp_path, overflow, "truncated: tensor blk.0.huge.weight needs bytes")


def _i2s_tensors():
    """The tensor table write_i2s writes for one layer."""
    floats, proj = _weights(1)
    return ([(n, tuple(reversed(a.shape)), 0, a.astype("<f4").tobytes()) for n, a in floats.items()] +
            [(n, tuple(reversed(t.shape)), TYPE_I2_S, encode_i2s(t, g)) for n, (t, g) in proj.items()])
