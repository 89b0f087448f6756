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


# -- bounded readers -----------------------------------------------------------------------------------

import json  # noqa: E402

from hw.fileio import InputError, read_json, read_toml  # noqa: E402


def test_read_json_parses_and_counts_depth_outside_strings(tmp_path):
    p = tmp_path / "a.json"
    value = {"s": '[[[{{ \\" ]', "a": [[1], [2, {"b": []}]], "e": "\\\\"}
    p.write_text(json.dumps(value))
    # depth 5: the object, "a"'s list, [2, {...}], {"b": ...}, []; the brackets in strings do not count
    assert read_json(p, what="a test file", max_depth=5) == value
    with pytest.raises(InputError, match=r"a\.json: a test file is nested more than 4 levels deep"):
        read_json(p, what="a test file", max_depth=4)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
                                  "[" * 100_000])  # the last one is also unbalanced
def test_read_json_refuses_deep_nesting_without_recursion_error(tmp_path, text):
    p = tmp_path / "deep.json"
    p.write_text(text)
    with pytest.raises(InputError, match="deep.json: config.json is nested more than 64 levels deep"):
        read_json(p, what="config.json")


def test_read_json_size_and_syntax_errors(tmp_path):
    p = tmp_path / "big.json"
    p.write_text("[" + "0," * 100 + "0]")
    assert read_json(p, what="x", max_bytes=203) == [0] * 101
    with pytest.raises(InputError, match="big.json: x is larger than 202 bytes"):
        read_json(p, what="x", max_bytes=202)
    p.write_text('{"a": }')
    with pytest.raises(InputError, match=r"not valid JSON \(Expecting value, line 1 column 7\)"):
        read_json(p, what="x")
    p.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_json(p, what="x")
    with pytest.raises(InputError, match="no such file"):
        read_json(tmp_path / "missing.json", what="x")
    with pytest.raises(InputError, match="is a folder"):
        read_json(tmp_path, what="x")


def test_read_json_raises_the_callers_error_class(tmp_path):
    class MyError(ValueError):
        pass

    p = tmp_path / "a.json"
    p.write_text("[[[]]]")
    with pytest.raises(MyError):
        read_json(p, what="x", max_depth=2, error=MyError)


def test_read_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[accelerator]\nrows = 4\n[accelerator.x]\ny = [1, {z = "[[["}]\n')
    assert read_toml(p, what="a configuration") == {"accelerator": {"rows": 4, "x": {"y": [1, {"z": "[[["}]}}}
    with pytest.raises(InputError, match="c.toml: a configuration is nested more than 4 levels deep"):
        read_toml(p, what="a configuration", max_depth=4)
    for depth in (70, 100_000):  # below and beyond the parser's own stack
        p.write_text("a = " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(InputError, match="nested more than 64 levels deep"):
            read_toml(p, what="a configuration")
    p.write_text("a = = 1\n")
    with pytest.raises(InputError, match="c.toml: a configuration is not valid TOML"):
        read_toml(p, what="a configuration")
