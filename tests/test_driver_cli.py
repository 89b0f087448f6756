"""tern run / tern layer / tern demo --backend: JSON contract (SPEC section 5), tokens identical to the
reference, atomic --save, and one-line exit-2 errors for bad input."""

import json

import numpy as np
import pytest

from sw.cli import main

# the RTL configuration of the CI runs: the demo's K=128/256 in one-word chunks (13-bit accumulator)
RTL_FLAGS = ("--rows", "4", "--lanes", "16", "--acc-width", "13", "--act-depth", "16", "--wgt-depth", "4",
             "--out-depth", "4")
# the Amaranth demo run: the smallest array that holds the demo's K=256 in one MATMUL (no chunks, so the
# fewest cycles under Amaranth's simulator)
AMARANTH_FLAGS = ("--rows", "4", "--lanes", "16", "--act-depth", "64", "--wgt-depth", "16", "--out-depth", "8")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert out.count("\n") == 1, out
    return code, json.loads(out)


def assert_one_line_error(code, out, err, needle):
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


def reference_demo_tokens(prompt_ids, n):
    from sw.demo import load_demo_model
    model, _ = load_demo_model()
    return model.generate_greedy([prompt_ids], n)[0].tolist()


def test_run_demo_prompt_text_and_ids(capsys):
    code, r = run_json(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5")
    assert code == 0
    for k in ("match", "tokens", "reference_tokens", "cycles", "utilization", "tokens_per_s"):
        assert k in r
    ids = [12, 1, 2, 3, 10, 0, 4, 5, 11]
    assert r["prompt_ids"] == ids
    assert r["tokens"] == r["reference_tokens"] == reference_demo_tokens(ids, 5) == [8, 6, 1, 0, 13]
    assert r["match"] is True and r["text"] == "8610<eos>"
    assert r["utilization"] == r["busy"] / r["cycles"] and r["bus_utilization"] == r["wgt_beats"] / r["cycles"]
    assert r["tokens_per_s"] == pytest.approx(5 / (r["cycles"] / 200e6), rel=1e-12)
    assert r["calls"] == 5 * 2 * 7 and set(r["breakdown"]) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"}
    code, r2 = run_json(capsys, "run", "--model", "demo", "--prompt-ids", ",".join(map(str, ids)),
                        "--max-new-tokens", "5", "--clock-mhz", "50")
    assert code == 0 and r2["tokens"] == r["tokens"] and r2["cycles"] == r["cycles"]
    assert r2["tokens_per_s"] == pytest.approx(r["tokens_per_s"] / 4, rel=1e-12)


def test_run_text_report(capsys):
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "500+500=", "--max-new-tokens", "3")
    assert code == 0
    assert "tokens match the reference" in out and "per-projection breakdown" in out and "tokens/s" in out


def test_run_checkpoint_folder_and_preset(capsys, tmp_path):
    from sw.model.checkpoint import save_checkpoint
    from sw.model.config import ModelConfig
    from sw.model.presets import random_model
    mc = ModelConfig(vocab_size=40, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                     hidden_act="silu", sub_norms=False, model_type="llama")
    model = random_model(mc, seed=4, lazy=False)
    save_checkpoint(model, tmp_path)
    ids = [1, 5, 9, 30]
    code, r = run_json(capsys, "run", "--model", str(tmp_path), "--prompt-ids", "1,5,9,30", "--max-new-tokens",
                       "4", "--rows", "4", "--lanes", "16", "--acc-width", "14")
    assert code == 0 and r["match"] is True
    assert r["tokens"] == model.generate_greedy([ids], 4)[0].tolist()
    assert r["breakdown"]["down_proj"]["chunks"] == 2      # K=80: 5 words, at most 3 per 14-bit chunk
    code, out, err = run(capsys, "run", "--model", str(tmp_path), "--prompt", "hello")
    assert_one_line_error(code, out, err, "has no tokenizer; give the prompt as --prompt-ids")


def test_layer_json_and_atomic_save(capsys, tmp_path):
    from sw.driver.models import layer_input, load_layer
    out = tmp_path / "layer.npz"
    code, r = run_json(capsys, "layer", "--model", "demo", "--layer", "1", "--tokens", "3", "--seed", "7",
                       "--save", str(out))
    assert code == 0
    assert r["bit_exact"] is True and r["cycles"] > 0 and 0 < r["utilization"] <= 1
    z = np.load(out)
    assert set(z.files) == {"input", "output", "reference_output"}
    layer, mc = load_layer("demo", 1)
    x = layer_input(mc, 3, 7)
    assert np.array_equal(z["input"], x.numpy())
    ref = layer(x)   # the reference layer, exact host core
    assert np.array_equal(z["reference_output"], ref.numpy()) and np.array_equal(z["output"], ref.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["layer.npz"]   # no temporary file left


def test_layer_preset_2b4t_shapes(capsys):
    code, r = run_json(capsys, "layer", "--model", "700m", "--layer", "23", "--tokens", "1")
    assert code == 0 and r["bit_exact"] is True
    assert r["breakdown"]["down_proj"]["K"] == 4096 and r["breakdown"]["gate_proj"]["N"] == 4096


def test_demo_default_backend_is_the_simulator(capsys):
    code, r = run_json(capsys, "demo", "--problems", "2", "--seed", "1")
    assert code == 0 and r["backend"] == "sim" and r["match"] is True
    assert r["tokens"] == r["reference_tokens"]
    assert r["cycles"] > 0 and r["utilization"] > 0 and r["tokens_per_s"] > 0


def test_demo_on_amaranth(capsys):
    """The embedded demo through the Amaranth RTL: tokens identical to the reference."""
    code, r = run_json(capsys, "demo", "--problems", "1", "--backend", "amaranth", *AMARANTH_FLAGS)
    assert code == 0 and r["backend"] == "amaranth" and r["match"] is True
    assert r["tokens"] == r["reference_tokens"] and r["cycles"] > 0


def test_demo_on_verilator(capsys):
    """The embedded demo on the Verilated core (70 dependent calls in one VerilatorSession)."""
    code, r = run_json(capsys, "demo", "--problems", "1", "--backend", "verilator", *RTL_FLAGS)
    assert code == 0 and r["match"] is True and r["tokens"] == r["reference_tokens"]


BAD = [
    (("run", "--model", "/nonexistent/model", "--prompt-ids", "1"), "no such checkpoint folder"),
    (("run", "--model", "demo", "--prompt", "12x+3="), "character 'x' at position 2"),
    (("run", "--model", "demo", "--prompt-ids", "1,99"), "token id 99 is outside the vocabulary"),
    (("run", "--model", "demo", "--prompt-ids", "1,,2"), "comma-separated"),
    (("run", "--model", "demo", "--prompt-ids", "1,a"), "'a' is not an integer"),
    (("run", "--model", "demo", "--prompt", ""), "--prompt is empty"),
    (("run", "--model", "demo"), "one of the arguments --prompt --prompt-ids is required"),
    (("run", "--model", "demo", "--prompt", "1", "--prompt-ids", "1"), "not allowed with argument"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--max-new-tokens", "-1"), "--max-new-tokens must be between 1"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--max-new-tokens", str(10**9)),
     "--max-new-tokens must be between 1"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--max-new-tokens", "30"), "max_position_embeddings=32"),
    (("run", "--model", "2b4t", "--prompt-ids", "1", "--max-new-tokens", "5000"), "max_position_embeddings=4096"),
    (("run", "--model", "2b4t", "--prompt-ids", "200000"), "token id 200000 is outside"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--clock-mhz", "0"), "--clock-mhz must be in (0, 100000]"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--clock-mhz", "nan"), "--clock-mhz must be in"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--backend", "fpga"), "unknown backend 'fpga'"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--seed", "-3"), "--seed must be between"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--lanes", "0"), "lanes must be between 1 and 256, not 0"),
    (("run", "--model", "demo", "--prompt", "1+1=", "--acc-width", "12"), "acc_width must be between 15 and 64"),
    (("layer", "--model", "demo", "--layer", "2"), "--layer 2 is out of range: model 'demo' has layers 0..1"),
    (("layer", "--model", "demo", "--layer", "-1"), "out of range"),
    (("layer", "--model", "2b4t", "--layer", "30"), "layers 0..29"),
    (("layer", "--model", "demo", "--layer", "0", "--tokens", "0"), "--tokens must be between 1"),
    (("layer", "--model", "demo", "--layer", "0", "--tokens", "33"), "max_position_embeddings=32"),
    (("layer", "--model", "nowhere", "--layer", "0"), "no such checkpoint folder"),
    (("layer", "--model", "demo", "--layer", "0", "--clock-mhz", "-5"), "--clock-mhz must be in"),
    (("layer", "--model", "demo", "--layer", "0", "--backend", "serial"), "unknown backend 'serial'"),
    (("layer", "--model", "demo", "--layer", "0", "--save", "out.txt"), "must end in .npz"),
    (("layer", "--model", "demo", "--layer", "0", "--save", "/nonexistent-dir/o.npz"), "does not exist"),
    (("demo", "--backend", "fpga"), "unknown backend 'fpga'"),
    (("demo", "--clock-mhz", "0"), "--clock-mhz must be in"),
    (("demo", "--problems", "1", "--rows", "0"), "rows must be between 1 and 256, not 0"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a[1:4]) + f" #{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert_one_line_error(*run(capsys, *argv), needle)


def test_bad_input_leaves_no_save_file(capsys, tmp_path):
    out = tmp_path / "o.npz"
    assert_one_line_error(*run(capsys, "layer", "--model", "demo", "--layer", "5", "--save", str(out)),
                          "out of range")
    assert_one_line_error(*run(capsys, "layer", "--model", "demo", "--layer", "0", "--tokens", "0", "--save",
                               str(out)), "--tokens")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_save_is_one_line_and_no_partial_file(capsys, tmp_path, monkeypatch):
    """A failure while writing (disk full, ...) removes the temporary file and leaves no OUT.npz."""
    def broken_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    out = tmp_path / "o.npz"
    code, o, err = run(capsys, "layer", "--model", "demo", "--layer", "0", "--save", str(out))
    assert_one_line_error(code, o, err, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_device_mismatch_exits_1(capsys, monkeypatch):
    """A device that returns a wrong result: tern layer reports bit_exact false and exits 1."""
    from hw.backends import Backend
    from sw.driver import runtime
    real = runtime.BACKENDS["sim"].run

    def faulty(config, program, timing, **streams):
        r = real(config, program, timing, **streams)
        r.outputs = r.outputs.copy()
        r.outputs[0, 0] += 1
        return r

    monkeypatch.setitem(runtime.BACKENDS, "sim", Backend("sim", rtl=False, run=faulty))
    code, r = run_json(capsys, "layer", "--model", "demo", "--layer", "0", "--tokens", "2")
    assert code == 1 and r["bit_exact"] is False and r["max_abs_diff"] > 0
    code, r = run_json(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5")
    # a one-unit error in one D value may or may not flip a token; the verdict must follow the tokens
    assert r["match"] == (r["tokens"] == r["reference_tokens"]) and code == (0 if r["match"] else 1)


def test_device_error_in_demo_is_one_line_exit_1(capsys, monkeypatch):
    """A device that raises its error flags mid-run: one line on stderr, exit 1, no traceback."""
    from sw.driver import runtime

    def broken(self, q, T, name=""):
        raise runtime.DeviceError("q_proj: the sim device raised error flags 2 (invalid weight byte)")

    monkeypatch.setattr(runtime.Accelerator, "linear", broken)
    code, out, err = run(capsys, "demo", "--problems", "1")
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "tern: device error: q_proj: the sim device raised error flags 2 (invalid weight byte)"]
