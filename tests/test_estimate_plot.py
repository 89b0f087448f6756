"""``tern estimate --plot`` (hw/estimate/plot.py, hw.estimate.model.roofline_points): the roofline's
numbers against a hand computation, the PNG (magic bytes, pixel size, read back by matplotlib), the
energy bars against the breakdown, and bad ``--plot`` paths (one line, exit 2, an existing file
unchanged)."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from hw.config import TernConfig
from hw.estimate import ModelShape, estimate
from hw.estimate.model import DEFAULT_PREFILL_TOKENS, roofline_points
from helpers import assert_one_line_error, run

TINY = ModelShape(name="tiny", projections=(("a", 8, 32), ("b", 16, 16)), layers=3, vocab_size=32,
                  hidden_size=16, num_heads=1, num_kv_heads=1, head_dim=16, intermediate_size=16)
# rows x lanes x 2 bits = 128 bits = the 16-byte bus: one weight word per bus beat, no padding
TINY_CFG = TernConfig(rows=4, lanes=16)


def _simulated(cfg, T, shape):
    """Cycles and bus bytes of one projection run alone, straight from the simulator."""
    from hw.sim import simulate
    from hw.workloads import layer_streams
    st, _ = layer_streams(cfg, T, [shape], np.random.default_rng(0))
    res = simulate(cfg, words=st.words, act_beats=st.act_beats, wgt_beats=st.wgt_beats)
    assert not res.error
    return res.cycles, res.events["bus_bytes"]


def test_roofline_points_against_a_hand_computation():
    clock_mhz, channels, T = 100.0, 2, 4
    r = roofline_points(TINY, TINY_CFG, clock_mhz=clock_mhz, tokens=T, memory="lpddr4x", channels=channels)
    # compute roof: 4 rows x 16 lanes, one ternary MAC per lane per cycle, at 100 MHz
    assert r["compute_roof_ops_s"] == 4 * 16 * 100e6
    # memory roof: LPDDR4X-4266 on a 16-bit channel = 8.532 GB/s peak, x the DRAM model's sequential
    # efficiency, x 2 channels
    from hw.dram import sequential_efficiency
    sust = 4266e6 * 2 * sequential_efficiency("lpddr4x") * 2
    assert r["sustainable_bytes_s"] == pytest.approx(sust, rel=1e-12)
    assert r["ridge_intensity"] == pytest.approx(4 * 16 * 100e6 / sust, rel=1e-12)
    assert r["prefill_tokens"] == T
    pts = r["points"]
    assert [(p["mode"], p["name"], p["tokens"]) for p in pts] == [
        ("decode", "a", 1), ("decode", "b", 1), ("prefill", "a", T), ("prefill", "b", T)]
    for p in pts:
        N, K, t = p["N"], p["K"], p["tokens"]
        cycles, bus = _simulated(TINY_CFG, t, (p["name"], N, K))
        # the streams counted by hand: 2-bit weights, int8 activations in, 32-bit results out
        assert bus["wgt"] == N * K * 2 // 8
        assert bus["act"] == t * K
        assert bus["out"] == t * N * 4
        assert p["bus_bytes"] == bus and p["cycles"] == cycles
        nbytes = bus["wgt"] + bus["act"] + bus["out"] + bus["instr"]
        ops = N * K * t
        time_s = max(cycles / 100e6, nbytes / sust)
        assert p["ops"] == ops and p["bytes"] == nbytes
        assert p["intensity"] == pytest.approx(ops / nbytes, rel=1e-12)
        assert p["time_s"] == pytest.approx(time_s, rel=1e-12)
        assert p["attained_ops_s"] == pytest.approx(ops / time_s, rel=1e-12)
        assert p["memory_bound"] == (nbytes / sust > cycles / 100e6)
        # no point above either roof
        assert p["attained_ops_s"] <= r["compute_roof_ops_s"] * (1 + 1e-12)
        assert p["attained_ops_s"] <= sust * p["intensity"] * (1 + 1e-12)
    # decode estimates get the default prefill for their prefill points
    r1 = roofline_points(TINY, TINY_CFG, clock_mhz=clock_mhz, tokens=1)
    assert r1["prefill_tokens"] == DEFAULT_PREFILL_TOKENS == 128
    assert {p["tokens"] for p in r1["points"]} == {1, 128}


def test_energy_bars_cover_the_breakdown():
    from hw.estimate.plot import energy_bars
    r = estimate(TINY, TINY_CFG)
    bars = energy_bars(r)
    assert sum(j for _, j in bars) == pytest.approx(r["energy_per_token_j"], rel=1e-12)
    b = r["breakdown"]
    d = dict(bars)
    assert d["host: LM head"] == b["lm_head"]
    assert d["host: attention + KV cache"] == b["attention"] + b["kv_cache"]
    assert d["memory: core weight stream"] == b["dram_weights"]
    assert d["static: memory background"] == b["static_memory"]


def _png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_render_png_is_a_png_of_the_stated_size():
    import matplotlib.image
    from hw.estimate.plot import HEIGHT_IN, WIDTH_IN, render_png
    r = estimate(TINY, TINY_CFG)
    roof = roofline_points(TINY, TINY_CFG)
    data = render_png(r, roof, dpi=50)
    assert _png_size(data) == (WIDTH_IN * 50, HEIGHT_IN * 50)
    import io
    img = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert img.shape[:2] == (HEIGHT_IN * 50, WIDTH_IN * 50)
    assert img.std() > 0                                   # not a blank canvas


def test_cli_plot_writes_the_png_and_names_it_in_the_json(tmp_path, capsys):
    import matplotlib.image
    from hw.estimate.plot import HEIGHT_IN, WIDTH_IN
    out_png = tmp_path / "est.png"
    code, out, err = run(capsys, "estimate", "--model", "demo", "--tokens", "4", "--json", "--plot", str(out_png))
    assert code == 0, err
    r = json.loads(out)
    assert r["plot"] == str(out_png)
    data = out_png.read_bytes()
    assert _png_size(data) == (WIDTH_IN * 100, HEIGHT_IN * 100)
    assert matplotlib.image.imread(out_png).shape[:2] == (HEIGHT_IN * 100, WIDTH_IN * 100)
    assert [p.name for p in tmp_path.iterdir()] == ["est.png"]       # no temporary file left
    code, out, err = run(capsys, "estimate", "--model", "demo", "--plot", str(out_png))
    assert code == 0 and f"plot: {out_png}" in out
    code, out, _ = run(capsys, "estimate", "--model", "demo", "--json")
    assert "plot" not in json.loads(out)


@pytest.mark.parametrize("name, needle", [
    ("est.jpg", "must end in .png"),
    ("est", "must end in .png"),
    ("missing/est.png", "does not exist"),
    ("folder.png", "is a folder"),
])
def test_bad_plot_path_is_one_line_exit_2(tmp_path, capsys, name, needle):
    (tmp_path / "folder.png").mkdir()
    keep = tmp_path / "est.jpg"
    keep.write_bytes(b"old contents")
    code, out, err = run(capsys, "estimate", "--model", "demo", "--plot", str(tmp_path / name))
    assert_one_line_error(code, out, err, needle)
    assert keep.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["est.jpg", "folder.png"]


def test_a_failing_plot_leaves_an_existing_file_untouched(tmp_path, capsys, monkeypatch):
    import hw.estimate.plot as plot
    target = tmp_path / "est.png"
    target.write_bytes(b"old plot")

    def broken(*a, **k):
        raise RuntimeError("renderer broke")
    monkeypatch.setattr(plot, "render_png", broken)
    with pytest.raises(RuntimeError, match="renderer broke"):
        run(capsys, "estimate", "--model", "demo", "--plot", str(target))
    assert target.read_bytes() == b"old plot"
    assert [p.name for p in tmp_path.iterdir()] == ["est.png"]


def test_matplotlib_is_imported_only_with_plot(tmp_path):
    code = ("import sys; from sw.cli import main; "
            "rc = main(['estimate', '--model', 'demo', '--json']); "
            "print('matplotlib' in sys.modules, file=sys.stderr); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "False"
