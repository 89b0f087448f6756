"""The search space of a sweep: each parameter and the finite list of values it may take.

A parameter is either a :class:`hw.config.TernConfig` setting (rows, lanes, acc_width, weight_format,
bus_bytes, act_depth, wgt_depth, out_depth, tree_reg_every, dot_variant) or an argument of
:func:`hw.estimate.estimate` (clock_mhz, memory, channels, node). A parameter the space does not
name keeps its default (TernConfig's, the estimator's).

A space file is TOML with one table ``[space]`` of lists::

    [space]
    rows = [8, 16, 32]
    memory = ["ddr4", "lpddr5"]

Every value is checked here (type and range), so a bad file fails before any trial runs; a
combination that is not a valid configuration (an accumulator narrower than the dot product, a
projection that does not fit the buffers) is a failed trial of the sweep, not an error of the space.
"""

from __future__ import annotations

import math
from pathlib import Path

from hw.config import DOT_VARIANTS, WEIGHT_FORMATS, TernConfig, is_int

__all__ = ["PARAMETERS", "CONFIG_PARAMETERS", "RUN_PARAMETERS", "BUILTIN_SPACE", "SweepError",
           "check_space", "load_space", "split_params", "grid_size"]


class SweepError(ValueError):
    """Bad input to a sweep (one line, names the bad value)."""


def _memories():
    from hw.estimate.memory import MEMORIES
    return tuple(MEMORIES)


def _nodes():
    from hw.estimate.energy import NODES
    return tuple(NODES)


def _int_range(lo, hi):
    def check(v):
        return is_int(v) and lo <= v <= hi
    check.what = f"an integer in [{lo}, {hi}]"
    return check


def _one_of(values):
    def check(v):
        return isinstance(v, str) and v in values()
    check.what = "one of {}"
    check.values = values
    return check


def _clock(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= 100_000


_clock.what = "a number of MHz in (0, 100000]"

#: The TernConfig settings a sweep may vary and the check of one value (the configuration itself
#: checks the combination when a trial builds it).
CONFIG_PARAMETERS = {
    "rows": _int_range(1, 256),
    "lanes": _int_range(1, 256),
    "acc_width": _int_range(1, 64),
    "weight_format": _one_of(lambda: WEIGHT_FORMATS),
    "bus_bytes": _int_range(1, 256),
    "act_depth": _int_range(16, 65536),
    "wgt_depth": _int_range(4, 65536),
    "out_depth": _int_range(2, 65536),
    "tree_reg_every": _int_range(0, 16),
    "dot_variant": _one_of(lambda: DOT_VARIANTS),
}
#: The estimator's arguments a sweep may vary.
RUN_PARAMETERS = {
    "clock_mhz": _clock,
    "memory": _one_of(_memories),
    "channels": _int_range(1, 1024),
    "node": _one_of(_nodes),
}
PARAMETERS = {**CONFIG_PARAMETERS, **RUN_PARAMETERS}
assert set(CONFIG_PARAMETERS) <= set(TernConfig.field_names())

#: The built-in space (``tern sweep`` without ``--space``): the main parameters, 1,728 points.
BUILTIN_SPACE = {
    "rows": [8, 16, 32, 64],
    "lanes": [32, 64, 128],
    "acc_width": [24, 32],
    "weight_format": ["2bit", "base3"],
    "bus_bytes": [8, 16, 32],
    "wgt_depth": [256, 1024],
    "clock_mhz": [100.0, 200.0, 400.0],
    "memory": ["ddr4", "lpddr5"],
}


def _describe(check) -> str:
    what = check.what
    return what.format(", ".join(check.values())) if "{}" in what else what


def check_space(space, source: str = "space") -> dict:
    """``space`` (a mapping of parameter -> list of values) checked and normalized (names sorted in
    :data:`PARAMETERS` order, each list without repeats, clock values as floats); SweepError names
    the first bad entry."""
    if not isinstance(space, dict):
        raise SweepError(f"{source}: a space is a table of parameter = [values], not {type(space).__name__}")
    if not space:
        raise SweepError(f"{source}: the space is empty (name at least one parameter and its values)")
    for name in space:
        if name not in PARAMETERS:
            raise SweepError(f"{source}: unknown parameter {name!r} (choose from {', '.join(PARAMETERS)})")
    out = {}
    for name in PARAMETERS:
        if name not in space:
            continue
        values = space[name]
        if not isinstance(values, list):
            raise SweepError(f"{source}: {name} must be a list of values, not {values!r}")
        if not values:
            raise SweepError(f"{source}: {name} has no values (an empty list)")
        check = PARAMETERS[name]
        seen = []
        for v in values:
            if not check(v):
                raise SweepError(f"{source}: {name} value {v!r} is not {_describe(check)}")
            v = float(v) if name == "clock_mhz" else v
            if v in seen:
                raise SweepError(f"{source}: {name} lists {v!r} twice")
            seen.append(v)
        out[name] = seen
    return out


#: Named spaces shipped with tern (``--space NAME``): the TOML files of this folder.
SPACES_DIR = Path(__file__).resolve().parent / "spaces"


def load_space(spec: str | None) -> dict:
    """The space of ``--space``: None or ``builtin`` (the built-in space), the name of a shipped space
    (``sw/sweep/spaces/NAME.toml``, e.g. ``2b4t_decode``) or a TOML file's ``[space]``."""
    if spec is None or spec == "builtin":
        return check_space(BUILTIN_SPACE, "built-in space")
    if "/" not in spec and not spec.endswith(".toml") and (SPACES_DIR / f"{spec}.toml").is_file():
        spec = str(SPACES_DIR / f"{spec}.toml")
    from hw.fileio import InputError, read_toml
    try:
        data = read_toml(spec, what="space file")
    except InputError as e:
        raise SweepError(str(e).splitlines()[0]) from None
    except OSError as e:
        raise SweepError(f"cannot read space file {spec!r}: {e.strerror or e}") from None
    extra = set(data) - {"space"}
    if extra:
        raise SweepError(f"{spec}: unknown table or key {sorted(extra)[0]!r} (a space file has one [space] table)")
    if "space" not in data:
        raise SweepError(f"{spec}: no [space] table")
    return check_space(data["space"], spec)


def split_params(params: dict) -> tuple[dict, dict]:
    """A trial's parameters split into TernConfig settings and estimator arguments."""
    return ({k: v for k, v in params.items() if k in CONFIG_PARAMETERS},
            {k: v for k, v in params.items() if k in RUN_PARAMETERS})


def grid_size(space: dict) -> int:
    return math.prod(len(v) for v in space.values())
