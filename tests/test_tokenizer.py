"""sw.model.tokenizer: the character tokenizer of the demo model (ids, round trips, bad files)."""

import json

import pytest

from sw.model import demo_task
from sw.model.tokenizer import CharTokenizer


# -- tokenizer ----------------------------------------------------------------------------------

def test_tokenizer_ids_and_round_trip():
    tok = demo_task.make_tokenizer()
    assert tok.vocab_size == 15
    ids = tok.encode("907+015=", add_bos=True)
    assert ids == [12, 9, 0, 7, 10, 0, 1, 5, 11]
    assert tok.decode(ids) == "907+015="
    assert tok.decode(ids, skip_special=False) == "<bos>907+015="
    for text in ["", "0", "999+999=", "1+2=3", "=+=+"]:
        assert tok.decode(tok.encode(text, add_eos=True)) == text
    assert tok.decode([1, 2, tok.eos_id, 3], stop_at_eos=True) == "12"


def test_tokenizer_unknown_character_is_named():
    tok = demo_task.make_tokenizer()
    with pytest.raises(ValueError, match=r"character 'x' at position 3"):
        tok.encode("123x4")
    with pytest.raises(ValueError, match=r"character '<'"):
        tok.encode("<bos>")  # special tokens cannot be spelled in text
    with pytest.raises(ValueError, match="token id 15"):
        tok.decode([1, 15])
    with pytest.raises(TypeError):
        tok.encode(123)


def test_tokenizer_json_round_trip_and_bad_files(tmp_path):
    tok = demo_task.make_tokenizer()
    p = tmp_path / "tokenizer.json"
    tok.save(p)
    back = CharTokenizer.from_file(p)
    assert back.vocab == tok.vocab and back.to_dict() == tok.to_dict()
    assert CharTokenizer.from_file(tmp_path).vocab == tok.vocab  # a folder means folder/tokenizer.json
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        CharTokenizer.from_file(bad)
    d = tok.to_dict()
    d["vocab"] = d["vocab"][:-1]  # drops <pad>
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="pad_token '<pad>' is not in the vocab"):
        CharTokenizer.from_file(bad)
    d = tok.to_dict()
    d["vocab"] = ["0", "0", "<bos>", "<eos>", "<pad>"]
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer.from_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        CharTokenizer.from_file(tmp_path / "missing.json")
