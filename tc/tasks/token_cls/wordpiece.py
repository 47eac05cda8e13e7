"""BERT WordPiece on pre-split words, with a bounded cache of the pieces of words seen.

Each distinct word is tokenized once and its pieces are cached in flat numpy arrays, so a corpus costs
one ``encode_batch`` over its vocabulary plus numpy gathers. The cache holds at most ``cache_words``
words (default 500k, a few tens of MB): when a call would exceed it, the cache is emptied first and
refilled with that call's words (all words of one call are cached while it runs), so memory stays
bounded on huge inputs and results never change (tokenizing a word again gives the same pieces).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tc.core.errors import DataError
from tc.tasks.token_cls.sentence import read_text
from tc.tasks.token_cls.windows import ranges

__all__ = ["CACHE_WORDS", "SPECIAL_TOKENS", "WordPieceEncoder"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_ENCODE_CHUNK = 512
"""Unique words per pretokenized sequence handed to the tokenizer (fewer, larger Encoding objects)."""
CACHE_WORDS = 500_000
"""Default bound on the words whose pieces a WordPieceEncoder keeps."""


def _read_vocab(path: Path) -> dict[str, int]:
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token.rstrip("\r"): i for i, token in enumerate(lines)}
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"{path}: not a BERT WordPiece vocabulary (no {', '.join(missing)})")
    return vocab


class WordPieceEncoder:
    """BERT WordPiece on pre-split words, as Hugging Face's BertTokenizer does it.

    Each distinct word is tokenized once (words repeat a lot in corpora) and its pieces are cached (at
    most ``cache_words`` words, see the module docstring), so a whole corpus costs one ``encode_batch``
    over its vocabulary plus numpy gathers.
    """

    def __init__(self, vocab_file: Path, do_lower_case: bool = True, max_chars_per_word: int = 100,
                 cache_words: int = CACHE_WORDS) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        self.vocab_file = Path(vocab_file)
        self.do_lower_case = do_lower_case
        vocab = _read_vocab(self.vocab_file)
        self.vocab_size = max(vocab.values()) + 1
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (vocab[t] for t in SPECIAL_TOKENS)
        wordpiece = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word)
        tokenizer = Tokenizer(wordpiece)
        # strip_accents=None follows lowercase, exactly as BertTokenizer's default.
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._tokenizer = tokenizer
        self.cache_words = max(1, cache_words)
        self._clear()

    def _clear(self) -> None:
        self._slot: dict[str, int] = {}
        self._starts = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pieces = np.zeros(0, dtype=np.int32)

    def _learn(self, words: list[str]) -> None:
        """Tokenize words not seen before and append their pieces to the cache."""
        chunks = [words[i : i + _ENCODE_CHUNK] for i in range(0, len(words), _ENCODE_CHUNK)]
        encodings = self._tokenizer.encode_batch(chunks, is_pretokenized=True, add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        owners = [np.asarray(e.word_ids, dtype=np.int64) + k * _ENCODE_CHUNK for k, e in enumerate(encodings)]
        ids_flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        owner_flat = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        counts = np.bincount(owner_flat, minlength=len(words)).astype(np.int64)
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # words the normaliser erases entirely (control chars...) become [UNK]
            ids_flat = np.insert(ids_flat, np.searchsorted(owner_flat, empty), self.unk_id).astype(np.int32)
            counts[empty] = 1
        base = len(self._pieces)
        starts = base + np.cumsum(counts) - counts
        for offset, word in enumerate(words):
            self._slot[word] = len(self._starts) + offset
        self._starts = np.concatenate([self._starts, starts])
        self._counts = np.concatenate([self._counts, counts])
        self._pieces = np.concatenate([self._pieces, ids_flat])

    def encode_words(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Pieces of ``words`` back to back (int32) and the number of pieces of each word (>= 1)."""
        new = list(dict.fromkeys(w for w in words if w not in self._slot))
        if new and len(self._slot) + len(new) > self.cache_words:
            self._clear()  # bounded memory: start over with this call's words only
            new = list(dict.fromkeys(words))
        if new:
            self._learn(new)
        slot = self._slot
        slots = np.fromiter((slot[w] for w in words), dtype=np.int64, count=len(words))
        counts = self._counts[slots]
        return self._pieces[ranges(self._starts[slots], counts)], counts

    def tokenize(self, words: Sequence[str]) -> list[list[str]]:
        """The pieces of each word as strings (for inspection and tests)."""
        pieces, counts = self.encode_words(words)
        tokens = [self._tokenizer.id_to_token(int(i)) or "[UNK]" for i in pieces]
        bounds = np.cumsum(counts)
        return [tokens[b - c : b] for b, c in zip(bounds.tolist(), counts.tolist(), strict=True)]

