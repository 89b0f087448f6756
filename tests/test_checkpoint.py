"""Checkpoint load/save: round trips, the three weight layouts, shards, and every loader error."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sw.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sw.model.config import ModelConfig
from sw.model.presets import random_model
from sw.model.quant import weight_quant


CFG = ModelConfig(vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  bos_token_id=1, eos_token_id=2)
Q = "model.layers.0.self_attn.q_proj"


def _same_model(a, b):
    assert a.config == b.config
    sa = {k: v for k, v in a.state_dict().items()}
    sb = {k: v for k, v in b.state_dict().items()}
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, seed=5, lazy=False)


@pytest.fixture
def ckpt(tmp_path, model):
    save_checkpoint(model, tmp_path / "ck")
    return tmp_path / "ck"


def _edit(folder, fn):
    path = folder / "model.safetensors"
    t = load_file(path)
    fn(t)
    save_file(t, path)


def _edit_config(folder, fn):
    path = folder / "config.json"
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


# -- round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("packed", [True, False])
def test_round_trip_autobitlinear(tmp_path, model, packed):
    save_checkpoint(model, tmp_path, packed=packed)
    t = load_file(tmp_path / "model.safetensors")
    assert t[f"{Q}.weight"].dtype == (torch.uint8 if packed else torch.float32)
    assert t[f"{Q}.weight"].shape == ((16, 64) if packed else (64, 64))
    assert torch.equal(t[f"{Q}.weight_scale"], model.layers[0].self_attn.q_proj.w_scale.reshape(1))
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["quantization_config"] == {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                          "quantization_mode": "offline"}
    loaded = load_checkpoint(tmp_path)
    _same_model(model, loaded)
    ids = torch.tensor([[1, 5, 9, 3]])
    assert torch.equal(loaded(ids), model(ids))


def test_round_trip_bitlinear_class_stores_reciprocal(tmp_path, model):
    save_checkpoint(model, tmp_path / "a", linear_class="bitlinear")
    first = load_checkpoint(tmp_path / "a")
    ws = load_file(tmp_path / "a" / "model.safetensors")[f"{Q}.weight_scale"]
    # transformers' BitLinear divides by weight_scale: w_scale = 1 / weight_scale in float32
    assert torch.equal(first.layers[0].self_attn.q_proj.w_scale, (torch.tensor(1.0) / ws).reshape(()))
    for a, b in zip(model.bitlinears(), first.bitlinears()):
        assert torch.equal(a.T, b.T)
        assert abs(a.w_scale.item() - b.w_scale.item()) <= 2 * torch.finfo(torch.float32).eps * a.w_scale.item()
    save_checkpoint(first, tmp_path / "b", linear_class="bitlinear")
    _same_model(first, load_checkpoint(tmp_path / "b"))   # exact once the scale is a float32 reciprocal


def test_save_keeps_other_files_and_validates_args(tmp_path, model):
    (tmp_path / "tokenizer.json").write_text("{}")
    save_checkpoint(model, tmp_path)
    assert (tmp_path / "tokenizer.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    with pytest.raises(ValueError, match="linear_class"):
        save_checkpoint(model, tmp_path, linear_class="foo")
    with pytest.raises(ValueError, match="packed=False"):
        save_checkpoint(model, tmp_path, packed=False, linear_class="bitlinear")


def test_tied_model_omits_lm_head(tmp_path):
    m = random_model(CFG.replace(tie_word_embeddings=True), seed=2, lazy=False)
    save_checkpoint(m, tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    _same_model(m, load_checkpoint(tmp_path))


def test_float_master_weights_are_ternarized_at_load(tmp_path, model):
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in load_file((save_checkpoint(model, tmp_path / "src") / "model.safetensors")).items():
        if k.endswith(".weight_scale"):
            continue
        if k.endswith("_proj.weight"):
            out_f = v.shape[0] * 4
            v = torch.randn(out_f, v.shape[1], generator=g, dtype=torch.float32).to(torch.bfloat16)
        sd[k] = v
    (tmp_path / "fm").mkdir()
    save_file(sd, tmp_path / "fm" / "model.safetensors")
    cfg = CFG.to_hf_dict()
    (tmp_path / "fm" / "config.json").write_text(json.dumps(cfg))
    m = load_checkpoint(tmp_path / "fm")
    for bl in m.bitlinears():
        t, s = weight_quant(sd[f"{bl.name}.weight"])
        assert torch.equal(bl.T, t) and torch.equal(bl.w_scale, s)


def test_sharded_with_and_without_index(tmp_path, model, ckpt):
    t = load_file(ckpt / "model.safetensors")
    names = sorted(t)
    half = {n: t[n] for n in names[: len(names) // 2]}
    rest = {n: t[n] for n in names[len(names) // 2:]}
    for sub, index in (("idx", True), ("noidx", False)):
        d = tmp_path / sub
        d.mkdir()
        shutil.copy(ckpt / "config.json", d)
        save_file(half, d / "model-00001-of-00002.safetensors")
        save_file(rest, d / "model-00002-of-00002.safetensors")
        if index:
            wm = {n: "model-00001-of-00002.safetensors" for n in half}
            wm.update({n: "model-00002-of-00002.safetensors" for n in rest})
            (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
        _same_model(model, load_checkpoint(d))


# -- errors ----------------------------------------------------------------------------------------

def test_missing_folder_config_and_files(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: config.json is not valid JSON"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text(json.dumps(CFG.to_hf_dict()))
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("patch,match", [
    (lambda d: d.update(model_type="mistral"), "config.json: unsupported model_type"),
    (lambda d: d.update(architectures=["GPT2LMHeadModel"]), "config.json: unsupported architecture"),
    (lambda d: d.update(hidden_size=-64), "config.json: hidden_size"),
    (lambda d: d.update(num_key_value_heads=3), "config.json: num_attention_heads"),
    (lambda d: d["quantization_config"].update(linear_class="foo"), "linear_class"),
])
def test_bad_config_values(ckpt, patch, match):
    _edit_config(ckpt, patch)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.pop(f"{Q}.weight"), f"ck \\[model.safetensors\\]: tensor {Q}.weight: missing tensor"),
    (lambda t: t.pop(f"{Q}.weight_scale"), f"tensor {Q}.weight_scale: missing"),
    (lambda t: t.pop("model.norm.weight"), "tensor model.norm.weight: missing"),
    (lambda t: t.pop("lm_head.weight"), "tensor lm_head.weight: missing"),
    (lambda t: t.update({f"{Q}.weight": t[f"{Q}.weight"][:15].clone()}), f"{Q}.weight: packed shape \\(15, 64\\)"),
    (lambda t: t.update({f"{Q}.weight": t[f"{Q}.weight"].to(torch.int16)}), f"{Q}.weight: dtype torch.int16"),
    (lambda t: t.update({"model.embed_tokens.weight": t["model.embed_tokens.weight"][:, :63].clone()}),
     "model.embed_tokens.weight: shape"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"].to(torch.int32)}), "model.norm.weight: dtype"),
    (lambda t: t[f"{Q}.weight"].__setitem__((3, 7), 0xFF), f"{Q}.weight: invalid 2-bit code 3"),
    (lambda t: t["model.layers.1.mlp.ffn_sub_norm.weight"].__setitem__(5, float("nan")),
     "ffn_sub_norm.weight: contains NaN or Inf"),
    (lambda t: t["lm_head.weight"].__setitem__((0, 0), float("inf")), "lm_head.weight: contains NaN or Inf"),
    (lambda t: t[f"{Q}.weight_scale"].fill_(float("inf")), f"{Q}.weight_scale: value inf"),
    (lambda t: t[f"{Q}.weight_scale"].fill_(-1.0), f"{Q}.weight_scale: value -1.0"),
    (lambda t: t.update({f"{Q}.weight_scale": torch.ones(2)}), f"{Q}.weight_scale: shape \\(2,\\)"),
    (lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}), "q_proj.bias: unexpected tensor"),
])
def test_bad_tensors(ckpt, edit, match):
    _edit(ckpt, edit)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt)


def test_packed_weights_need_offline_quantization_config(ckpt):
    _edit_config(ckpt, lambda d: d.pop("quantization_config"))
    with pytest.raises(CheckpointError, match="needs? a bitnet quantization_config"):
        load_checkpoint(ckpt)


def test_offline_float_weights_must_be_ternary(tmp_path, model):
    save_checkpoint(model, tmp_path, packed=False)
    _edit(tmp_path, lambda t: t[f"{Q}.weight"].__setitem__((0, 0), 0.5))
    with pytest.raises(CheckpointError, match=f"{Q}.weight: offline-quantized float weights must hold only"):
        load_checkpoint(tmp_path)


def test_master_weights_with_weight_scale_are_rejected(ckpt):
    def unpack_all(t):
        for k in list(t):
            if k.endswith("_proj.weight"):
                t[k] = torch.randn(t[k].shape[0] * 4, t[k].shape[1])
    _edit(ckpt, unpack_all)
    _edit_config(ckpt, lambda d: d.pop("quantization_config"))
    with pytest.raises(CheckpointError, match="unexpected weight_scale"):
        load_checkpoint(ckpt)


def test_truncated_and_corrupt_safetensors(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        load_checkpoint(ckpt)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage-header!!")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        load_checkpoint(ckpt)


def test_bad_index_files(ckpt):
    index = ckpt / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"model.norm.weight": "model-0002.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-0002.safetensors: safetensors file named in"):
        load_checkpoint(ckpt)
    index.write_text(json.dumps({"weight_map": {"not.there": "model.safetensors"}}))
    with pytest.raises(CheckpointError, match="tensor not.there listed in"):
        load_checkpoint(ckpt)
    index.write_text("[1, 2")
    with pytest.raises(CheckpointError, match="index.json: safetensors index is not valid JSON"):
        load_checkpoint(ckpt)


def test_duplicate_tensor_across_files(ckpt):
    save_file({"model.norm.weight": torch.ones(64)}, ckpt / "extra.safetensors")
    with pytest.raises(CheckpointError, match="also appears in"):
        load_checkpoint(ckpt)


def test_errors_are_one_line_value_errors(ckpt):
    _edit(ckpt, lambda t: t[f"{Q}.weight"].__setitem__((0, 0), 0xFF))
    with pytest.raises(ValueError) as e:
        load_checkpoint(ckpt)
    assert "\n" not in str(e.value) and str(ckpt) in str(e.value)


# -- bad input classes: bounded JSON, the config against the tensors, field types -------------------------

def _nest(depth):
    return "[" * depth + "]" * depth


def test_deeply_nested_config_and_index_are_one_line(ckpt):
    good = (ckpt / "config.json").read_text()
    (ckpt / "config.json").write_text(good[:-1].rstrip().rstrip("}") + f', "x": {_nest(100_000)}}}')
    with pytest.raises(CheckpointError, match="config.json: config.json is nested more than 64 levels deep"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text(good)
    (ckpt / "model.safetensors.index.json").write_text('{"weight_map": ' + _nest(100_000) + "}")
    with pytest.raises(CheckpointError, match="index.json: safetensors index is nested more than 64 levels"):
        load_checkpoint(ckpt)


def test_config_that_contradicts_the_tensors_is_rejected_before_allocating(ckpt, monkeypatch):
    import sw.model.checkpoint as ck

    def no_model(*a, **k):
        raise AssertionError("a model was allocated before the shapes were compared")

    monkeypatch.setattr(ck, "CausalLM", no_model)
    monkeypatch.setattr(ck, "DecoderLayer", no_model)
    _edit_config(ckpt, lambda d: d.update(vocab_size=10**12))
    with pytest.raises(CheckpointError, match=r"model.embed_tokens.weight: shape \(40, 64\), expected "
                                              r"\(1000000000000, 64\)"):
        load_checkpoint(ckpt)
    _edit_config(ckpt, lambda d: d.update(vocab_size=40, intermediate_size=10**9))
    with pytest.raises(CheckpointError, match=r"ffn_sub_norm.weight: shape \(96,\), expected \(1000000000,\)"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("value, needle", [
    (5, "modules_to_not_convert=5 must be a list of module names"),
    ("lm_head", "modules_to_not_convert='lm_head' must be a list"),
    ([["lm_head"]], "modules_to_not_convert=[['lm_head']] must be a list"),
])
def test_wrong_typed_modules_to_not_convert(ckpt, value, needle):
    _edit_config(ckpt, lambda d: d["quantization_config"].update(modules_to_not_convert=value))
    with pytest.raises(CheckpointError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("key, value", [("linear_class", ["bitlinear"]), ("quantization_mode", 1),
                                        ("use_rms_norm", "no")])
def test_wrong_typed_quantization_fields(ckpt, key, value):
    _edit_config(ckpt, lambda d: d["quantization_config"].update({key: value}))
    with pytest.raises(CheckpointError, match=f"quantization_config.{key}="):
        load_checkpoint(ckpt)


def test_cli_bad_checkpoint_inputs_are_one_line_exit_2(capsys, ckpt):
    from helpers import assert_one_line_error, run
    _edit_config(ckpt, lambda d: d.update(vocab_size=10**12))
    code, out, err = run(capsys, "run", "--model", str(ckpt), "--prompt-ids", "1", "--max-new-tokens", "1")
    assert_one_line_error(code, out, err, "model.embed_tokens.weight: shape (40, 64)")
    (ckpt / "config.json").write_text(_nest(10_000))
    code, out, err = run(capsys, "run", "--model", str(ckpt), "--prompt-ids", "1", "--max-new-tokens", "1")
    assert_one_line_error(code, out, err, "nested more than 64 levels deep")


def test_lazy_load_equals_the_eager_load(ckpt, model):
    lazy = load_checkpoint(ckpt, lazy=True)
    eager = load_checkpoint(ckpt)
    assert not isinstance(lazy.layers, torch.nn.ModuleList)
    for i in range(CFG.num_hidden_layers):
        a, b = lazy.layers[i].state_dict(), model.layers[i].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(lazy.embed_tokens.weight, model.embed_tokens.weight)
    ids = [[1, 7, 3, 9]]
    assert torch.equal(lazy(ids), eager(ids)) and torch.equal(lazy(ids), model(ids))


# -- the 2B4T layout: a synthetic folder, loaded lazily ------------------------------------------------

SMALL_2B4T = ModelConfig(vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)


def test_synthetic_folder_has_the_2b4t_layout_and_loads_lazily(tmp_path, monkeypatch):
    """A CI-sized folder of the 2B4T layout (bf16 embeddings and norms, packed uint8 + bf16
    weight_scale): the lazy loader's model equals the generator's own model bit for bit, with the LM
    head converted in blocks and layers read from the file one at a time."""
    import sw.model.checkpoint as ck
    import sw.model.synthetic as syn
    from safetensors import safe_open
    monkeypatch.setattr(syn, "_ROWS", 64)            # several generator blocks per embedding
    monkeypatch.setattr(ck, "LM_HEAD_ROWS", 100)     # several LM head blocks
    monkeypatch.setattr(ck, "FILL_ROWS", 64)         # the embeddings read in blocks, the last one short
    folder = syn.write_synthetic_checkpoint(tmp_path / "syn", SMALL_2B4T, seed=3)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as h:
        meta = {k: (h.get_slice(k).get_dtype(), tuple(h.get_slice(k).get_shape())) for k in h.keys()}
    assert meta["model.embed_tokens.weight"] == ("BF16", (300, 128)) and "lm_head.weight" not in meta
    assert meta["model.layers.1.mlp.down_proj.weight"] == ("U8", (32, 256))
    assert meta["model.layers.1.mlp.gate_proj.weight"] == ("U8", (64, 128))
    assert meta["model.layers.0.self_attn.k_proj.weight_scale"] == ("BF16", (1,))
    assert meta["model.layers.0.mlp.ffn_sub_norm.weight"] == ("BF16", (256,))
    assert len(meta) == 2 + 2 * (4 + 14)
    reads = []
    real_rows = ck._Tensors.rows
    monkeypatch.setattr(ck._Tensors, "rows", lambda self, n, a, b: reads.append(n) or real_rows(self, n, a, b))
    lazy = load_checkpoint(folder, lazy=True)
    assert reads == ["model.embed_tokens.weight"] * 5 + ["model.norm.weight"]   # 300 rows in blocks of 64
    assert lazy.embed_tokens.weight.dtype == torch.bfloat16
    ref = syn.synthetic_reference_model(SMALL_2B4T, seed=3)
    ids = [[1, 17, 250, 3]]
    assert torch.equal(lazy(ids), ref(ids))
    assert torch.equal(lazy.generate_greedy(ids, 4), ref.generate_greedy(ids, 4))
    assert torch.equal(load_checkpoint(folder)(ids), ref(ids))   # the eager loader too


@pytest.mark.slow
def test_full_size_2b4t_folder_loads_lazily_within_1_5x_its_size(tmp_path):
    """The real 2B4T layout at full size (1.18 GB): a subprocess loads it lazily and decodes a token;
    its peak resident memory (ru_maxrss) is at most 1.5x the file size, and the logits equal the
    generator's reference model's bit for bit."""
    import subprocess
    import sys

    from sw.model.synthetic import synthetic_reference_model, write_synthetic_checkpoint
    folder = write_synthetic_checkpoint(tmp_path / "2b4t", "2b4t", seed=0)
    size = (folder / "model.safetensors").stat().st_size
    ids = [128000, 9906, 11, 1917]
    script = (
        "import json, resource, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from sw.model.checkpoint import load_checkpoint\n"
        "m = load_checkpoint(sys.argv[1], lazy=True)\n"
        f"torch.save(m([{ids}], last_only=True)[0, -1], sys.argv[2])\n"
        "print(json.dumps({'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))\n")
    out = subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "logits.pt")],
                         capture_output=True, text=True, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])["maxrss"]
    print(f"file {size:,} bytes, peak resident {peak:,} bytes ({peak / size:.2f}x)")
    assert peak <= 1.5 * size
    logits = torch.load(tmp_path / "logits.pt")
    ref = synthetic_reference_model("2b4t", seed=0)([ids], last_only=True)[0, -1]
    assert torch.equal(logits, ref) and int(logits.argmax()) == int(ref.argmax())
