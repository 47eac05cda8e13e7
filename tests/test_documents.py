"""Documents in, documents out: every format round-trips (byte-identically where it can), offsets are
checked, and every gold mention survives documents -> words -> labels -> character spans.

The BioC files are written by the real ``bioc`` package; the PubTator corpus is the shipped BC5CDR.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import bioc
import bioc.biocjson
import bioc.biocxml
import pytest

from tc.core.errors import DataError
from tc.tasks.token_cls.documents import (
    Document,
    Mention,
    detect_format,
    documents_to_sentences,
    find_document_split,
    read_documents,
    spans_from_labels,
    write_documents,
)

ROOT = Path(__file__).resolve().parents[1]
CDR = ROOT / "data" / "BC5CDR-PubTator"
CDR_COUNTS = {"train": (5203, 4182), "devel": (5347, 4244), "test": (5385, 4424)}


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

