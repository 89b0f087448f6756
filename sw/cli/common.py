"""Flag helpers shared by every ``tern`` command and by the ``bench/`` scripts.

* the accelerator configuration: one flag per :class:`hw.config.TernConfig` setting plus
  ``--config FILE.toml`` (flags override the file): :func:`add_config_flags`, :func:`config_from_args`;
* ``--json`` (:func:`add_json_flag`) and :func:`emit`, which prints one JSON object or the text report;
* ``--quick`` of the benchmarks (:func:`bench_parser`);
* ``--backend`` from the one registry :data:`hw.backends.BACKENDS` and ``--clock-mhz`` with
  :data:`hw.config.DEFAULT_CLOCK_MHZ` (:func:`add_backend_flags`, :func:`check_backend`,
  :func:`check_clock`);
* :class:`UsageError`: bad input, reported by :func:`sw.cli.main` as one line with exit code 2.

This module imports only the standard library and ``hw.config`` at start-up, so that the command line
and the benchmarks start fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from hw.config import DEFAULT_CLOCK_MHZ, TernConfig

__all__ = ["UsageError", "Parser", "CONFIG_FLAGS", "add_config_flags", "config_from_args",
           "config_flags_given", "add_json_flag", "add_backend_flags", "add_clock_flag", "add_accelerator_flags", "check_backend", "check_clock",
           "check_seed", "check_accelerator_args", "check_output_path", "device_failure", "emit", "print_json", "json_default", "bench_parser"]


class UsageError(ValueError):
    """Bad input from the command line; reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with exit code 2 (argparse prints the whole usage
    otherwise): it raises :class:`UsageError`."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


# -- accelerator configuration --------------------------------------------------------------------------

#: flag name (the TernConfig field with ``-`` for ``_``): (type, help)
CONFIG_FLAGS = {
    "rows": (int, "PE rows (output features in parallel)"),
    "lanes": (int, "int8 activation lanes per row (input features per cycle)"),
    "acc-width": (int, "accumulator width in bits"),
    "weight-format": (str, "weight stream format: 2bit or base3"),
    "bus-bytes": (int, "weight stream bytes per beat"),
    "act-depth": (int, "activation buffer depth in words"),
    "wgt-depth": (int, "weight buffer bank depth in words"),
    "out-depth": (int, "output FIFO depth in result vectors"),
    "tree-reg-every": (int, "adder-tree register every N levels (0: combinational)"),
    "dot-variant": (str, "dot unit micro-architecture (same results, different area)"),
}


def _field(flag: str) -> str:
    return flag.replace("-", "_")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """``--config FILE.toml`` and one flag per configuration setting (all default to None: unset)."""
    g = p.add_argument_group("accelerator configuration")
    g.add_argument("--config", metavar="FILE.toml", help="read the configuration from a TOML file")
    for flag, (typ, help_) in CONFIG_FLAGS.items():
        g.add_argument(f"--{flag}", type=typ, default=None, help=help_)


def config_flags_given(args) -> bool:
    """Whether ``--config`` or any configuration flag was given."""
    return bool(args.config) or any(getattr(args, _field(f)) is not None for f in CONFIG_FLAGS)


def config_from_args(args, defaults: TernConfig | None = None) -> TernConfig:
    """The configuration named by ``--config`` (else ``defaults``, else ``TernConfig()``'s defaults)
    and the individual flags (flags win)."""
    if args.config:
        values = TernConfig.from_toml(args.config).to_dict()
    else:
        values = defaults.to_dict() if defaults is not None else {}
    for flag in CONFIG_FLAGS:
        v = getattr(args, _field(flag))
        if v is not None:
            values[_field(flag)] = v
    source = "--config/flags" if args.config or defaults is not None else "flags"
    return TernConfig.from_dict(values, source=source)


# -- output ----------------------------------------------------------------------------------------------

def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def json_default(o):
    """``json.dumps`` ``default``: numpy scalars and arrays, paths."""
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def print_json(result) -> None:
    """One JSON object on one line of stdout."""
    print(json.dumps(result, default=json_default))


def emit(args, result: dict, text: str | None) -> None:
    """``result`` as one JSON object with ``--json``, else ``text`` (if any)."""
    if args.json:
        print_json(result)
    elif text:
        print(text)


def bench_parser(description: str, quick_help: str | None = None) -> argparse.ArgumentParser:
    """The parser of a ``bench/`` script with the two flags every benchmark has, ``--quick`` and
    ``--json`` (``tern bench`` passes them on)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    add_json_flag(p)
    return p


# -- accelerator backend ---------------------------------------------------------------------------------

def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """``--backend`` (a name of :data:`hw.backends.BACKENDS`, default sim) and ``--clock-mhz``."""
    from hw.backends import BACKENDS
    p.add_argument("--backend", default="sim",
                   help=f"accelerator backend: {', '.join(BACKENDS)} (default sim)")
    add_clock_flag(p)


def add_clock_flag(p: argparse.ArgumentParser, what: str = "clock of the modelled device for tokens/s") -> None:
    """``--clock-mhz`` (default :data:`hw.config.DEFAULT_CLOCK_MHZ`); check it with :func:`check_clock`."""
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"{what} (default {DEFAULT_CLOCK_MHZ:g})")


def add_accelerator_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a command that runs a model through the accelerator (``demo``, ``run``, ``layer``):
    ``--backend``, ``--clock-mhz``, ``--json`` and the configuration flags."""
    add_backend_flags(p)
    add_json_flag(p)
    add_config_flags(p)


def check_backend(cmd: str, name: str) -> str:
    """``name`` if it is a backend of this installation, else :class:`UsageError`."""
    from hw.backends import BACKENDS, BackendError, get_backend
    if name not in BACKENDS:
        raise UsageError(f"tern {cmd}: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    try:
        get_backend(name)
    except BackendError as e:
        raise UsageError(f"tern {cmd}: {e}") from None
    return name


def check_clock(cmd: str, mhz: float) -> float:
    if not math.isfinite(mhz) or not 0 < mhz <= 100_000:
        raise UsageError(f"tern {cmd}: --clock-mhz must be in (0, 100000], not {mhz:g}")
    return mhz


def check_seed(cmd: str, seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise UsageError(f"tern {cmd}: --seed must be between 0 and 2**63-1, not {seed}")
    return seed


def check_accelerator_args(cmd: str, args) -> None:
    """The checks of :func:`add_accelerator_flags`' values that a model run needs: ``--backend``,
    ``--clock-mhz`` and ``--seed`` (:class:`UsageError` on the first bad one)."""
    check_backend(cmd, args.backend)
    check_clock(cmd, args.clock_mhz)
    check_seed(cmd, args.seed)


def check_output_path(cmd: str, flag: str, path, suffix: str) -> Path:
    """The checked path of an output file (``flag`` names it in messages: ``--save``, ``output``):
    it must end in ``suffix`` and its folder must exist; a folder of that name is refused. Checked
    before any work starts, so bad input costs nothing and leaves nothing behind."""
    p = Path(path)
    if p.suffix != suffix:
        raise UsageError(f"tern {cmd}: {flag} file must end in {suffix}, not {p.name!r}")
    if not p.parent.is_dir():
        raise UsageError(f"tern {cmd}: {flag} folder {str(p.parent)!r} does not exist")
    if p.is_dir():
        raise UsageError(f"tern {cmd}: {flag} {str(p)!r} is a folder")
    return p


def device_failure(cmd: str, e: BaseException) -> int:
    """One line on stderr for a device that failed while running; exit code 1."""
    print(f"tern {cmd}: device failure: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
          file=sys.stderr)
    return 1
