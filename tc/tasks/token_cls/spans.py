"""Words with character offsets, and entities from IOB2 word labels: the text helpers reading documents,
scoring and prediction all share.

They live apart from ``predict`` so that reading training documents (``documents.align``) does not import
the predictor, and with it the model directory and the task (an import cycle task -> sources -> documents
-> align -> predict -> model_dir -> task). Only ``tokenizers`` is needed, and only when words are split.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

__all__ = ["UNTYPED", "split_words", "word_spans"]

UNTYPED = "ENTITY"
"""Entity type reported for untyped labels (the seed scheme's plain B/I/O)."""


@functools.cache
def _splitter() -> tuple[Any, Any]:
    """BERT's cleaning (control characters, CJK spacing) and pre-tokenizer, without case or accent
    changes: those are the WordPiece encoder's job, and leaving them out keeps offsets simple."""
    from tokenizers import normalizers, pre_tokenizers

    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                       lowercase=False)
    return clean, pre_tokenizers.BertPreTokenizer()


def split_words(text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` per word of ``text``, split like BERT's basic tokenizer.

    ``start``/``end`` are character offsets into ``text``; characters BERT ignores (control and format
    characters) fall between or inside words, never in a word of their own.
    """
    from tokenizers import PreTokenizedString

    clean, pre_tokenizer = _splitter()
    pieces = PreTokenizedString(text)
    pieces.normalize(clean.normalize)
    pre_tokenizer.pre_tokenize(pieces)
    return [(word, start, end)
            for word, (start, end), _ in pieces.get_splits(offset_referential="original", offset_type="char")]


def _split_label(label: str) -> tuple[str, str]:
    """IOB2 label -> (prefix, type); ``O`` and anything unexpected count as outside."""
    if len(label) >= 1 and label[0] in "BI" and (len(label) == 1 or label[1] == "-"):
        return label[0], label[2:] or UNTYPED
    return "O", ""


def word_spans(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(first_word, last_word_exclusive, type)`` of each entity in IOB2 ``labels``.

    Read as conlleval/seqeval read them: ``B-X`` opens an entity, ``I-X`` continues an open ``X``
    entity and otherwise opens one, anything else closes.
    """
    spans: list[tuple[int, int, str]] = []
    open_at, open_type = -1, ""
    for i, label in enumerate(labels):
        prefix, kind = _split_label(label)
        continues = prefix == "I" and open_at >= 0 and kind == open_type
        if continues:
            continue
        if open_at >= 0:
            spans.append((open_at, i, open_type))
            open_at = -1
        if prefix != "O":
            open_at, open_type = i, kind
    if open_at >= 0:
        spans.append((open_at, len(labels), open_type))
    return spans
