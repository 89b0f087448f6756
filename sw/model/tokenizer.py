"""Tokenizers: the demo's character tokenizer, Hugging Face ``tokenizer.json`` files and the
tokenizer embedded in a GGUF file (``docs/MODEL.md``, "Tokenizers").

* :class:`CharTokenizer`: the embedded demo model's (and any other character-level model's);
* :class:`HFTokenizer`: a Hugging Face ``tokenizer.json`` run by the ``tokenizers`` library
  (:func:`load_tokenizer_json`), and a GGUF file's ``tokenizer.ggml.*`` vocabulary and merges turned
  into the same library's model (:func:`tokenizer_json_from_gguf`: ``gpt2`` byte-level BPE with the
  ``llama-bpe`` or ``gpt2`` pre-tokenizer, and ``llama`` SentencePiece-style BPE with byte fallback);
  :func:`gguf_tokenizer_metadata` goes the other way for ``tern convert``.

The character tokenizer
-----------------------

A tokenizer is described by a small JSON file (``tokenizer.json`` next to the checkpoint)::

    {
      "type": "char",
      "vocab": ["0", "1", ..., "9", "+", "=", "<bos>", "<eos>", "<pad>"],
      "bos_token": "<bos>",
      "eos_token": "<eos>",
      "pad_token": "<pad>"
    }

``vocab[i]`` is the text of token id ``i``. Ordinary entries are single characters; special tokens
(BOS/EOS/PAD) are multi-character names that ``encode`` never produces from text, so a prompt cannot
smuggle them in. ``encode`` raises :class:`ValueError` naming the first character that is not in the
vocabulary; ``decode`` raises :class:`ValueError` for ids outside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

from hw.fileio import read_json

__all__ = ["CharTokenizer", "TOKENIZER_TYPE", "TokenizerError", "HFTokenizer", "load_tokenizer_json",
           "tokenizer_json_from_gguf", "gguf_tokenizer", "gguf_tokenizer_metadata", "TOKENIZER_MAX_BYTES"]

#: The largest tokenizer.json read (Hugging Face ones are tens of MB at most).
TOKENIZER_MAX_BYTES = 128 * 1024 * 1024


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used (one line naming the file)."""

TOKENIZER_TYPE = "char"
_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token")


class CharTokenizer:
    """Maps single characters to token ids and back, plus BOS/EOS/PAD special tokens.

    Parameters
    ----------
    vocab : sequence of str
        ``vocab[i]`` is the text of id ``i``: single characters for ordinary tokens, and the special
        token names given below (which must be longer than one character).
    bos_token, eos_token, pad_token : str
        Names of the special tokens; each must appear exactly once in ``vocab``.
    """

    def __init__(self, vocab: Sequence[str], *, bos_token: str = "<bos>", eos_token: str = "<eos>",
                 pad_token: str = "<pad>"):
        if isinstance(vocab, str) or not isinstance(vocab, Sequence):
            raise TypeError(f"vocab must be a list of strings, not {vocab!r}")
        vocab = list(vocab)
        for i, tok in enumerate(vocab):
            if not isinstance(tok, str) or tok == "":
                raise ValueError(f"vocab entry {i} must be a non-empty string, not {tok!r}")
        if len(set(vocab)) != len(vocab):
            dups = sorted({t for t in vocab if vocab.count(t) > 1})
            raise ValueError(f"vocab has duplicate entries: {dups!r}")
        specials = {"bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token}
        for key, name in specials.items():
            if not isinstance(name, str) or len(name) < 2:
                raise ValueError(f"{key} must be a name of at least 2 characters, not {name!r}")
            if name not in vocab:
                raise ValueError(f"{key} {name!r} is not in the vocab")
        if len(set(specials.values())) != 3:
            raise ValueError(f"bos/eos/pad tokens must be distinct, got {specials!r}")
        for i, tok in enumerate(vocab):
            if len(tok) > 1 and tok not in specials.values():
                raise ValueError(f"vocab entry {i} {tok!r} is neither one character nor a special token")
        self._vocab = vocab
        self._ids = {tok: i for i, tok in enumerate(vocab)}
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.bos_id = self._ids[bos_token]
        self.eos_id = self._ids[eos_token]
        self.pad_id = self._ids[pad_token]
        self.special_ids = frozenset((self.bos_id, self.eos_id, self.pad_id))

    # --- description file -------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"type": TOKENIZER_TYPE, "vocab": list(self._vocab), "bos_token": self.bos_token,
                "eos_token": self.eos_token, "pad_token": self.pad_token}

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "tokenizer description") -> "CharTokenizer":
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        if d.get("type") != TOKENIZER_TYPE:
            raise ValueError(f"{source}: unsupported tokenizer type {d.get('type')!r} (expected {TOKENIZER_TYPE!r})")
        missing = [k for k in ("vocab", *_SPECIAL_KEYS) if k not in d]
        if missing:
            raise ValueError(f"{source}: missing keys {missing}")
        try:
            return cls(d["vocab"], **{k: d[k] for k in _SPECIAL_KEYS})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    def save(self, path: str | Path) -> None:
        """Writes the JSON description to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_file(cls, path: str | Path) -> "CharTokenizer":
        """Reads a JSON description written by :meth:`save`."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        d = read_json(path, what="tokenizer description", max_bytes=TOKENIZER_MAX_BYTES, error=TokenizerError)
        return cls.from_dict(d, source=str(path))

    # --- encode / decode --------------------------------------------------------------------

    @property
    def vocab(self) -> list[str]:
        return list(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self._vocab)

    def token_to_id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise ValueError(f"token {token!r} is not in the vocabulary") from None

    def encode(self, text: str, *, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``, one per character; raises ValueError on an unknown character."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        ids = [self.bos_id] if add_bos else []
        for pos, ch in enumerate(text):
            i = self._ids.get(ch)
            if i is None or i in self.special_ids:
                raise ValueError(f"character {ch!r} at position {pos} of {text!r} is not in the vocabulary "
                                 f"(allowed: {''.join(t for t in self._vocab if len(t) == 1)!r})")
            ids.append(i)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = True, stop_at_eos: bool = False) -> str:
        """Text of ``ids``; special tokens are dropped (``skip_special``) or written by name."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._vocab):
                raise ValueError(f"token id {i} is outside the vocabulary (size {len(self._vocab)})")
            if stop_at_eos and i == self.eos_id:
                break
            if skip_special and i in self.special_ids:
                continue
            out.append(self._vocab[i])
        return "".join(out)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, eos={self.eos_token!r})"


# -- Hugging Face tokenizer.json through the tokenizers library -----------------------------------------

class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the interface the command line uses: ``encode(text)`` (special
    tokens added the way the file's post-processor says, e.g. a BOS), ``tok(text)["input_ids"]`` (the
    same ids, as transformers' tokenizers answer), ``decode(ids)`` (special tokens written out)."""

    def __init__(self, tokenizer, source: str):
        self.tokenizer, self.source = tokenizer, source

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(self, text: str) -> dict:
        return {"input_ids": self.encode(text)}

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; an id the tokenizer does not have (a model's vocabulary may be padded
        past its tokenizer's) is written ``[id N]``."""
        out, run = [], []
        for i in [int(i) for i in ids] + [None]:
            if i is not None and 0 <= i < self.vocab_size:
                run.append(i)
                continue
            if run:
                out.append(self.tokenizer.decode(run, skip_special_tokens=skip_special_tokens))
                run = []
            if i is not None:
                out.append(f"[id {i}]")
        return "".join(out)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.source}, vocab_size={self.vocab_size})"


def _from_str(text: str, source: str) -> HFTokenizer:
    from tokenizers import Tokenizer
    try:
        return HFTokenizer(Tokenizer.from_str(text), source)
    except Exception as e:  # tokenizers raises its own exception type for a bad file
        raise TokenizerError(f"{source}: not a tokenizer the tokenizers library reads "
                             f"({' '.join(str(e).split())[:200]})") from None


def load_tokenizer_json(path) -> HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (bounded read: size and nesting) run by ``tokenizers``."""
    path = Path(path)
    read_json(path, what="tokenizer.json", max_bytes=TOKENIZER_MAX_BYTES, error=TokenizerError)
    return _from_str(path.read_text(encoding="utf-8"), str(path))


# -- GGUF tokenizer.ggml.* <-> tokenizer.json ----------------------------------------------------------

#: Llama 3's pre-tokenizer split (llama.cpp's ``llama-bpe``); GPT-2's is ByteLevel's own regex.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_PRE = ("llama-bpe", "llama3", "llama-v3", "smaug-bpe")
_GPT2_PRE = ("default", "gpt2", "gpt-2")
# GGUF token types (llama.cpp's llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def _byte_level_pre(pre: str) -> dict:
    if pre in _LLAMA3_PRE:
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def _spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[list[str]]:
    """BPE merges of a SentencePiece BPE vocabulary: a token ``ab`` splits into pieces ``a`` + ``b`` of
    the vocabulary, ranked by the merged token's score (what transformers' LlamaConverter derives)."""
    ids = {t: i for i, t in enumerate(tokens) if types[i] in (_NORMAL, _USER_DEFINED) and t}
    merges = []
    for t, i in ids.items():
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in ids and b in ids:
                merges.append((-scores[i], ids[a], ids[b], a, b))
    merges.sort()
    return [[a, b] for *_, a, b in merges]


def tokenizer_json_from_gguf(g) -> Optional[str]:
    """The ``tokenizer.json`` text of a GGUF file's embedded tokenizer (``tokenizer.ggml.*``), or None
    when it has none. Raises :class:`TokenizerError` for a kind the library cannot be given."""
    m = g.metadata
    tokens = m.get("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    where = f"{g.path}: metadata tokenizer.ggml"
    kind = m.get("tokenizer.ggml.model")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{where}.tokens must be an array of strings")
    n = len(tokens)
    types = m.get("tokenizer.ggml.token_type", [_NORMAL] * n)
    if not isinstance(types, list) or len(types) != n or not all(isinstance(t, int) for t in types):
        raise TokenizerError(f"{where}.token_type must be an array of {n} integers")
    vocab, added = {}, []
    for i, t in enumerate(tokens):
        if t in vocab:   # a duplicate string: the first id keeps it, this id stays unreachable
            continue
        vocab[t] = i
        if types[i] in (_CONTROL, _USER_DEFINED):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": types[i] == _CONTROL})
    bos = m.get("tokenizer.ggml.bos_token_id")
    add_bos = m.get("tokenizer.ggml.add_bos_token", kind == "llama" or bos is not None)
    if kind == "gpt2":
        merges = m.get("tokenizer.ggml.merges")
        if not isinstance(merges, list) or not all(isinstance(x, str) and x.count(" ") == 1 for x in merges):
            raise TokenizerError(f"{where}.merges must be an array of 'left right' strings")
        pre = m.get("tokenizer.ggml.pre", "default")
        if pre not in _LLAMA3_PRE + _GPT2_PRE:
            raise TokenizerError(f"{where}.pre={pre!r} is not supported "
                                 f"(supported: {', '.join(_LLAMA3_PRE + _GPT2_PRE)})")
        model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                 "ignore_merges": pre in _LLAMA3_PRE, "vocab": vocab, "merges": [x.split(" ") for x in merges]}
        doc = {"normalizer": None, "pre_tokenizer": _byte_level_pre(pre),
               "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}
    elif kind == "llama":
        scores = m.get("tokenizer.ggml.scores", [0.0] * n)
        if not isinstance(scores, list) or len(scores) != n:
            raise TokenizerError(f"{where}.scores must be an array of {n} numbers")
        unk = m.get("tokenizer.ggml.unknown_token_id")
        model = {"type": "BPE", "dropout": None, "unk_token": tokens[unk] if isinstance(unk, int) and 0 <= unk < n
                 else None, "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                 "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                 "merges": _spm_merges(tokens, scores, types)}
        doc = {"normalizer": {"type": "Sequence", "normalizers": [
                   {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "},
                                                              "content": "\u2581"}]},
               "pre_tokenizer": None,
               "decoder": {"type": "Sequence", "decoders": [
                   {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                   {"type": "ByteFallback"}, {"type": "Fuse"},
                   {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}
    else:
        raise TokenizerError(f"{where}.model={kind!r} is not supported (gpt2 or llama)")
    post = None
    if add_bos and isinstance(bos, int) and 0 <= bos < n:
        b = tokens[bos]
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {b: {"id": b, "ids": [bos], "tokens": [b]}}}
    return json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, **doc,
                       "post_processor": post, "model": model}, ensure_ascii=False)


def gguf_tokenizer(g) -> Optional[HFTokenizer]:
    """The tokenizer embedded in a GGUF file (a :class:`~sw.model.gguf.GGUFFile`), or None."""
    text = tokenizer_json_from_gguf(g)
    return None if text is None else _from_str(text, f"{g.path} (tokenizer.ggml)")


def gguf_tokenizer_metadata(path, config=None) -> Optional[dict]:
    """``tokenizer.ggml.*`` metadata for a Hugging Face ``tokenizer.json`` holding a byte-level BPE
    (the GPT-2 or Llama 3 pre-tokenizer), or None for another kind (the GGUF file is then written
    without a tokenizer)."""
    path = Path(path)
    d = read_json(path, what="tokenizer.json", max_bytes=TOKENIZER_MAX_BYTES, error=TokenizerError)
    model = d.get("model") if isinstance(d, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        return None
    pt = d.get("pre_tokenizer")
    if pt == _byte_level_pre("llama-bpe") or (isinstance(pt, dict) and pt.get("type") == "Sequence" and
                                              [p.get("type") for p in pt.get("pretokenizers", [])] ==
                                              ["Split", "ByteLevel"] and
                                              pt["pretokenizers"][0].get("pattern") == {"Regex": LLAMA3_SPLIT}):
        pre = "llama-bpe"
    elif isinstance(pt, dict) and pt.get("type") == "ByteLevel" and pt.get("use_regex", True):
        pre = "gpt2"
    else:
        return None
    vocab = dict(model["vocab"])
    added = d.get("added_tokens") or []
    for a in added:
        if isinstance(a, dict) and isinstance(a.get("id"), int) and isinstance(a.get("content"), str):
            vocab[a["content"]] = a["id"]
    n = max(vocab.values()) + 1 if vocab else 0
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [_UNUSED] * n
    for t, i in vocab.items():
        if not isinstance(i, int) or not 0 <= i < n:
            raise TokenizerError(f"{path}: token {t!r} has id {i!r}")
        tokens[i], types[i] = t, _NORMAL
    for a in added:
        if isinstance(a, dict) and isinstance(a.get("id"), int):
            types[a["id"]] = _CONTROL if a.get("special") else _USER_DEFINED
    merges = [" ".join(x) if isinstance(x, list) else x for x in model.get("merges", [])]
    if not all(isinstance(x, str) and x.count(" ") == 1 for x in merges):
        return None
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges}
    post = d.get("post_processor")
    adds_bos = isinstance(post, dict) and post.get("type") == "TemplateProcessing" and \
        bool(post.get("single")) and "SpecialToken" in post["single"][0]
    meta["tokenizer.ggml.add_bos_token"] = adds_bos
    if adds_bos:
        b = post["single"][0]["SpecialToken"]["id"]
        if b in vocab:
            meta["tokenizer.ggml.bos_token_id"] = vocab[b]
    return meta
