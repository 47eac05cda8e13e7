"""Document rules on labelled words: IOB/CoNLL sentences whose file marks documents with ``-DOCSTART-``.

BC5CDR-chem's TSV files mark each abstract (``data/README.md``), so ``tc run`` on them (``make demo``)
can take the same document-level decisions as on PubTator documents (``documents/rules.py``): each
document's sentences are laid out as one text (words joined by single spaces, sentences too), its
predicted labels become mentions, the rules revise them, and the revised mentions become labels again.
A rule's mention that does not start and end on word edges of that layout is not taken (the words keep
their labels): a label belongs to a whole word. A source without ``-DOCSTART-`` (``doc_index`` None)
has no documents, so nothing changes there (NCBI-disease's files are one such source).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import groupby

from tc.tasks.token_cls.documents.model import Document, Mention
from tc.tasks.token_cls.documents.rules import apply_rules

__all__ = ["label_spans", "revise_labels"]


def label_spans(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(first word, last word + 1, type)`` of each entity in IOB2 labels (an ``I-X`` that does not
    continue an ``X`` starts one, as conlleval reads it)."""
    spans: list[tuple[int, int, str]] = []
    for i, label in enumerate(labels):
        if label == "O" or len(label) < 3:
            continue
        prefix, kind = label[0], label[2:]
        if prefix == "I" and spans and spans[-1][1] == i and spans[-1][2] == kind:
            spans[-1] = (spans[-1][0], i + 1, kind)
        else:
            spans.append((i, i + 1, kind))
    return spans


def revise_labels(words: Sequence[Sequence[str]], labels: Sequence[Sequence[str]],
                  documents: Sequence[int | None], rules: Collection[str]) -> list[list[str]]:
    """``labels`` (one list per sentence of ``words``) revised by ``rules`` document by document;
    ``documents[i]`` is sentence ``i``'s document (None: not in a marked document, left as it is)."""
    out = [list(sentence) for sentence in labels]
    if not rules:
        return out
    for key, run in groupby(range(len(words)), key=lambda i: documents[i]):
        if key is not None:
            _revise_document(words, out, list(run), rules)
    return out


def _revise_document(words: Sequence[Sequence[str]], labels: list[list[str]], indexes: list[int],
                     rules: Collection[str]) -> None:
    parts: list[str] = []
    where: list[tuple[int, int, int, int]] = []  # (sentence, word, start, end) in the document text
    sentences: list[tuple[int, int]] = []
    at = 0
    for s in indexes:
        first = at
        for w, word in enumerate(words[s]):
            if parts:
                parts.append(" ")
                at += 1
            where.append((s, w, at, at + len(word)))
            parts.append(word)
            at += len(word)
        sentences.append((first + (1 if first and words[s] else 0), at))
    text = "".join(parts)
    by_sentence = {s: [p for p in where if p[0] == s] for s in indexes}
    mentions = []
    for s in indexes:
        for first, last, kind in label_spans(labels[s]):
            start, end = by_sentence[s][first][2], by_sentence[s][last - 1][3]
            mentions.append(Mention(start, end, kind, text[start:end]))
    revised = apply_rules(Document.from_text("doc", text, mentions), rules, sentences)
    if revised.mentions == mentions:
        return
    starts = {p[2]: p for p in where}
    ends = {p[3]: p for p in where}
    for m in revised.mentions:
        if m.rule is None:
            continue
        first_word, last_word = starts.get(m.start), ends.get(m.end)
        if first_word is None or last_word is None or first_word[0] != last_word[0]:
            continue  # not on word edges, or across two sentences: no label can say it
        s = first_word[0]
        for w in range(first_word[1], last_word[1] + 1):
            labels[s][w] = ("B-" if w == first_word[1] else "I-") + m.type
    _drop_replaced(labels, indexes, by_sentence, revised.mentions, mentions)


def _drop_replaced(labels: list[list[str]], indexes: list[int], by_sentence: dict[int, list[tuple[int, int, int, int]]],
                   revised: Sequence[Mention], before: Sequence[Mention]) -> None:
    """Words of a mention the rules removed (the long-form rule replaces mentions inside the long form) and
    that no revised mention covers go back to ``O``."""
    kept = [(m.start, m.end) for m in revised]
    for m in before:
        if (m.start, m.end) in kept:
            continue
        for s in indexes:
            for _, w, start, end in by_sentence[s]:
                if m.start <= start and end <= m.end and not any(a <= start and end <= b for a, b in kept):
                    labels[s][w] = "O"
