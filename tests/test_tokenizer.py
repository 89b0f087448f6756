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
    with pytest.raises(ValueError, match="bad.json: tokenizer description is not valid JSON"):
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
    with pytest.raises(ValueError, match="missing.json: no such file"):
        CharTokenizer.from_file(tmp_path / "missing.json")


# -- Hugging Face tokenizer.json and GGUF tokenizers through the tokenizers library ---------------------

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "  spaces  and\nnew lines\n",
         "numbers 1234567 and punctuation!?", "unicode: héllo wörld — ünïcödé 日本", ""]
_CORPUS = ["hello world, the quick brown fox jumps over the lazy dog 12345 again and again",
           "tern runs ternary models; héllo wörld ünïcödé", "new\nlines\tand  spaces"] * 20


def build_bpe_tokenizer(path, *, pre="llama-bpe", vocab_size=400):
    """A byte-level BPE tokenizer.json trained here with the tokenizers library (Llama 3's pre-tokenizer
    split or GPT-2's ByteLevel regex), BOS added by a TemplateProcessing post-processor; returns path."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from sw.model.tokenizer import LLAMA3_SPLIT
    tok = Tokenizer(models.BPE(ignore_merges=pre == "llama-bpe"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "llama-bpe")
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), byte_level])
                         if pre == "llama-bpe" else byte_level)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    tok.save(str(path))
    return path


def test_tokenizer_json_through_the_tokenizers_library(tmp_path):
    from tokenizers import Tokenizer

    from sw.model.tokenizer import load_tokenizer_json
    p = build_bpe_tokenizer(tmp_path / "tokenizer.json")
    tok, lib = load_tokenizer_json(p), Tokenizer.from_file(str(p))
    for text in TEXTS:
        ids = lib.encode(text).ids
        assert tok.encode(text) == ids and tok(text)["input_ids"] == ids and ids[0] == 0
        assert tok.decode(ids) == "<|begin_of_text|>" + text
    a = tok.encode("hello", add_special_tokens=False)
    assert tok.decode([*a, 10**6, *a]) == "hello[id 1000000]hello"   # an id past the tokenizer's vocabulary


def test_tokenizer_json_agrees_with_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    from sw.model.tokenizer import load_tokenizer_json
    p = build_bpe_tokenizer(tmp_path / "tokenizer.json")
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(p))
    tok = load_tokenizer_json(p)
    for text in TEXTS:
        ids = ref(text)["input_ids"]
        assert tok.encode(text) == ids
        assert tok.decode(ids) == ref.decode(ids)


@pytest.mark.parametrize("pre", ["llama-bpe", "gpt2"])
def test_gguf_metadata_round_trip(tmp_path, pre):
    """tokenizer.json -> tokenizer.ggml.* (what tern convert writes) -> the tokenizers library again:
    the same ids for every text."""
    from types import SimpleNamespace

    from sw.model.tokenizer import gguf_tokenizer, gguf_tokenizer_metadata, load_tokenizer_json
    p = build_bpe_tokenizer(tmp_path / "tokenizer.json", pre=pre)
    meta = gguf_tokenizer_metadata(p)
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == pre
    assert meta["tokenizer.ggml.tokens"][:2] == ["<|begin_of_text|>", "<|end_of_text|>"]
    assert meta["tokenizer.ggml.token_type"][:3] == [3, 3, 1] and meta["tokenizer.ggml.bos_token_id"] == 0
    back = gguf_tokenizer(SimpleNamespace(path=tmp_path / "m.gguf", metadata=meta))
    tok = load_tokenizer_json(p)
    for text in TEXTS:
        assert back.encode(text) == tok.encode(text)
        assert back.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_gguf_spm_vocabulary_becomes_a_byte_fallback_bpe(tmp_path):
    """A llama.cpp 'llama' (SentencePiece) vocabulary: pieces with U+2581 for spaces, <0xXX> byte
    tokens, merges derived from the scores."""
    from types import SimpleNamespace

    from sw.model.tokenizer import gguf_tokenizer
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "\u2581he", "\u2581hell", "hell",
             "\u2581hello", "\u2581w", "or", "\u2581wor", "\u2581world", "ld"]
    tokens = pieces + words
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)
    scores = [0.0] * len(pieces) + [-float(i) for i in range(len(words))]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.unknown_token_id": 0}
    tok = gguf_tokenizer(SimpleNamespace(path=tmp_path / "m.gguf", metadata=meta))
    ids = tok.encode("hello world")
    assert ids == [1, tokens.index("\u2581hello"), tokens.index("\u2581world")]
    assert tok.decode(ids[1:]) == "hello world"
    ids = tok.encode("hé")   # é is not a piece: its two UTF-8 bytes fall back to byte tokens
    assert ids == [1, tokens.index("\u2581"), tokens.index("h"), 3 + 0xC3, 3 + 0xA9] and tok.decode(ids[1:]) == "hé"


def test_bad_tokenizer_files_are_one_line(tmp_path):
    from sw.model.tokenizer import TokenizerError, load_tokenizer_json
    p = tmp_path / "tokenizer.json"
    p.write_text('{"model": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(TokenizerError, match="tokenizer.json: tokenizer.json is nested more than 64 levels deep"):
        load_tokenizer_json(p)
    p.write_text('{"model": {"type": "Nonsense"}}')
    with pytest.raises(TokenizerError, match="not a tokenizer the tokenizers library reads") as e:
        load_tokenizer_json(p)
    assert "\n" not in str(e.value)
