"""``tern run`` (sw/cli/run.py): JSON contract, tokens identical to the reference, the text report,
checkpoint folders and presets, one-line exit-2 errors for bad input, and a device mismatch."""

import pytest

from helpers import assert_one_line_error, bad_input_test, install_faulty_sim, run, run_json


def reference_demo_tokens(prompt_ids, n):
    from sw.model.demo_task import load_demo_model
    model, _ = load_demo_model()
    return model.generate_greedy([prompt_ids], n)[0].tolist()


def test_run_demo_prompt_text_and_ids(capsys):
    code, r = run_json(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5")
    assert code == 0
    for k in ("match", "tokens", "reference_tokens", "cycles", "utilization", "tokens_per_s"):
        assert k in r
    for k in ("device_wall_s", "host_wall_s"):
        assert isinstance(r[k], float) and r[k] > 0, k
    assert r["device_wall_s"] <= r["host_wall_s"] and "wall_s_device" not in r
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
    text = " ".join(out.split())   # rich wraps long lines
    assert "s in the backend running the programs" in text and "s the whole command" in text


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


test_bad_input_is_one_line_exit_2 = bad_input_test("""
    run --model /nonexistent/model --prompt-ids 1 => no such checkpoint folder
    run --model demo --prompt 12x+3= => character 'x' at position 2
    run --model demo --prompt-ids 1,99 => token id 99 is outside the vocabulary
    run --model demo --prompt-ids 1,,2 => comma-separated
    run --model demo --prompt-ids 1,a => 'a' is not an integer
    run --model demo --prompt '' => --prompt is empty
    run --model demo => one of the arguments --prompt --prompt-ids is required
    run --model demo --prompt 1 --prompt-ids 1 => not allowed with argument
    run --model demo --prompt 1+1= --max-new-tokens -1 => --max-new-tokens must be between 1
    run --model demo --prompt 1+1= --max-new-tokens 1000000000 => --max-new-tokens must be between 1
    run --model demo --prompt 1+1= --max-new-tokens 30 => max_position_embeddings=32
    run --model 2b4t --prompt-ids 1 --max-new-tokens 5000 => max_position_embeddings=4096
    run --model 2b4t --prompt-ids 200000 => token id 200000 is outside
    run --model demo --prompt 1+1= --clock-mhz 0 => --clock-mhz must be in (0, 100000]
    run --model demo --prompt 1+1= --clock-mhz nan => --clock-mhz must be in
    run --model demo --prompt 1+1= --backend fpga => unknown backend 'fpga'
    run --model demo --prompt 1+1= --seed -3 => --seed must be between
    run --model demo --prompt 1+1= --lanes 0 => lanes must be between 1 and 256, not 0
    run --model demo --prompt 1+1= --acc-width 12 => acc_width must be between 15 and 64
""")


def test_device_mismatch_follows_the_tokens(capsys, monkeypatch):
    """A device that returns a wrong result: the verdict of tern run follows the tokens."""
    install_faulty_sim(monkeypatch)
    code, r = run_json(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5")
    # a one-unit error in one D value may or may not flip a token; the verdict must follow the tokens
    assert r["match"] == (r["tokens"] == r["reference_tokens"]) and code == (0 if r["match"] else 1)
