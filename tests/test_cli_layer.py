"""``tern layer`` (sw/cli/layer.py): JSON contract, bit-exact layers of the demo and of a preset,
atomic ``--save``, one-line exit-2 errors for bad input, and a device mismatch that exits 1."""

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


test_bad_input_is_one_line_exit_2 = bad_input_test("""
    layer --model demo --layer 2 => --layer 2 is out of range: model 'demo' has layers 0..1
    layer --model demo --layer -1 => out of range
    layer --model 2b4t --layer 30 => layers 0..29
    layer --model demo --layer 0 --tokens 0 => --tokens must be between 1
    layer --model demo --layer 0 --tokens 33 => max_position_embeddings=32
    layer --model nowhere --layer 0 => no such checkpoint folder
    layer --model demo --layer 0 --clock-mhz -5 => --clock-mhz must be in
    layer --model demo --layer 0 --backend serial => unknown backend 'serial'
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
