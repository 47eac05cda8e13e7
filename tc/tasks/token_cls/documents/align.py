"""From documents to labelled words and back, keeping exact character offsets.

Rules (documented here because training and scoring depend on them):

* **Sentences**: each passage (a PubTator title, an abstract, a BioC passage) is split on its own, so a
  title is always its own sentence. Inside a passage a sentence ends at a line break, or at ``.``,
  ``!`` or ``?`` (closing quotes/brackets allowed after it) followed by whitespace and an uppercase
  letter or a digit (opening quotes/brackets allowed before it), except after a common abbreviation
  (``e.g.``, ``i.e.``, ``et al.``, ``Fig.``, ``vs.``, ... see ``ABBREVIATIONS``) or a single letter
  (initials, ``E. Coli``). A split never falls inside a mention.
* **Words**: BERT's basic tokenizer (``spans.split_words``), then cut at every mention boundary that
  falls inside a word ("Naloxone-induced", "antihypertensive"), so every mention is a whole number of
  words. ``split_at_mentions=False`` (for scoring without giving gold boundaries to the tokenizer)
  skips both the cuts and the sentence protection, and labels every word a mention touches.
* **Overlaps** (a flat tagger holds one label per word): keep the longest mention, then the earliest;
  the others are dropped and counted as ``duplicate`` (same span and type), ``same_span`` (same span,
  other type), ``nested`` (inside a kept one) or ``crossing``.
* **Discontinuous** mentions are labelled as their whole span (first start to last end) and counted.

``documents_to_sentences`` gives an ``AlignedCorpus`` (``DocSentence`` rows that ``TokenClsDataset``
takes as they are, plus an ``AlignReport``); ``spans_from_labels`` turns one label per word back into
documents carrying the predicted mentions as character spans.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tc.tasks.token_cls.documents.model import Document, Mention, with_mentions
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.spans import split_words, word_spans

__all__ = ["ABBREVIATIONS", "AlignReport", "AlignedCorpus", "DocSentence", "documents_to_sentences",
           "resolve_overlaps", "sentence_spans", "spans_from_labels"]

ABBREVIATIONS = frozenset((
    "e.g", "i.e", "al", "fig", "figs", "vs", "cf", "approx", "ca", "dr", "mr", "mrs", "ms", "prof", "no", "nos",
    "vol", "eq", "eqs", "ref", "refs", "resp", "viz", "st", "jr", "sr", "inc", "ltd", "co", "sp", "spp", "ssp",
    "var", "ed", "eds", "pp", "tab", "suppl", "dept", "univ", "min", "max", "wt",
))
"""Lowercased words that a ``.`` after them does not end a sentence with (``et al.``: ``al``)."""
_CLOSERS = "\"')]}”’»"
_OPENERS = "\"'([{“‘«"
_WHITESPACE = re.compile(r"\s+")
EXAMPLES = 5
"""How many mentions not aligned the report quotes."""


@dataclass(frozen=True, slots=True)
class DocSentence(Sentence):
    """A sentence of a document: ``Sentence`` plus where each word sits in ``Document.text``."""

    doc_id: str = ""
    doc_index: int = 0
    index: int = 0
    offsets: tuple[tuple[int, int], ...] = ()

    def where(self, i: int = 0) -> str:
        at = f", offset {self.offsets[i][0]}" if i < len(self.offsets) else ""
        return f"{self.source}: document {self.doc_id}, sentence {self.index + 1}, word {i + 1}{at}"


@dataclass
class AlignReport:
    """What aligning a corpus did: ``aligned`` of ``mentions`` are exactly the spans their labels give."""

    documents: int = 0
    sentences: int = 0
    words: int = 0
    mentions: int = 0
    aligned: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    discontinuous: int = 0
    off_boundary: int = 0
    ignored_types: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def describe(self, split: str = "data") -> str:
        """One line for the run log: ``train: 9385 of 9385 mentions aligned exactly (...)``."""
        notes = []
        if self.dropped:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.dropped.items()))
            notes.append(f"{sum(self.dropped.values())} overlapping dropped (longest kept: {kinds})")
        if self.off_boundary:
            notes.append(f"{self.off_boundary} not on word boundaries, e.g. {self.examples[0]}")
        if self.discontinuous:
            notes.append(f"{self.discontinuous} discontinuous labelled as their whole span")
        if self.ignored_types:
            notes.append("ignored types: " + ", ".join(f"{k} {n}" for k, n in sorted(self.ignored_types.items())))
        tail = f"; {'; '.join(notes)}" if notes else ""
        return (f"{split}: {self.aligned} of {self.mentions} mentions aligned exactly "
                f"({self.documents} documents, {self.sentences} sentences, {self.words} words{tail})")

    def to_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "sentences": self.sentences, "words": self.words,
                "mentions": self.mentions, "aligned": self.aligned, "dropped": dict(self.dropped),
                "discontinuous": self.discontinuous, "off_boundary": self.off_boundary,
                "ignored_types": dict(self.ignored_types), "examples": list(self.examples)}


@dataclass
class AlignedCorpus:
    """Documents, their sentences in document order, and the report; ``to_documents`` is the way back."""

    documents: list[Document]
    sentences: list[DocSentence]
    report: AlignReport

    def to_documents(self, labels: Sequence[Sequence[str]],
                     scores: Sequence[Sequence[float]] | None = None) -> list[Document]:
        return spans_from_labels(self, labels, scores)


# ---------------------------------------------------------------------------------------------
# Overlaps and sentence splitting
# ---------------------------------------------------------------------------------------------


def resolve_overlaps(mentions: Sequence[Mention]) -> tuple[list[Mention], Counter[str]]:
    """Mentions a flat tagger can hold (longest first, then earliest; sorted by start) and the dropped
    ones counted by kind."""
    order = sorted(range(len(mentions)), key=lambda i: (mentions[i].start - mentions[i].end, mentions[i].start, i))
    kept: list[Mention] = []
    dropped: Counter[str] = Counter()
    for i in order:
        m = mentions[i]
        hit = next((k for k in kept if k.start < m.end and m.start < k.end), None)
        if hit is None:
            kept.append(m)
        elif (hit.start, hit.end) == (m.start, m.end):
            dropped["duplicate" if hit.type == m.type else "same_span"] += 1
        else:
            dropped["nested" if hit.start <= m.start and m.end <= hit.end else "crossing"] += 1
    return sorted(kept, key=lambda m: (m.start, m.end)), dropped


class _Protected:
    """Answers "does a mention cover the gap between ``end`` and ``start``?" in O(log n)."""

    def __init__(self, mentions: Sequence[Mention]) -> None:
        spans = sorted((m.start, m.end) for m in mentions)
        self.starts = [s for s, _ in spans]
        self.max_end = list(itertools.accumulate((e for _, e in spans), max))

    def covers(self, end: int, start: int) -> bool:
        i = bisect.bisect_left(self.starts, start)
        return i > 0 and self.max_end[i - 1] > end


def _ends_sentence(text: str, gap_start: int, gap_end: int) -> bool:
    if "\n" in text[gap_start:gap_end]:
        return True
    j = gap_start
    while j > 0 and text[j - 1] in _CLOSERS:
        j -= 1
    if j == 0 or text[j - 1] not in ".!?":
        return False
    k = gap_end
    while k < len(text) and text[k] in _OPENERS:
        k += 1
    if k == len(text) or not (text[k].isupper() or text[k].isdigit()):
        return False
    if text[j - 1] == ".":
        i = j - 1
        while i > 0 and not text[i - 1].isspace():
            i -= 1
        word = text[i : j - 1].lstrip(_OPENERS).lower()
        if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    return True


def sentence_spans(doc: Document, mentions: Sequence[Mention] = ()) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence in ``doc.text`` (the module's rule; never inside ``mentions``),
    without surrounding whitespace; whitespace-only passages give none."""
    protected = _Protected(mentions)
    spans: list[tuple[int, int]] = []
    for passage in doc.passages:
        text, base = passage.text, passage.offset
        gaps = [match.span() for match in _WHITESPACE.finditer(text)]
        start, end = 0, len(text)
        if gaps and gaps[0][0] == 0:
            start = gaps.pop(0)[1]
        if gaps and gaps[-1][1] == len(text):
            end = gaps.pop()[0]
        if start >= end:
            continue
        for g0, g1 in gaps:
            if _ends_sentence(text, g0, g1) and not protected.covers(base + g0, base + g1):
                spans.append((base + start, base + g0))
                start = g1
        spans.append((base + start, base + end))
    return spans


# ---------------------------------------------------------------------------------------------
# Words and labels
# ---------------------------------------------------------------------------------------------


def cut_words(text: str, span: tuple[int, int], cuts: Sequence[int]) -> list[tuple[str, int, int]]:
    """Words of ``text[span]`` in document offsets, cut at every position of ``cuts`` inside a word."""
    base = span[0]
    out: list[tuple[str, int, int]] = []
    for word, s, e in split_words(text[span[0] : span[1]]):
        s, e = s + base, e + base
        inner = cuts[bisect.bisect_right(cuts, s) : bisect.bisect_left(cuts, e)]
        if not inner:
            out.append((word, s, e))
            continue
        for a, b in itertools.pairwise((s, *inner, e)):
            out.append((text[a:b], a, b))
    return out


def _label_document(doc: Document, mentions: Sequence[Mention], words: Sequence[tuple[str, int, int]],
                    sentence_of: Sequence[int], report: AlignReport) -> list[str]:
    labels = ["O"] * len(words)
    starts = [s for _, s, _ in words]
    ends = [e for _, _, e in words]
    for m in mentions:
        first = bisect.bisect_right(ends, m.start)
        stop = bisect.bisect_left(starts, m.end)
        crossing = False
        if first < stop:
            same = first + 1
            while same < stop and sentence_of[same] == sentence_of[first]:
                same += 1
            crossing = same < stop
            stop = same
        if first >= stop or any(labels[i] != "O" for i in range(first, stop)):
            _not_aligned(doc, m, "no word of its own", report)
            continue
        labels[first] = f"B-{m.type}"
        for i in range(first + 1, stop):
            labels[i] = f"I-{m.type}"
        if crossing:
            _not_aligned(doc, m, "crosses a sentence or passage boundary", report)
        elif starts[first] != m.start or ends[stop - 1] != m.end:
            _not_aligned(doc, m, f"words give {starts[first]}-{ends[stop - 1]}", report)
        else:
            report.aligned += 1
    return labels


def _not_aligned(doc: Document, m: Mention, reason: str, report: AlignReport) -> None:
    report.off_boundary += 1
    if len(report.examples) < EXAMPLES:
        report.examples.append(f"document {doc.id} mention {m.start}-{m.end} {doc.text[m.start:m.end]!r}: {reason}")


def documents_to_sentences(docs: Sequence[Document], *, types: Collection[str] | None = None, labeled: bool = True,
                           split_at_mentions: bool = True) -> AlignedCorpus:
    """Sentences (``DocSentence``, IOB2 labels) of ``docs`` in document order, and the alignment report.

    ``types`` keeps only mentions of those types (the rest are counted as ignored); ``labeled=False``
    ignores mentions altogether (prediction input: words exactly as at inference).
    """
    report = AlignReport(documents=len(docs))
    sentences: list[DocSentence] = []
    for doc_index, doc in enumerate(docs):
        mentions: list[Mention] = []
        if labeled:
            for m in doc.mentions:
                if types is None or m.type in types:
                    mentions.append(m)
                else:
                    report.ignored_types[m.type] += 1
            report.mentions += len(mentions)
            report.discontinuous += sum(1 for m in mentions if m.discontinuous)
            mentions, dropped = resolve_overlaps(mentions)
            report.dropped.update(dropped)
        guide = mentions if split_at_mentions else []
        cuts = sorted({p for m in guide for p in (m.start, m.end)})
        words: list[tuple[str, int, int]] = []
        sentence_of: list[int] = []
        for number, span in enumerate(sentence_spans(doc, guide)):
            found = cut_words(doc.text, span, cuts)
            words.extend(found)
            sentence_of.extend([number] * len(found))
        labels = _label_document(doc, mentions, words, sentence_of, report) if labeled else None
        groups = itertools.groupby(range(len(words)), key=sentence_of.__getitem__)
        for index, (_, group) in enumerate(groups):
            rows = list(group)
            sentences.append(DocSentence(
                words=tuple(words[i][0] for i in rows),
                labels=None if labels is None else tuple(labels[i] for i in rows),
                source=doc.source, line=0, per_line=False, doc_id=doc.id, doc_index=doc_index, index=index,
                offsets=tuple((words[i][1], words[i][2]) for i in rows),
            ))
        report.words += len(words)
    report.sentences = len(sentences)
    return AlignedCorpus(list(docs), sentences, report)


def spans_from_labels(corpus: AlignedCorpus, labels: Sequence[Sequence[str]],
                      scores: Sequence[Sequence[float]] | None = None) -> list[Document]:
    """Copies of ``corpus.documents`` carrying the mentions that ``labels`` (one IOB2 label per word of
    each sentence, as ``TokenClsDataset.word_predictions`` gives) mark, as character spans; ``scores``
    (per word) make each mention's score the mean over its words."""
    if len(labels) != len(corpus.sentences):
        raise ValueError(f"{len(labels)} label sequences for {len(corpus.sentences)} sentences")
    found: list[list[Mention]] = [[] for _ in corpus.documents]
    for row, (sentence, sequence) in enumerate(zip(corpus.sentences, labels, strict=True)):
        if len(sequence) != len(sentence.offsets):
            raise ValueError(f"sentence {row} ({sentence.where()}): {len(sequence)} labels for "
                             f"{len(sentence.offsets)} words")
        text = corpus.documents[sentence.doc_index].text
        for first, stop, kind in word_spans(sequence):
            start, end = sentence.offsets[first][0], sentence.offsets[stop - 1][1]
            score = None
            if scores is not None:
                values = scores[row][first:stop]
                score = round(float(sum(values)) / len(values), 4)
            found[sentence.doc_index].append(Mention(start, end, kind, text[start:end], score=score))
    return [with_mentions(doc, mentions) for doc, mentions in zip(corpus.documents, found, strict=True)]
