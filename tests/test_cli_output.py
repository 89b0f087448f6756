"""Output people can read (sw/cli/common.py, sw/driver/report.py): tables printed whole on a file or a
pipe, progress lines on a stderr that is not a terminal (absent with ``--quiet``), a run summary that
says what each figure covers, and the demo model's answer read back in the right digit order."""

import re
import sys

import pytest

from helpers import assert_one_line_error, run, run_json

DEMO_LAYERS = 2          # the committed demo model (sw/model/demo/config.json)
PROJECTIONS_PER_LAYER = 7


# -- tables: never cut ------------------------------------------------------------------------------

def cells(line):
    """The cells of a table row as printed (rich's light vertical bars)."""
    return [c.strip() for c in line.split("\N{BOX DRAWINGS LIGHT VERTICAL}")[1:-1]]


def test_console_prints_a_wide_table_whole_when_not_a_terminal(capsys, monkeypatch):
    """A table wider than 80 columns (and than COLUMNS) on a captured stdout: every cell whole, no
    ellipsis, no colour codes."""
    from rich.table import Table

    from sw.cli.common import console
    monkeypatch.setenv("COLUMNS", "40")
    cells = [f"{10 ** 14 + i:,}" for i in range(8)]       # 8 x 19 characters
    t = Table(title="wide")
    for i in range(8):
        t.add_column(f"column {i}", justify="right", no_wrap=True)
    t.add_row(*cells)
    t.add_row("[red]red[/]", *cells[1:])
    console().print(t)
    out = capsys.readouterr().out
    assert "\N{HORIZONTAL ELLIPSIS}" not in out and "..." not in out and "\x1b[" not in out
    row = next(line for line in out.splitlines() if cells[1] in line)
    assert all(c in row for c in cells) and len(row) > 8 * 19 > 80
    assert "red" in out and "[red]" not in out


@pytest.mark.parametrize("argv", [("run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "3"),
                                  ("layer", "--model", "demo", "--layer", "1", "--tokens", "3"),
                                  ("demo", "--problems", "2"),
                                  ("estimate", "--model", "demo")])
def test_reports_on_a_pipe_are_never_cut(capsys, monkeypatch, argv):
    """Every command's tables through a narrow COLUMNS: nothing is cut, and the breakdown's cycles are
    the JSON's, digit for digit."""
    monkeypatch.setenv("COLUMNS", "30")
    code, out, err = run(capsys, *argv, "--quiet")
    assert code == 0, err
    assert "\N{HORIZONTAL ELLIPSIS}" not in out and "\x1b[" not in out
    code, r = run_json(capsys, *argv, "--quiet")
    assert code == 0
    rows = out.splitlines()
    if argv[0] == "estimate":   # energy per component: the name and its share, in one row
        for name, j in r["breakdown"].items():
            row = next(line for line in rows if cells(line)[:1] == [name])
            assert f" {100 * j / r['energy_per_token_j']:.2f}% " in row, row
    elif argv[0] == "demo":
        for p, a in zip(r["problems"], r["answers"]):
            row = next(line for line in rows if f" {p} " in line)
            assert f" {a} " in row, row
    else:
        for kind, k in r["breakdown"].items():
            row = next(line for line in rows if line.split()[1:2] == [kind.removesuffix("_proj")])
            assert f"{k['N']}x{k['K']}" in row and f" {k['cycles']:,} " in row, row


# -- progress on stderr -----------------------------------------------------------------------------

def progress_lines(err, cmd):
    return [line for line in err.splitlines() if line.startswith(f"tern {cmd}: ")]


def test_run_prints_progress_on_a_non_terminal_stderr(capsys, monkeypatch):
    """Interval 0: a line when each phase starts, after every projection call and at the end; the
    device phase counts the model's calls (tokens x layers x 7); stdout stays one JSON object."""
    monkeypatch.setenv("TERN_PROGRESS_SECONDS", "0")
    assert not sys.stderr.isatty()
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "2",
                         "--json")
    assert code == 0 and out.count("\n") == 1
    calls = 2 * DEMO_LAYERS * PROJECTIONS_PER_LAYER
    device = [ln for ln in progress_lines(err, "run") if ln.startswith("tern run: sim, 2 tokens: ")]
    reference = [ln for ln in progress_lines(err, "run") if ln.startswith("tern run: reference, the same 2 tokens: ")]
    assert len(device) == len(reference) == calls + 2       # start, each call, done
    for i in range(calls + 1):
        assert f" {i}/{calls} projection calls ({100 * i / calls:.0f}%), " in device[i], device[i]
    assert re.fullmatch(rf"tern run: sim, 2 tokens: done, {calls} projection calls in \d+ s", device[-1])
    assert "about" in device[1] and " left" in device[1]     # a remaining-time guess once work is done


@pytest.mark.parametrize("argv,unit,total", [
    (("layer", "--model", "demo", "--layer", "0", "--repeat", "2"), "projection calls", 2 * PROJECTIONS_PER_LAYER),
    (("demo", "--problems", "1"), "projection calls", 5 * DEMO_LAYERS * PROJECTIONS_PER_LAYER),
    (("verify", "--programs", "2", "--seed", "5"), "programs", 2),
    (("estimate", "--model", "demo"), None, None),
])
def test_long_commands_print_progress_and_quiet_silences_it(capsys, monkeypatch, argv, unit, total):
    monkeypatch.setenv("TERN_PROGRESS_SECONDS", "0")
    cmd = argv[0]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = progress_lines(err, cmd)
    assert len(lines) >= 2 and lines == err.splitlines()
    if total is not None:
        assert f" {total}/{total} {unit} (100%)" in err and lines[-1].split(": done, ")[1].startswith(f"{total} {unit} in ")
    else:
        assert lines[0].endswith(" 0 s elapsed") and ": done, in " in lines[-1]
    code, out2, err2 = run(capsys, *argv, "--quiet" if cmd in ("layer", "demo") else "-q")
    assert code == 0 and err2 == ""


def test_a_phase_shorter_than_the_interval_prints_nothing(capsys):
    from sw.cli.common import Progress
    with Progress("x", "work", 3, interval=3600) as p:
        for _ in range(3):
            p.advance()
    assert capsys.readouterr().err == ""


def test_progress_lines_keep_coming_while_one_step_runs(capsys):
    """No update for longer than the interval (one long device call): the background timer still
    prints lines; the last line says the phase is done."""
    import time

    from sw.cli.common import Progress
    with Progress("x", "one long call", 1, unit="calls", interval=0.05) as p:
        deadline = time.monotonic() + 60
        while p.lines < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        p.advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3
    assert all(re.fullmatch(r"tern x: one long call: 0/1 calls \(0%\), \d+ s elapsed", ln) for ln in lines[:2])
    assert re.fullmatch(r"tern x: one long call: done, 1 calls in \d+ s", lines[-1])


def test_format_duration():
    from sw.cli.common import format_duration
    assert [format_duration(s) for s in (0, 7.4, 59.6, 125, 3600 + 125)] == \
        ["0 s", "7 s", "1 min 00 s", "2 min 05 s", "1 h 02 min"]


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_bad_progress_interval_is_one_line_exit_2(capsys, monkeypatch, value):
    monkeypatch.setenv("TERN_PROGRESS_SECONDS", value)
    assert_one_line_error(*run(capsys, "estimate", "--model", "demo"), "TERN_PROGRESS_SECONDS must be")


# -- the run summary: what each figure covers ---------------------------------------------------------

def test_sig():
    from sw.driver.report import seconds_text, sig
    assert [sig(x) for x in (185031.0, 319106.5, 6.1, 0.012345, 41.25, 0)] == \
        ["185,000", "319,000", "6.10", "0.0123", "41.2", "0"]
    assert [seconds_text(t) for t in (2.5, 0.0664, 121e-6, 3.2e-9)] == ["2.50 s", "66.4 ms", "121 us", "3.20 ns"]


def test_run_summary_names_prefill_decode_and_the_whole_run(capsys):
    """The summary of a 4-token demo run against figures summed here from the accelerator's own call
    records: the prefill (the 9-token prompt, step 0), the decode steps (tokens 2-4) and the whole run."""
    from sw.driver.models import generate
    from sw.driver.runtime import Accelerator
    from sw.model.demo_task import load_demo_model

    model, tok = load_demo_model()
    ids = tok.encode("123+045=", add_bos=True)
    acc = Accelerator()
    generate(model, [ids], 4, acc)
    recs = acc.records
    prefill = sum(r.cycles for r in recs if r.step == 0)
    decode = sum(r.cycles for r in recs if r.step > 0)
    total = prefill + decode
    hz = 200e6
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "4",
                         "--quiet")
    assert code == 0, err
    lines = out.splitlines()
    pre = next(ln for ln in lines if ln.startswith("prefill "))
    dec = next(ln for ln in lines if ln.startswith("decode "))
    whole = next(ln for ln in lines if ln.startswith("whole run"))
    assert pre.startswith(f"prefill (the prompt of {len(ids)} tokens, yielding token 1): {prefill:,} cycles")
    assert f"{round(prefill / DEMO_LAYERS):,} cycles per layer" in pre
    assert dec.startswith(f"decode (tokens 2-4, one step per token): {round(decode / 3):,} cycles per token")
    assert f"{round(decode / 3 / DEMO_LAYERS):,} cycles per layer per step" in dec
    rate = 3 / (decode / hz)
    assert dec.endswith(f"; {float(f'{rate:.3g}'):,.0f} tokens/s modelled")
    assert whole.startswith("whole run, prefill included: 4 tokens generated in ")
    assert f" = {round(total / 4):,} cycles per token, {float(f'{4 / (total / hz):.3g}'):,.0f} tokens/s modelled" in whole
    assert f"{total:,} cycles = " in out


def test_layer_summary_is_one_pass(capsys):
    code, out, err = run(capsys, "layer", "--model", "demo", "--layer", "0", "--tokens", "5", "--quiet")
    assert code == 0, err
    assert "one pass of 5 tokens through 1 layer: " in out and "prefill" not in out and "decode" not in out


# -- the demo model's answer: least-significant digit first -------------------------------------------

def test_run_demo_reads_the_answer_back(capsys):
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5",
                         "--quiet")
    assert code == 0, err
    assert "answer: 168 (the demo model writes the sum least-significant digit first: '8610' reversed)" in out
    code, r = run_json(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "5")
    assert r["answer"] == 123 + 45 and r["text"] == "8610<eos>"
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "2",
                         "--quiet")
    assert code == 0 and "answer: none (the demo model writes the sum least-significant digit first" in out
    assert "--max-new-tokens 5 generates a whole answer" in out
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "1+2=", "--quiet")
    assert code == 0 and "answer: none" in out and "it answers prompts of two 3-digit numbers, like 123+045=" in out


def test_a_device_failure_ends_the_progress_without_done(capsys, monkeypatch):
    """A device error mid-run: the progress lines stop, no "done" line, and the last line is the error."""
    from sw.driver import runtime

    def broken(self, q, T, name=""):
        raise runtime.DeviceError("q_proj: the sim device raised error flags 1 (bad instruction)")

    monkeypatch.setattr(runtime.Accelerator, "linear", broken)
    monkeypatch.setenv("TERN_PROGRESS_SECONDS", "0")
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=")
    lines = err.splitlines()
    assert code == 1 and out == "" and "done" not in err
    assert lines[0].startswith("tern run: sim, 8 tokens: 0/") and lines[-1] == \
        "tern run: device failure: q_proj: the sim device raised error flags 1 (bad instruction)"


def test_demo_summary_counts_the_batch(capsys):
    """Three problems generated together: the prefill holds 3 prompts of 9 tokens; each decode step
    yields a token of each prompt; 15 tokens in all."""
    code, out, err = run(capsys, "demo", "--problems", "3", "--quiet")
    assert code == 0, err
    assert "prefill (3 prompts of 9 tokens, yielding the first token of each): " in out
    assert "decode (tokens 2-5 of each prompt, one step per position yields 3 tokens): " in out
    assert "whole run, prefill included: 15 tokens generated in " in out


def test_one_decode_step_is_token_2(capsys):
    code, out, err = run(capsys, "run", "--model", "demo", "--prompt", "123+045=", "--max-new-tokens", "2", "--quiet")
    assert code == 0 and "decode (token 2, one step per token): " in out and "2-2" not in out
