"""Helpers shared by the test suites (one place for what several test files need)."""

import json
import shlex

import pytest


def random_stream_config(rng, *, min_lanes=1):
    """A random weight-stream geometry for the codec and decoder tests (``rng``: ``random.Random``):
    rows 1..16, lanes ``min_lanes``..64, bus_bytes 1..32, either weight format; the rest default."""
    from hw.config import TernConfig
    return TernConfig(rows=rng.randint(1, 16), lanes=rng.randint(min_lanes, 64),
                      bus_bytes=rng.randint(1, 32), weight_format=rng.choice(["2bit", "base3"]))


def core_timings(seed):
    """The three stream timings the core tests replay on every backend: ideal; seeded stalls on
    every input and backpressure; a slow weight bus with first-beat latency, activation stalls and
    heavy backpressure."""
    from fractions import Fraction

    from hw.timing import StreamTiming, Timing
    return [Timing.ideal(),
            Timing.random(seed, p_instr=0.3, p_act=0.3, p_wgt=0.4, p_out=0.5),
            Timing(wgt=StreamTiming(latency=7, rate=Fraction(1, 3)), act=StreamTiming(p_stall=0.2),
                   out=StreamTiming(p_stall=0.7), seed=seed + 1)]


def assert_same_as_sim(config, program, timing, res, hint=""):
    """``res`` (an RTL backend's RunResult of ``program`` under ``timing``) equals hw.sim.simulate of
    the same case field by field: outputs, cycles, counters, error flags, every transfer cycle."""
    from hw.sim import simulate
    diffs = res.compare(simulate(config, program, timing))
    assert not diffs, f"{res.backend} vs hw.sim, timing={timing!r}: " + "; ".join(diffs) + f"; {hint}"


# -- the command line (tests/test_cli*.py) -----------------------------------------------------------

def run(capsys, *argv):
    """``tern ARGV``: (exit code, stdout, stderr)."""
    from sw.cli import main
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    """``tern ARGV --json``: (exit code, the one JSON object it printed on one line)."""
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


def install_faulty_sim(monkeypatch):
    """Replace the ``sim`` backend of the registry with one whose first output is one unit off."""
    from hw.backends import BACKENDS, Backend
    real = BACKENDS["sim"].run

    def faulty(config, program, timing, **streams):
        r = real(config, program, timing, **streams)
        r.outputs = r.outputs.copy()
        r.outputs[0, 0] += 1
        return r

    monkeypatch.setitem(BACKENDS, "sim", Backend("sim", rtl=False, run=faulty))


def bad_input_cases(table: str) -> list[str]:
    """The cases of a table of bad command lines, one ``COMMAND LINE => MESSAGE`` a line (the command
    line split like a shell does; MESSAGE: a part of the one line tern must print)."""
    return [line.strip() for line in table.strip().splitlines()]


def bad_input_test(table: str):
    """A test, parametrized over the cases of ``table`` (:func:`bad_input_cases`), that runs each
    command line and asserts exit code 2, nothing on stdout and one line on stderr that holds the
    case's message."""
    @pytest.mark.parametrize("case", bad_input_cases(table))
    def test(capsys, case):
        command, needle = (part.strip() for part in case.split("=>", 1))
        assert_one_line_error(*run(capsys, *shlex.split(command)), needle)
    return test
