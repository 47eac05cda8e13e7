"""Windows: cutting sentences into rows of whole words, and the context (FLERT) around each row.

A row is ``[CLS] left-context own-pieces right-context [SEP]``. Its own pieces are whole words of one
sentence, planned as if there were no context (so rows, their labels and their predictions are the same
for every ``context_tokens``); the context is up to ``context_tokens`` WordPiece tokens on each side,
taken from the pieces just before and after the row in its document (the neighbouring sentences, or
the rest of a sentence cut into windows), never from another document, and only as far as the row has
room below ``max_len``. Context positions carry no loss and no prediction.

What a *document* is: the sentences of one source with one ``doc_index``: a ``Document`` of a document
format, or in a TSV/CoNLL file the sentences between two ``-DOCSTART-`` lines; a file without them is
one stream of sentences (blank lines are sentence boundaries). The shipped BC5CDR-chem IOB files mark
their 500 abstracts a split with ``-DOCSTART-`` (aligned to the CDR PubTator documents, ``data/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["context_sizes", "document_groups", "plan_windows", "ranges"]


def plan_windows(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Cut one sentence into ``(first_word, num_words)`` windows of whole words, <= ``budget`` pieces.

    Greedy and order-preserving; a word longer than ``budget`` gets a window of its own (and is
    truncated to its first ``budget`` pieces by the caller).
    """
    windows: list[tuple[int, int]] = []
    start = used = 0
    for i, count in enumerate(counts):
        if used and used + count > budget:
            windows.append((start, i - start))
            start, used = i, 0
        used += int(count)
    windows.append((start, len(counts) - start))
    return windows


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shifts + np.arange(total, dtype=np.int64)


def document_groups(keys: Sequence[object]) -> np.ndarray:
    """Per sentence, the number of its document (0, 0, 1, ...): a new one wherever ``keys`` changes."""
    changes = [i > 0 and keys[i] != keys[i - 1] for i in range(len(keys))]
    return np.cumsum(np.asarray(changes, dtype=np.int64))


def context_sizes(own_start: np.ndarray, own_stop: np.ndarray, doc_start: np.ndarray, doc_stop: np.ndarray,
                  room: np.ndarray, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) context pieces per row: up to ``tokens`` each, inside the document's piece span
    ``[doc_start, doc_stop)``, together at most ``room``; a side with less to give leaves its room to the
    other."""
    room = np.maximum(room, 0)
    left_want = np.minimum(tokens, own_start - doc_start)
    right_want = np.minimum(tokens, doc_stop - own_stop)
    left = np.minimum(left_want, np.maximum(room - right_want, room // 2))
    right = np.minimum(right_want, room - left)
    return left.astype(np.int64), right.astype(np.int64)
