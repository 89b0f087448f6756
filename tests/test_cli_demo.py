"""``tern demo`` (sw/cli/demo.py): the default backend is the simulator, the demo on the Amaranth and
Verilated RTL, bad input (one line, exit 2), and a device error mid-run (one line, exit 1)."""

from helpers import bad_input_test, run, run_json

# the RTL configuration of the CI runs: the demo's K=128/256 in one-word chunks (13-bit accumulator)
RTL_FLAGS = ("--rows", "4", "--lanes", "16", "--acc-width", "13", "--act-depth", "16", "--wgt-depth", "4",
             "--out-depth", "4")
# the Amaranth demo run: the smallest array that holds the demo's K=256 in one MATMUL (no chunks, so the
# fewest cycles under Amaranth's simulator)
AMARANTH_FLAGS = ("--rows", "4", "--lanes", "16", "--act-depth", "64", "--wgt-depth", "16", "--out-depth", "8")


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


test_bad_input_is_one_line_exit_2 = bad_input_test("""
    demo --backend fpga => unknown backend 'fpga'
    demo --clock-mhz 0 => --clock-mhz must be in
    demo --problems 1 --rows 0 => rows must be between 1 and 256, not 0
""")


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
