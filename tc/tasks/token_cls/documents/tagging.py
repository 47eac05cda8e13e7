"""Predicting mentions on documents: sentences out of each passage, entities back as character spans.

Documents are tagged **sentence by sentence**: each passage is cut with the documents package's sentence
rule (``sentence_spans``, the same sentences ``tc run`` trains and evaluates on for document data), and
every sentence's text goes through ``Predictor.predict`` as it is, with its document's index, so a
model trained with ``context_tokens`` is fed the neighbouring sentences of the same document as in
training (without context, a sentence gives exactly what ``tc predict`` gives for that text as plain
JSONL; a sentence of megabytes takes the long-document path), and its entities move by the sentence's
offset into ``Document.text``. Predicted mentions *replace* the document's own (gold) mentions;
everything else a format keeps (ids, passages, text, PubTator relation lines, BioC infons and
relations) stays as read.

``tag_documents`` does it with a synchronous ``predict`` (``tc predict``); ``sentence_pieces`` and
``attach`` are its two halves, for callers that run the model in between (``tc serve``'s batcher).
``read_text_documents`` / ``render_documents`` move documents from and to a string, for HTTP bodies.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from tc.tasks.token_cls.documents.align import sentence_spans
from tc.tasks.token_cls.documents.formats import detect_format
from tc.tasks.token_cls.documents.model import Document, Mention, with_mentions

__all__ = ["Piece", "attach", "keep_scores", "read_text_documents", "render_documents", "revise_entities",
           "sentence_pieces", "tag_documents"]

Piece = tuple[int, int, str]
"""``(document index, start in Document.text, sentence text)``: one text for the model."""
PredictFn = Callable[..., list[list[dict[str, Any]]]]
"""``Predictor.predict(texts, documents)``: each sentence's document is passed, for document context."""


def keep_scores(entities: Sequence[dict[str, Any]], min_score: float) -> list[dict[str, Any]]:
    """Entities scoring at least ``min_score`` (``--min-score`` of ``tc predict`` and ``tc serve``)."""
    return [e for e in entities if e["score"] >= min_score]


def sentence_pieces(docs: Sequence[Document]) -> list[Piece]:
    """Every sentence of every document, in document order (gold mentions play no part: prediction
    must see the words it would see on unannotated text)."""
    return [(index, start, doc.text[start:end]) for index, doc in enumerate(docs)
            for start, end in sentence_spans(doc)]


def attach(docs: Sequence[Document], pieces: Sequence[Piece], results: Sequence[Sequence[dict[str, Any]]],
           min_score: float = 0.0, rules: Collection[str] = ()) -> list[Document]:
    """Copies of ``docs`` carrying the entities predicted for ``pieces`` as mentions (with scores), revised
    by the document ``rules`` (``rules.py``; before ``min_score`` is applied, so that a kept mention's
    type can still come from a long form scoring under it)."""
    if len(results) != len(pieces):
        raise ValueError(f"{len(results)} results for {len(pieces)} sentences")
    found: list[list[Mention]] = [[] for _ in docs]
    for (index, base, _), entities in zip(pieces, results, strict=True):
        text = docs[index].text
        for e in entities:
            start, end = base + e["start"], base + e["end"]
            found[index].append(Mention(start, end, e["type"], text[start:end], score=e["score"]))
    tagged = [with_mentions(doc, mentions) for doc, mentions in zip(docs, found, strict=True)]
    if rules:
        from tc.tasks.token_cls.documents.rules import apply_rules

        tagged = [apply_rules(doc, rules) for doc in tagged]
    if min_score > 0:
        tagged = [with_mentions(d, [m for m in d.mentions if m.score is None or m.score >= min_score])
                  for d in tagged]
    return tagged


def tag_documents(predict: PredictFn, docs: Sequence[Document], min_score: float = 0.0,
                  rules: Collection[str] = ()) -> list[Document]:
    """``docs`` with predicted mentions in place of their own (``predict``: ``Predictor.predict``), revised
    by the document ``rules``."""
    pieces = sentence_pieces(docs)
    results = predict([text for _, _, text in pieces], [index for index, _, _ in pieces]) if pieces else []
    return attach(docs, pieces, results, min_score, rules)


def revise_entities(text: str, entities: Sequence[dict[str, Any]], rules: Collection[str],
                    min_score: float = 0.0) -> list[dict[str, Any]]:
    """``tc predict``'s entity objects of one plain text (a JSONL ``text`` record) revised by the
    document ``rules``, the text being one document; then ``min_score`` applied."""
    if rules:
        from tc.tasks.token_cls.documents.rules import apply_rules

        doc = Document.from_text("text", text, [Mention(e["start"], e["end"], e["type"], e["text"],
                                                        score=e["score"]) for e in entities])
        entities = entity_dicts(apply_rules(doc, rules))
    return keep_scores(entities, min_score)


def entity_dicts(doc: Document) -> list[dict[str, Any]]:
    """A document's mentions as ``tc predict``'s entity objects (start, end, type, text, score)."""
    return [{"start": m.start, "end": m.end, "type": m.type, "text": doc.text[m.start : m.end], "score": m.score,
             **({"rule": m.rule} if m.rule is not None else {})} for m in doc.mentions]


_SUFFIX = {"pubtator": ".pubtator", "bioc_xml": ".xml", "bioc_json": ".bioc.json", "jsonl": ".jsonl"}
STRING_FORMATS = tuple(_SUFFIX)
"""Formats that fit in one string (BRAT needs a ``.txt`` and an ``.ann`` per document)."""


def read_text_documents(text: str, fmt: str, name: str = "document") -> list[Document]:
    """Documents of ``text`` in ``fmt`` (one of ``STRING_FORMATS``), through the format's own reader;
    errors name ``name`` instead of the temporary file. A ``text`` that is not valid Unicode (a lone
    surrogate, from a ``\\udc80`` escape in the JSON that carried it) is a DataError too: no file holds it."""
    from tc.core.errors import DataError
    from tc.tasks.token_cls.textio import check_unicode

    spec = detect_format(name, fmt)
    if spec.name not in _SUFFIX:
        raise DataError(f"{name}: format {spec.name} does not fit in one text (valid: {', '.join(_SUFFIX)})")
    check_unicode(text, name, "the text")
    with tempfile.TemporaryDirectory(prefix="tc-doc-") as folder:
        path = Path(folder) / f"input{_SUFFIX[spec.name]}"
        path.write_bytes(text.encode("utf-8"))
        try:
            docs = spec.read(path)
        except DataError as exc:
            raise DataError(str(exc).replace(str(path), name)) from None
    for doc in docs:
        doc.source = name
    return docs


def render_documents(docs: Sequence[Document], fmt: str) -> str:
    """``docs`` written in ``fmt`` (one of ``STRING_FORMATS``), as the file would hold them."""
    spec = detect_format("document", fmt)
    with tempfile.TemporaryDirectory(prefix="tc-doc-") as folder:
        path = Path(folder) / f"out{_SUFFIX[spec.name]}"
        spec.write(path, list(docs))
        return path.read_bytes().decode("utf-8")
