"""The ``tern`` command line: one module per command, flag helpers shared in :mod:`sw.cli.common`.

=============  ======================================================================================
``demo``       :mod:`sw.cli.demo`: the embedded demo model through a backend vs the reference
``run``        :mod:`sw.cli.run`: greedy generation through the accelerator vs the reference
``layer``      :mod:`sw.cli.layer`: one transformer layer through the accelerator vs the reference
``synth``      :mod:`sw.cli.synth`: a bitstream for an open-source FPGA board
``estimate``   :mod:`sw.cli.estimate`: area, energy per token and tokens/s of a model
``rtl``        :mod:`sw.cli.rtl`: Verilog of the top level
``verify``     :mod:`sw.cli.verify`: random differential programs, RTL vs simulator vs reference
``bench``      :mod:`sw.cli.bench`: the benchmark suite (``bench/bench_*.py``)
``convert``    :mod:`sw.cli.convert`: a model between Hugging Face folders and GGUF files
``board-sim``  :mod:`sw.cli.board_sim`: a simulated board on a pseudo-terminal (``--backend serial``)
``sweep``      :mod:`sw.cli.sweep`: design-space exploration (Optuna on Dask) over the configuration
=============  ======================================================================================

Exit codes: 0 success; 1 a verification mismatch (or a device that failed while running); 2 bad input
or usage (one line on stderr, no traceback, no partial output file); 130 interrupted (Ctrl-C). Every
command that builds a core takes the accelerator configuration as flags or as ``--config FILE.toml``
(flags override the file). ``--json`` prints one JSON object on stdout.

Set ``TERN_DEBUG=1`` to see the traceback behind a bad-input error.
"""

from __future__ import annotations

import os
import sys

from hw.config import ConfigError
from sw.cli import bench, board_sim, convert, demo, estimate, layer, rtl, run, sweep, synth, verify
from sw.cli.common import Parser, UsageError, configure_serial

__all__ = ["main", "build_parser", "UsageError"]

#: The commands, in the order ``tern --help`` lists them; each module has ``add_command(sub)``.
COMMANDS = (demo, run, layer, synth, estimate, rtl, verify, bench, convert, sweep, board_sim)


def build_parser() -> Parser:
    p = Parser(prog="tern", description="tern: an open accelerator toolkit for BitNet b1.58 models")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_command(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        configure_serial(args.command, args)
        return args.func(args)
    except BrokenPipeError:  # stdout closed early (`tern ... | head`): not an error of the input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, ConfigError, ValueError, OSError) as e:
        if os.environ.get("TERN_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not msg.startswith("tern"):
            msg = f"tern: error: {msg}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tern: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        # the accelerator failed while running (error flags, a device that did not finish): a
        # verification failure, exit 1 with one line; any other RuntimeError is a bug and shows its
        # traceback
        runtime = sys.modules.get("sw.driver.runtime")
        if runtime is None or not isinstance(e, runtime.DeviceError) or os.environ.get("TERN_DEBUG"):
            raise
        print(f"tern: device error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
