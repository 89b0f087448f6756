"""Atomic file output: complete or absent, usual permissions, no temporary files left."""

import os
import stat

import pytest

from hw.fileio import atomic_write, atomic_write_many


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_writes_with_usual_permissions(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write(p, lambda t: t.write_text("hello"))
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~_umask()
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_failing_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")

    def fails(t):
        t.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, fails)
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_many_is_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.v", tmp_path / "a.json"
    a.write_text("old a")

    def fails(t):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_many({a: lambda t: t.write_text("new a"), b: fails})
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.v"]
    atomic_write_many({a: lambda t: t.write_text("new a"), b: lambda t: t.write_text("{}")})
    assert (a.read_text(), b.read_text()) == ("new a", "{}")
