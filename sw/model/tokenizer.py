"""Character tokenizer for the embedded demo model (and any other character-level model).

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

__all__ = ["CharTokenizer", "TOKENIZER_TYPE"]

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
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{path}: cannot read tokenizer description ({e.strerror})") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
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
