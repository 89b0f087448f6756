"""tern convert (sw/model/convert.py): round trips between Hugging Face folders and GGUF files over every
ternary code and scale, tensors checked against gguf.quants.dequantize and an independent safetensors
reader, lossy TQ scales refused or reported, atomic output, the tokenizer carried along, and the
converted models running the same tokens in `tern run`."""

import json

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import quants  # noqa: E402

from helpers import assert_one_line_error, run, run_json  # noqa: E402
from sw.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sw.model.config import ModelConfig  # noqa: E402
from sw.model.convert import ConvertError, convert  # noqa: E402
from sw.model.gguf import PROJECTION_NAMES, load_gguf, read_gguf  # noqa: E402
from sw.model.presets import random_model  # noqa: E402

CFG = ModelConfig(vocab_size=64, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  bos_token_id=1, eos_token_id=2)
GGUF_TARGETS = ["gguf-tq2_0", "gguf-tq1_0", "gguf-i2_s"]


def _model(*, f16_scales=True, seed=7, config=CFG):
    """A random model whose projections hold every code (and a row of zeros, an all-zero 256-block
    for TQ); scales float16 values (TQ-lossless) or arbitrary float32 ones."""
    m = random_model(config, seed=seed, lazy=False)
    rng = np.random.default_rng(seed)
    for bl in m.bitlinears():
        bl.T[0] = 0
        s = np.float32(rng.uniform(0.01, 3.0))
        bl.w_scale.fill_(float(np.float16(s)) if f16_scales else float(s))
    return m


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    for x in (a, b):
        assert {int(v) for bl in x.bitlinears() for v in bl.T.unique()} == {-1, 0, 1}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    save_checkpoint(_model(), d / "ck")
    return d / "ck"


@pytest.mark.parametrize("to", GGUF_TARGETS)
def test_hf_to_gguf_and_back_is_lossless(tmp_path, src, to):
    ref = load_checkpoint(src)
    g = tmp_path / "m.gguf"
    r = convert(src, g, to)
    assert r.lossless and r.rounded_scales == () and r.tensors == 3 + 2 * (4 + 7)
    _same(load_gguf(g), ref)
    r2 = convert(g, tmp_path / "back", "hf")
    assert r2.lossless
    _same(load_checkpoint(tmp_path / "back"), ref)
    # and GGUF -> GGUF of every type
    for other in GGUF_TARGETS:
        convert(g, tmp_path / f"{other}.gguf", other)
        _same(load_gguf(tmp_path / f"{other}.gguf"), ref)


@pytest.mark.parametrize("qtype, to", [(QT.TQ2_0, "gguf-tq2_0"), (QT.TQ1_0, "gguf-tq1_0")])
def test_tq_tensors_equal_gguf_dequantize(tmp_path, src, qtype, to):
    """Read back with upstream gguf.GGUFReader and gguf.quants.dequantize (not tern's reader): every
    projection is T * w_scale of the source, every float tensor the source's value."""
    ref = load_checkpoint(src)
    g = tmp_path / "m.gguf"
    convert(src, g, to)
    reader = gguf.GGUFReader(str(g))
    tensors = {t.name: t for t in reader.tensors}
    for i in range(CFG.num_hidden_layers):
        for gname, suffix in PROJECTION_NAMES.items():
            t = tensors[f"blk.{i}.{gname}.weight"]
            assert t.tensor_type == qtype
            w = quants.dequantize(t.data, qtype)
            parent, attr = suffix.split(".")
            bl = getattr(getattr(ref.layers[i], parent), attr)
            assert np.array_equal(w, (bl.T.to(torch.float32) * bl.w_scale).numpy())
    emb = tensors["token_embd.weight"]
    assert emb.tensor_type == QT.F32
    assert np.array_equal(np.asarray(emb.data).reshape(CFG.vocab_size, -1), ref.embed_tokens.weight.numpy())
    meta = {f.name: f for f in reader.fields.values()}
    assert "bitnet-b1.58.hidden_act" in meta and "output.weight" in tensors


def test_hf_output_read_by_safetensors(tmp_path, src):
    """The streamed safetensors file, read by the safetensors library: packed uint8 codes that unpack
    (by hand: field j of byte row r is row r + j R) to the model's T, float32 weight_scale = w_scale."""
    from safetensors.torch import load_file
    ref = load_checkpoint(src)
    convert(src, tmp_path / "m.gguf", "gguf-i2_s")
    convert(tmp_path / "m.gguf", tmp_path / "hf", "hf")
    t = load_file(tmp_path / "hf" / "model.safetensors")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["quantization_config"]["linear_class"] == "autobitlinear" and cfg["vocab_size"] == 64
    packed = t["model.layers.1.mlp.down_proj.weight"].numpy()
    R = packed.shape[0]
    assert packed.dtype == np.uint8 and packed.shape == (256 // 4, 512)
    codes = np.concatenate([(packed >> (2 * j)) & 3 for j in range(4)])   # rows j R .. j R + R - 1
    assert np.array_equal(codes.astype(np.int8) - 1, ref.layers[1].mlp.down_proj.T.numpy()) and R == 64
    assert t["model.layers.1.mlp.down_proj.weight_scale"].dtype == torch.float32
    assert torch.equal(t["model.layers.1.mlp.down_proj.weight_scale"][0], ref.layers[1].mlp.down_proj.w_scale)


def test_bfloat16_tensors_stay_bfloat16(tmp_path):
    """A bf16 source (the 2B4T layout): GGUF BF16 tensors and back, the same bits."""
    from sw.model.synthetic import synthetic_reference_model, write_synthetic_checkpoint
    write_synthetic_checkpoint(tmp_path / "syn", CFG.replace(tie_word_embeddings=True), seed=2)
    ref = synthetic_reference_model(CFG.replace(tie_word_embeddings=True), seed=2)
    convert(tmp_path / "syn", tmp_path / "m.gguf", "gguf-i2_s")
    g = read_gguf(tmp_path / "m.gguf")
    assert g.tensors["token_embd.weight"].type == 30 and g.tensors["blk.0.ffn_sub_norm.weight"].type == 30
    convert(tmp_path / "m.gguf", tmp_path / "hf", "hf")
    from safetensors.torch import load_file
    a = load_file(tmp_path / "syn" / "model.safetensors")["model.embed_tokens.weight"]
    b = load_file(tmp_path / "hf" / "model.safetensors")["model.embed_tokens.weight"]
    assert a.dtype == b.dtype == torch.bfloat16 and torch.equal(a, b)
    ids = [[1, 5, 9]]
    assert torch.equal(load_gguf(tmp_path / "m.gguf")(ids), ref(ids))
    assert torch.equal(load_checkpoint(tmp_path / "hf", lazy=True)(ids), ref(ids))


def test_tq_refuses_scales_that_are_not_float16_unless_lossy(tmp_path, capsys):
    save_checkpoint(_model(f16_scales=False), tmp_path / "ck")
    ref = load_checkpoint(tmp_path / "ck")
    dst = tmp_path / "m.gguf"
    with pytest.raises(ConvertError, match=r"model.layers.0.self_attn.q_proj.weight: w_scale .* is not a "
                                           r"float16 value \(TQ2_0 stores float16 block scales"):
        convert(tmp_path / "ck", dst, "gguf-tq2_0")
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    r = convert(tmp_path / "ck", dst, "gguf-tq2_0", lossy=True)
    assert not r.lossless and len(r.rounded_scales) == 14
    got = load_gguf(dst)
    for (name, before, after), bl in zip(r.rounded_scales, got.bitlinears()):
        assert name == bl.name + ".weight" and after == float(np.float16(before)) == float(bl.w_scale)
    # I2_S and hf keep float32 scales: lossless
    convert(tmp_path / "ck", tmp_path / "m2.gguf", "gguf-i2_s")
    _same(load_gguf(tmp_path / "m2.gguf"), ref)
    code, r = run_json(capsys, "convert", str(tmp_path / "ck"), str(tmp_path / "m3.gguf"), "--to", "gguf-tq1_0",
                       "--lossy")
    assert code == 0 and r["lossless"] is False and len(r["rounded_scales"]) == 14


def test_existing_output_survives_a_failing_conversion(tmp_path, capsys, src):
    """A source whose last projection holds code 3 fails after most tensors were written: the old
    destination file / folder is untouched and no temporary file is left."""
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    t = load_file(bad / "model.safetensors")
    t["model.layers.1.mlp.down_proj.weight"][5, 5] = 0xFF
    save_file(t, bad / "model.safetensors")
    old = tmp_path / "old.gguf"
    old.write_bytes(b"old contents")
    code, out, err = run(capsys, "convert", str(bad), str(old), "--to", "gguf-i2_s")
    assert_one_line_error(code, out, err, "model.layers.1.mlp.down_proj.weight: invalid 2-bit code 3")
    assert old.read_bytes() == b"old contents"
    folder = tmp_path / "oldhf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, out, err = run(capsys, "convert", str(bad), str(folder), "--to", "hf")
    assert_one_line_error(code, out, err, "invalid 2-bit code 3")
    assert [p.name for p in folder.iterdir()] == ["config.json"] and (folder / "config.json").read_text() == "{}"
    code, out, err = run(capsys, "convert", str(bad), str(tmp_path / "new"), "--to", "hf")
    assert code == 2 and not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "old.gguf", "oldhf"]


@pytest.mark.parametrize("argv, needle", [
    (["{src}", "{tmp}/x.gguf", "--to", "gguf-q4"], "unknown target 'gguf-q4'"),
    (["{tmp}/none", "{tmp}/x.gguf", "--to", "gguf-i2_s"], "no such checkpoint folder or .gguf file"),
    (["{tmp}/none.gguf", "{tmp}/x.gguf", "--to", "hf"], "no such GGUF file"),
    (["{src}", "{tmp}/nodir/x.gguf", "--to", "gguf-i2_s"], "no such folder"),
    (["{src}", "{src}", "--to", "hf"], "the destination is the source"),
    (["{src}", "{tmp}", "--to", "gguf-i2_s"], "writes a file, and this is a folder"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, src, argv, needle):
    argv = [a.format(src=src, tmp=tmp_path) for a in argv]
    code, out, err = run(capsys, "convert", *argv)
    assert_one_line_error(code, out, err, needle)


def test_converted_models_run_the_same_tokens(tmp_path, capsys, src):
    """tern run on the source folder and on each conversion: the same tokens, each equal to the
    reference (match)."""
    argv = ["--prompt-ids", "1,5,9,33", "--max-new-tokens", "3", "--rows", "8", "--lanes", "32"]
    code, base = run_json(capsys, "run", "--model", str(src), *argv)
    assert code == 0 and base["match"] is True
    paths = []
    for to in GGUF_TARGETS:
        code, r = run_json(capsys, "convert", str(src), str(tmp_path / f"{to}.gguf"), "--to", to)
        assert code == 0 and r["lossless"] is True
        paths.append(tmp_path / f"{to}.gguf")
    code, r = run_json(capsys, "convert", str(paths[1]), str(tmp_path / "hf"), "--to", "hf")
    paths.append(tmp_path / "hf")
    for p in paths:
        code, r = run_json(capsys, "run", "--model", str(p), *argv)
        assert code == 0 and r["match"] is True and r["tokens"] == base["tokens"], p


def test_tokenizer_goes_along(tmp_path, capsys):
    """tokenizer.json -> GGUF tokenizer.ggml.* -> tokenizer.json: --prompt gives the same ids on the
    folder, the GGUF file and the folder converted back."""
    from test_tokenizer import build_bpe_tokenizer

    from sw.model.tokenizer import load_tokenizer_json
    ck = tmp_path / "ck"
    save_checkpoint(_model(config=CFG.replace(vocab_size=320)), ck)   # a byte-level BPE needs > 256 ids
    build_bpe_tokenizer(ck / "tokenizer.json", vocab_size=300)
    r = convert(ck, tmp_path / "m.gguf", "gguf-tq2_0")
    assert r.tokenizer
    r = convert(tmp_path / "m.gguf", tmp_path / "hf", "hf")
    assert r.tokenizer and (tmp_path / "hf" / "tokenizer.json").is_file()
    argv = ["--prompt", "the fox", "--max-new-tokens", "2", "--rows", "8", "--lanes", "32"]
    results = []
    for model in (ck, tmp_path / "m.gguf", tmp_path / "hf"):
        code, out = run_json(capsys, "run", "--model", str(model), *argv)
        assert code == 0 and out["match"] is True
        results.append((out["prompt_ids"], out["tokens"], out["text"]))
    assert results[0] == results[1] == results[2]
    assert results[0][0] == load_tokenizer_json(ck / "tokenizer.json").encode("the fox")
