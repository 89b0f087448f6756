"""``tern layer`` (sw/cli/layer.py): JSON contract, bit-exact layers of the demo and of a preset,
``--repeat`` (compiled once, identical cycles, every run checked) and the wall times, atomic
``--save``, one-line exit-2 errors for bad input, and a device mismatch that exits 1."""

import numpy as np

from helpers import assert_one_line_error, bad_input_test, install_faulty_sim, run, run_json


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


def assert_wall_times(r, runs):
    """The wall-time keys: positive floats, one backend figure per run, the last run's figure is
    ``device_wall_s``, and the backend's time fits inside the layer pass's and the command's."""
    for k in ("device_wall_s", "host_wall_s"):
        assert isinstance(r[k], float) and r[k] > 0, k
    for k in ("device_wall_s_runs", "layer_wall_s_runs"):
        assert len(r[k]) == runs and all(isinstance(v, float) and v > 0 for v in r[k]), k
    assert r["device_wall_s"] == r["device_wall_s_runs"][-1]
    assert all(d <= lay for d, lay in zip(r["device_wall_s_runs"], r["layer_wall_s_runs"]))
    assert sum(r["layer_wall_s_runs"]) <= r["host_wall_s"]
    assert r["device_wall_s"] <= r["host_wall_s"]


def test_layer_repeat_compiles_once_and_repeats_the_cycles(capsys):
    code, one = run_json(capsys, "layer", "--model", "demo", "--layer", "1", "--tokens", "3")
    assert code == 0 and one["repeat"] == 1 and one["bit_exact_runs"] == [True]
    assert_wall_times(one, 1)
    assert one["weight_cache"] == {"hits": 0, "misses": 7}
    code, r = run_json(capsys, "layer", "--model", "demo", "--layer", "1", "--tokens", "3", "--repeat", "3")
    assert code == 0 and r["bit_exact"] is True and r["bit_exact_runs"] == [True, True, True]
    assert r["repeat"] == 3 and r["max_abs_diff"] == 0.0
    assert_wall_times(r, 3)
    # the seven projections compiled by the first run, found in the cache by the two others
    assert r["weight_cache"] == {"hits": 14, "misses": 7}
    # the last run's figures are one run's: the same as a single run's, cycle for cycle
    assert r["cycles_runs"] == [one["cycles"]] * 3 and r["cycles"] == one["cycles"]
    assert r["calls"] == one["calls"] == 7
    for k in ("busy", "wgt_beats", "utilization", "bus_utilization", "layer_cycles", "breakdown",
              "device_seconds", "layer_tokens_per_s"):
        assert r[k] == one[k], k


def test_layer_repeat_text_report(capsys):
    code, out, err = run(capsys, "layer", "--model", "demo", "--layer", "0", "--repeat", "2")
    assert code == 0 and err == ""
    text = " ".join(out.split())   # rich wraps long lines
    assert "last of 2 runs" in text and "all 2 runs' outputs equal the reference" in text
    assert "s in the backend running the programs" in text and "s the whole command" in text
    assert "backend time per run: first" in text and "repeated" in text and "1 runs" in text
    code, out, err = run(capsys, "layer", "--model", "demo", "--layer", "0")
    assert code == 0 and "backend time per run" not in out and "the whole command" in " ".join(out.split())


test_bad_input_is_one_line_exit_2 = bad_input_test("""
    layer --model demo --layer 0 --repeat 0 => --repeat must be between 1 and 10000, not 0
    layer --model demo --layer 0 --repeat -2 => --repeat must be between 1 and 10000, not -2
    layer --model demo --layer 0 --repeat 10001 => --repeat must be between 1 and 10000
    layer --model demo --layer 0 --repeat x => argument --repeat: invalid int value: 'x'
    layer --model demo --layer 0 --repeat 1.5 => argument --repeat: invalid int value: '1.5'
    layer --model demo --layer 2 => --layer 2 is out of range: model 'demo' has layers 0..1
    layer --model demo --layer -1 => out of range
    layer --model 2b4t --layer 30 => layers 0..29
    layer --model demo --layer 0 --tokens 0 => --tokens must be between 1
    layer --model demo --layer 0 --tokens 33 => max_position_embeddings=32
    layer --model nowhere --layer 0 => no such checkpoint folder
    layer --model demo --layer 0 --clock-mhz -5 => --clock-mhz must be in
    layer --model demo --layer 0 --backend fpga => unknown backend 'fpga'
    layer --model demo --layer 0 --backend serial => --backend serial needs --port DEV
    layer --model demo --layer 0 --save out.txt => must end in .npz
    layer --model demo --layer 0 --save /nonexistent-dir/o.npz => does not exist
""")


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
    install_faulty_sim(monkeypatch)
    code, r = run_json(capsys, "layer", "--model", "demo", "--layer", "0", "--tokens", "2")
    assert code == 1 and r["bit_exact"] is False and r["max_abs_diff"] > 0
    code, r = run_json(capsys, "layer", "--model", "demo", "--layer", "0", "--tokens", "2", "--repeat", "2")
    assert code == 1 and r["bit_exact"] is False and r["bit_exact_runs"] == [False, False]


def test_failed_save_leaves_the_existing_file(capsys, tmp_path, monkeypatch):
    """A failure while writing --save over an existing OUT.npz: the old file is untouched."""
    def broken_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    out = tmp_path / "o.npz"
    out.write_bytes(b"old arrays")
    monkeypatch.setattr(np, "savez", broken_savez)
    assert_one_line_error(*run(capsys, "layer", "--model", "demo", "--layer", "0", "--save", str(out)),
                          "No space left on device")
    assert out.read_bytes() == b"old arrays" and list(tmp_path.iterdir()) == [out]
