"""One chunk of input units in, the exact output text for them out.

Every way ``tc predict`` writes (stdout, a resumable file, one shard of many ranks) tags the same
chunks of ``--chunk-size`` consecutive units with :func:`render_chunk`. A chunk's batches, padding and
therefore its numbers depend only on the chunk, never on which process tags it or whether the run was
interrupted before it, which is why a resumed or sharded run writes byte-identical output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from tc.tasks.token_cls.corpus.readers import Block, Document, conll_line


@dataclass
class Tally:
    """What was tagged: units (documents or CoNLL sentences) and entities found."""

    units: int = 0
    entities: int = 0

    def add(self, other: Tally) -> None:
        self.units += other.units
        self.entities += other.entities


def render_chunk(predictor: Any, fmt: str, chunk: Sequence[Document | Block], min_score: float = 0.0
                 ) -> tuple[str, Tally]:
    """The output lines of ``chunk`` (one JSON line per document; CoNLL lines plus a label column);
    entities scoring below ``min_score`` are left out (CoNLL: their words labelled ``O``)."""
    if fmt == "conll":
        return _render_conll(predictor, chunk, min_score)  # type: ignore[arg-type]
    from tc.tasks.token_cls.documents.tagging import revise_entities

    docs: Sequence[Document] = chunk  # type: ignore[assignment]
    tally = Tally()
    lines = []
    for doc, found in zip(docs, predictor.predict([d.text for d in docs]), strict=True):
        spans = revise_entities(doc.text, found, predictor.document_rules, min_score)
        lines.append(json.dumps({**doc.record, "entities": spans}, ensure_ascii=False) + "\n")
        tally.units += 1
        tally.entities += len(spans)
    return "".join(lines), tally


def _conll_labels(predictor: Any, sentences: Sequence[Sequence[str]], min_score: float,
                  documents: Sequence[int]) -> list[list[str]]:
    """One label per token; with ``min_score``, entities scoring below it (the mean probability over
    their words, rounded as ``tc predict`` reports it) become ``O``."""
    from tc.tasks.token_cls.spans import word_spans

    if min_score <= 0.0:
        return predictor.predict_tokens(sentences, documents)
    out = []
    for tagged in predictor.tag(sentences, documents):
        labels = list(tagged.labels)
        for first, stop, _ in word_spans(labels):
            if round(float(tagged.scores[first:stop].mean()), 4) < min_score:
                labels[first:stop] = ["O"] * (stop - first)
        out.append(labels)
    return out


def _documents(blocks: Sequence[Block]) -> list[int]:
    """The document of each sentence block: a ``-DOCSTART-`` line starts the next one (as ``tc run`` reads
    CoNLL files, so a model trained with document context is fed the same neighbours; the context stops
    at the chunk's edges)."""
    keys: list[int] = []
    key = 0
    for block in blocks:
        if block.is_sentence:
            keys.append(key)
        key += block.docstart
    return keys


def _render_conll(predictor: Any, blocks: Sequence[Block], min_score: float = 0.0) -> tuple[str, Tally]:
    from tc.tasks.token_cls.spans import word_spans

    sentences = [b for b in blocks if b.is_sentence]
    documents = _documents(blocks)
    labels = iter(_conll_labels(predictor, [b.tokens for b in sentences], min_score, documents) if sentences else [])
    tally = Tally(units=len(sentences))
    lines = []
    for block in blocks:
        if not block.is_sentence:
            lines.append(block.lines[0] + "\n")
            continue
        predicted = next(labels)
        tally.entities += len(word_spans(predicted))
        lines.extend(conll_line(line, label) + "\n" for line, label in zip(block.lines, predicted, strict=True))
    return "".join(lines), tally


Render = Callable[[list[Any]], tuple[str, Tally]]
"""One chunk of units -> its output text and tally (``render_chunk`` with the predictor and format bound)."""


def stream(render: Render, chunks: Iterator[list[Any]], out: IO[str], after_chunk: Any = None) -> Tally:
    """Tag every chunk and write it to ``out`` (stdout, or a file nothing resumes); returns the tally."""
    total = Tally()
    for chunk in chunks:
        text, tally = render(chunk)
        out.write(text)
        total.add(tally)
        if after_chunk is not None:
            after_chunk(total)
    return total
