"""Tag one very long document (megabytes on a single line) in bounded memory, with progress.

Tagging a text whole keeps every word as a Python tuple plus all its features at once: a 10 MB line
took over a gigabyte. Here the text is read in segments cut at whitespace (a cut there never splits
or merges a word of BERT's basic tokenizer), each segment's words are cut into windows exactly as
``TokenClsDataset`` cuts one long sentence (greedy, whole words), every window but the last is tagged,
and the last is carried into the next segment. Greedy windowing depends only on the words before, so
the windows, and therefore the labels, equal those of tagging the text whole; only compact per-word
arrays (offsets, label id, score) are kept until the entities are read off at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tc.tasks.token_cls.predict import Predictor

LONG_DOCUMENT_CHARS = 100_000
"""Texts longer than this are streamed; shorter ones are tagged whole (faster, same result)."""
SEGMENT_CHARS = 50_000
"""Characters split into words at once: a few thousand words, a few hundred windows."""
CUT_SEARCH_CHARS = 1_000_000
"""How far past a segment's nominal end to look for whitespace before cutting inside a 'word'."""
WHITESPACE = (" ", "\t", "\n", "\r")
"""The characters BERT's cleaning and pre-tokenizer treat as word separators (never a word's part)."""

Progress = Callable[[int, int, int], None]
"""``progress(characters_done, characters_total, words_done)``, called after every segment."""


def segments(text: str, size: int = SEGMENT_CHARS) -> Iterator[tuple[int, int]]:
    """``(start, end)`` spans covering ``text``, each but the last ending just before a whitespace char."""
    start, total = 0, len(text)
    while start < total:
        end = min(start + size, total)
        if end < total:
            limit = min(total, end + CUT_SEARCH_CHARS)
            found = [i for i in (text.find(c, end, limit) for c in WHITESPACE) if i >= 0]
            end = min(found) if found else limit
        yield start, end
        start = end


def tag_long_document(predictor: Predictor, text: str, progress: Progress | None = None) -> list[dict[str, Any]]:
    """The entities of ``text``, equal to ``entities(text, split_words(text), ...)`` of a whole-text run."""
    from tc.tasks.token_cls.spans import split_words, word_spans
    from tc.tasks.token_cls.windows import plan_windows

    budget = predictor.trained.max_sequence_length - 2
    names = np.asarray(predictor.labels, dtype=object)
    ids = {label: i for i, label in enumerate(predictor.labels)}
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    label_ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    carry: list[tuple[str, int, int]] = []
    carry_counts: list[int] = []
    windows_done = words_done = 0
    for lo, hi in segments(text):
        words = carry + [(w, s + lo, e + lo) for w, s, e in split_words(text[lo:hi])]
        if not words:
            continue
        _, counts = predictor.encoder.encode_words([w for w, _, _ in words[len(carry):]])
        counts_all = carry_counts + counts.tolist()
        windows = plan_windows(counts_all, budget)
        keep = windows if hi == len(text) else windows[:-1]
        if keep:
            groups = [[w for w, _, _ in words[first : first + n]] for first, n in keep]
            tagged = predictor.tag(groups, [0] * len(groups))  # windows of one text: context flows between them
            windows_done += len(groups)
            done = keep[-1][0] + keep[-1][1]
            starts.append(np.fromiter((s for _, s, _ in words[:done]), dtype=np.int64, count=done))
            ends.append(np.fromiter((e for _, _, e in words[:done]), dtype=np.int64, count=done))
            label_ids.extend(np.fromiter((ids[x] for x in t.labels), dtype=np.int16, count=len(t.labels))
                             for t in tagged)
            scores.extend(t.scores.astype(np.float32) for t in tagged)
            words_done += done
        else:
            done = 0
        carry, carry_counts = words[done:], counts_all[done:]
        if progress is not None:
            progress(hi, len(text), words_done)
    # tag() counted every window as a document: this text is one
    predictor.stats.documents -= max(windows_done - 1, 0) if windows_done else -1
    if not starts:
        return []
    first_char, last_char = np.concatenate(starts), np.concatenate(ends)
    labels, probs = names[np.concatenate(label_ids)].tolist(), np.concatenate(scores)
    found = []
    for first, stop, kind in word_spans(labels):
        start, end = int(first_char[first]), int(last_char[stop - 1])
        found.append({"start": start, "end": end, "type": kind, "text": text[start:end],
                      "score": round(float(np.mean(probs[first:stop])), 4)})
    return found
