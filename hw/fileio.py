"""File input and output that cannot be turned against the program.

Output is atomic: a file appears complete or not at all (no partial output file is ever left
behind, and an existing file survives any failure).

Every file is written to a temporary file in its destination folder, given the permissions a plain
``open()`` would give (``0o666 & ~umask``; ``mkstemp`` creates ``0o600``), and renamed into place with
``os.replace``. On any error (including KeyboardInterrupt) every temporary file is removed and no
destination is touched; several files (:func:`atomic_write_many`) appear all together or not at all.

Input of JSON and TOML is bounded (:func:`read_json`, :func:`read_toml`): a file larger than
``max_bytes`` or nested deeper than ``max_depth`` arrays/objects (tables) is refused with one line
naming the file and what it was meant to be, before the parser could run out of memory or stack
(``RecursionError``). Every error is ``error(message)`` (default :class:`InputError`, a ``ValueError``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_many", "InputError", "read_json", "read_toml",
           "MAX_INPUT_BYTES", "MAX_INPUT_DEPTH"]

#: Default bounds of :func:`read_json` / :func:`read_toml`: a file size and a nesting depth no
#: configuration, index or tokenizer file comes near (Hugging Face tokenizer.json files are tens of
#: MB at most and nest fewer than 10 levels).
MAX_INPUT_BYTES = 256 * 1024 * 1024
MAX_INPUT_DEPTH = 64


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def atomic_write_many(targets: dict) -> None:
    """``targets``: ``{path: write}``, where ``write(tmp_path)`` fills the temporary file. All or
    nothing: all files are written first; only when every write succeeded are they renamed into
    place, a destination that is a folder is refused before any rename, and if a rename still fails
    the destinations already replaced get their old files back (kept under a second name, a hard
    link, until every rename succeeded) and those that did not exist are removed."""
    temps, backups, replaced = [], {}, []
    mode = 0o666 & ~_umask()
    try:
        for path, write in targets.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append((tmp, path))
            write(Path(tmp))
            os.chmod(tmp, mode)
        for _, path in temps:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        for tmp, path in temps if len(temps) > 1 else ():
            if os.path.lexists(path):
                try:
                    os.link(path, f"{tmp}.old", follow_symlinks=False)
                    backups[path] = f"{tmp}.old"
                except OSError:   # a file system without hard links: this file cannot be put back
                    backups[path] = None
        try:
            for tmp, path in temps:
                os.replace(tmp, path)
                replaced.append(path)
        except BaseException:
            for path in replaced:
                if path not in backups:
                    os.unlink(path)
                elif backups[path] is not None:
                    os.replace(backups.pop(path), path)
            raise
        temps = []
    finally:
        for tmp in [t for t, _ in temps] + [b for b in backups.values() if b is not None]:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def atomic_write(path, write: Callable[[Path], None]) -> None:
    """Create ``path`` atomically; ``write(tmp_path)`` fills the temporary file."""
    atomic_write_many({path: write})


# -- bounded input ----------------------------------------------------------------------------------


class InputError(ValueError):
    """An input file that cannot be read as what it is meant to be (one line: the path and why)."""


def _read_bounded(path: Path, what: str, max_bytes: int, error) -> bytes:
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                raise error(f"{path}: {what} is not a regular file")
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, not a file") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} is larger than {max_bytes:,} bytes")
    return data


_JSON_ESCAPE = re.compile(rb"\\.", re.S)
_JSON_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_JSON_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def _json_depth(data: bytes, limit: int) -> int:
    """The deepest nesting of arrays/objects in a JSON text, or ``limit + 1`` if deeper, without
    recursion: escapes and everything but quotes and brackets are dropped, the strings' insides
    removed, then each pass removes the innermost empty pairs (passes = depth)."""
    s = _JSON_ESCAPE.sub(b"", data).translate(None, _JSON_NOT_STRUCTURE)
    brackets = b"".join(s.split(b'"')[::2])
    depth = 0
    while brackets and depth <= limit:
        shorter = _JSON_EMPTY_PAIR.sub(b"", brackets)
        if shorter == brackets:  # unbalanced: the parser reports where
            break
        brackets, depth = shorter, depth + 1
    return depth


def _depth(value) -> int:
    """The nesting depth of parsed lists/dicts, walked with an explicit stack."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        deepest = max(deepest, d + 1)
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


def read_json(path, *, what: str, max_bytes: int = MAX_INPUT_BYTES, max_depth: int = MAX_INPUT_DEPTH,
              error=InputError):
    """Parse the JSON file ``path`` (``what``: what it should be, for the message, e.g. "config.json
    of a checkpoint"), refusing one larger than ``max_bytes`` or nested deeper than ``max_depth``
    before parsing. Raises ``error(one line)``."""
    path = Path(path)
    data = _read_bounded(path, what, max_bytes, error)
    if _json_depth(data, max_depth) > max_depth:
        raise error(f"{path}: {what} is nested more than {max_depth} levels deep")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: {what} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:  # cannot happen below the depth bound; kept as a last guard
        raise error(f"{path}: {what} is nested more than {max_depth} levels deep") from None


def read_toml(path, *, what: str, max_bytes: int = MAX_INPUT_BYTES, max_depth: int = MAX_INPUT_DEPTH,
              error=InputError) -> dict:
    """Parse the TOML file ``path`` like :func:`read_json` (size bound before parsing; the nesting
    bound after parsing, and a nesting deep enough to exhaust the parser's stack is refused as
    such)."""
    path = Path(path)
    data = _read_bounded(path, what, max_bytes, error)
    try:
        value = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what} is not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: {what} is not valid TOML ({e})") from None
    except RecursionError:
        raise error(f"{path}: {what} is nested more than {max_depth} levels deep") from None
    if _depth(value) > max_depth:
        raise error(f"{path}: {what} is nested more than {max_depth} levels deep")
    return value
