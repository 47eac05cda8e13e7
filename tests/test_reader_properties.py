"""Properties of the document readers on generated inputs (hypothesis, in-process).

Whatever the text, ids and offsets, reading a PubTator, JSONL, BRAT or BioC input (and writing what was
read, in every format) either succeeds or raises the project's user error (``TcError``), never anything
else; and a valid document read and written back in its own format gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import bioc
import bioc.biocjson
import bioc.biocxml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.core.errors import TcError
from tc.tasks.token_cls.documents import read_documents, write_documents

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OUT = {"pubtator": "o.pubtator", "jsonl": "o.jsonl", "bioc_xml": "o.xml", "bioc_json": "o.bioc.json", "brat": "ob"}

any_text = st.text(st.characters(codec=None), max_size=30)
"""Any code points, lone surrogates and controls included (what a JSON escape can give)."""
valid_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\t"), max_size=20)
xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
                   max_size=20) | st.sampled_from(["Aspirin\r\nhelps", "a\tb"])
offset = st.integers(-3, 40) | st.sampled_from(["-1", "abc", "1.5", " 3", "", "０"])
ident = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="|\t\n\r"), min_size=1, max_size=6)


def _outcome(path: Path) -> None:
    """Read ``path`` and write what was read in every format: success or a TcError, nothing else."""
    try:
        docs = read_documents(path)
    except TcError:
        return
    for fmt, name in OUT.items():
        with contextlib.suppress(TcError):
            write_documents(path.parent / name, docs, fmt)


_SCRATCH = tempfile.TemporaryDirectory(prefix="tc-reader-properties-")
"""Removed when the module is done; each example gets its own folder in it."""


def _file(name: str, content: str | bytes) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
    return path


# ---------------------------------------------------------------------------------------------------
# Never a traceback
# ---------------------------------------------------------------------------------------------------

mention_line = st.tuples(ident, offset, offset, line_text, line_text).map(lambda t: "\t".join(map(str, t)))


@PROPERTY
@given(pmid=ident, title=line_text, abstract=line_text,
       tail=st.lists(mention_line | st.sampled_from(["", "1\tCID\tD1\tD2", "x"]), max_size=4))
def test_pubtator_reads_or_refuses(pmid: str, title: str, abstract: str, tail: list[str]) -> None:
    _outcome(_file("in.pubtator", "\n".join([f"{pmid}|t|{title}", f"{pmid}|a|{abstract}", *tail]) + "\n"))


entity = st.fixed_dictionaries({"start": offset, "end": offset, "type": any_text}, optional={"text": any_text})
record = st.fixed_dictionaries({"text": any_text}, optional={"id": any_text | st.integers(), "entities":
                                st.lists(entity | st.integers(), max_size=3)})


@PROPERTY
@given(records=st.lists(record, min_size=1, max_size=3), ascii_only=st.booleans())
def test_jsonl_reads_or_refuses(records: list[dict[str, object]], ascii_only: bool) -> None:
    _outcome(_file("in.jsonl", "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)))


@PROPERTY
@given(text=valid_text, lines=st.lists(st.tuples(offset, offset, line_text).map(
    lambda t: f"T1\tChemical {t[0]} {t[1]}\t{t[2]}") | line_text, max_size=3))
def test_brat_reads_or_refuses(text: str, lines: list[str]) -> None:
    path = _file("a.txt", text)
    (path.parent / "a.ann").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _outcome(path)


json_leaf = st.none() | st.booleans() | st.integers(-2, 50) | any_text
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=2)
                          | st.dictionaries(st.sampled_from(["offset", "text", "id", "infons", "type"]), inner,
                                            max_size=3), max_leaves=6)


def _annotation(start: object, length: object, text: object, kind: object) -> dict[str, object]:
    return {"id": "T1", "infons": {"type": kind}, "text": text, "locations": [{"offset": start, "length": length}]}


@PROPERTY
@given(text=any_text | st.none() | st.integers(), start=json_value, length=json_value, kind=json_value,
       passage_offset=json_value, doc_id=json_value, annotations=json_value)
def test_bioc_json_reads_or_refuses(text: object, start: object, length: object, kind: object,
                                    passage_offset: object, doc_id: object, annotations: object) -> None:
    passage = {"offset": passage_offset, "infons": {}, "text": text, "sentences": [], "relations": [],
               "annotations": [_annotation(start, length, text, kind)] if annotations is None else annotations}
    doc = {"id": doc_id, "infons": {}, "passages": [passage], "annotations": [], "relations": []}
    _outcome(_file("in.bioc.json", json.dumps({"source": "", "date": "", "key": "", "infons": {},
                                               "documents": [doc]})))


@PROPERTY
@given(offset_text=st.sampled_from(["0", "x", "-1", "", " 2 "]), start=st.sampled_from(["0", "a", "-4", "99"]),
       length=st.sampled_from(["1", "", "2.5"]), text=xml_text, root=st.sampled_from(["collection", "html"]))
def test_bioc_xml_reads_or_refuses(offset_text: str, start: str, length: str, text: str, root: str) -> None:
    from xml.sax.saxutils import escape, quoteattr

    content = (f"<?xml version='1.0' encoding='utf-8'?>\n<{root}><source/><date/><key/><document><id>1</id>"
               f"<passage><offset>{escape(offset_text)}</offset><text>{escape(text)}</text>"
               f"<annotation id='T1'><infon key='type'>X</infon><location offset={quoteattr(start)} "
               f"length={quoteattr(length)}/><text>{escape(text[:1])}</text></annotation></passage></document>"
               f"</{root}>\n")
    _outcome(_file("in.xml", content))


# ---------------------------------------------------------------------------------------------------
# Valid documents come back byte for byte
# ---------------------------------------------------------------------------------------------------


def _same_bytes(path: Path, fmt: str) -> None:
    docs = read_documents(path)
    out = path.parent / OUT[fmt]
    write_documents(out, docs, fmt)
    assert out.read_bytes() == path.read_bytes()


@st.composite
def spans(draw: st.DrawFn, text: str, max_size: int = 3) -> list[tuple[int, int]]:
    """Non-empty ``[start, end)`` spans of ``text`` whose covered text has no tab or line break."""
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        if not text:
            break
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, len(text)))
        if not any(c in text[start:end] for c in "\t\n\r"):
            out.append((start, end))
    return out


@PROPERTY
@given(data=st.data(), title=line_text, abstract=st.none() | line_text, crlf=st.booleans(), bom=st.booleans(),
       final=st.booleans(), relation=st.booleans())
def test_valid_pubtator_round_trips(data: st.DataObject, title: str, abstract: str | None, crlf: bool, bom: bool,
                                    final: bool, relation: bool) -> None:
    text = title if abstract is None else f"{title} {abstract}"
    lines = [f"12|t|{title}"] + ([] if abstract is None else [f"12|a|{abstract}"])
    lines += [f"12\t{s}\t{e}\t{text[s:e]}\tChemical" for s, e in data.draw(spans(text))]
    lines += ["12\tCID\tD1\tD2"] if relation else []
    end = "\r\n" if crlf else "\n"
    content = ("\ufeff" if bom else "") + end.join(lines) + (end if final else "")
    _same_bytes(_file("in.pubtator", content), "pubtator")


@PROPERTY
@given(data=st.data(), texts=st.lists(valid_text, min_size=1, max_size=3), ascii_only=st.booleans())
def test_valid_jsonl_round_trips(data: st.DataObject, texts: list[str], ascii_only: bool) -> None:
    lines = []
    for number, text in enumerate(texts):
        entities = [{"start": s, "end": e, "type": "Chemical", "text": text[s:e]} for s, e in data.draw(spans(text))]
        lines.append(json.dumps({"id": f"d{number}", "text": text, "entities": entities}, ensure_ascii=ascii_only))
    _same_bytes(_file("in.jsonl", "\n".join(lines) + "\n"), "jsonl")


@PROPERTY
@given(data=st.data(), text=valid_text)
def test_valid_brat_round_trips(data: st.DataObject, text: str) -> None:
    path = _file("a.txt", text)
    lines = [f"T{i}\tChemical {s} {e}\t{text[s:e]}" for i, (s, e) in enumerate(data.draw(spans(text)), start=1)]
    (path.parent / "a.ann").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    docs = read_documents(path)
    out = path.parent / "out"
    write_documents(out, docs, "brat")
    assert (out / "a.txt").read_bytes() == path.read_bytes()
    assert (out / "a.ann").read_bytes() == (path.parent / "a.ann").read_bytes()


def _collection(data: st.DataObject, texts: list[str]) -> bioc.BioCCollection:
    collection = bioc.BioCCollection()
    collection.source, collection.date, collection.key = "tc", "2026-01-01", "k"
    document = bioc.BioCDocument()
    document.id = "d1"
    at = 0
    for number, text in enumerate(texts):
        passage = bioc.BioCPassage.of_text(text, at)
        for s, e in data.draw(spans(text)):
            ann = bioc.BioCAnnotation()
            ann.id, ann.text, ann.infons = f"A{number}{s}", text[s:e], {"type": "Chemical"}
            ann.add_location(bioc.BioCLocation(at + s, e - s))
            passage.add_annotation(ann)
        document.add_passage(passage)
        at += len(text) + 1
    collection.add_document(document)
    return collection


@PROPERTY
@given(data=st.data(), texts=st.lists(xml_text.filter(lambda t: t.strip() == t), min_size=1, max_size=3),
       pretty=st.booleans())
def test_valid_bioc_xml_round_trips(data: st.DataObject, texts: list[str], pretty: bool) -> None:
    content = bioc.biocxml.dumps(_collection(data, texts), pretty_print=pretty)
    _same_bytes(_file("in.xml", content), "bioc_xml")


@PROPERTY
@given(data=st.data(), texts=st.lists(valid_text, min_size=1, max_size=3), indent=st.sampled_from([None, 2]))
def test_valid_bioc_json_round_trips(data: st.DataObject, texts: list[str], indent: int | None) -> None:
    content = bioc.biocjson.dumps(_collection(data, texts), indent=indent)
    _same_bytes(_file("in.bioc.json", content), "bioc_json")
