"""``tc predict`` on documents: PubTator, BioC XML, BioC JSON, BRAT and JSONL in, the same format out.

Every check runs the real ``tc predict`` on real files with the session's tiny model (conftest's
``model_dir``: this module's own copy).
The reference for predicted mentions is ``tc predict`` on plain JSONL whose texts are the documents'
sentences: a document's mentions must be exactly those entities, moved by each sentence's offset.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, read_jsonl, refused, run_tc

from tc.tasks.token_cls.documents import Document, Mention, read_documents, sentence_spans, write_documents

CDR_TEST = ROOT / "data" / "BC5CDR-PubTator" / "test.pubtator"
SUFFIX = {"pubtator": "pubtator", "bioc_xml": "xml", "bioc_json": "bioc.json", "jsonl": "jsonl"}
FORMATS = ("pubtator", "bioc_xml", "bioc_json", "brat", "jsonl")
DOCUMENTED = {"predict-doc-output-suffix", "predict-output-format-unknown", "predict-output-format-plain-input",
              "predict-whole-processes", "predict-whole-stdin", "predict-doc-output-exists",
              "predict-brat-output-is-input", "predict-brat-one-pair"}  # docs/errors.md rows tested here


@pytest.fixture(scope="module")
def pubtator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first six CDR test documents, as shipped (gold mentions and CID relation lines)."""
    blocks = CDR_TEST.read_text(encoding="utf-8").split("\n\n")[:6]
    path = tmp_path_factory.mktemp("docs_in") / "six.pubtator"
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


def source_in(fmt: str, pubtator: Path, folder: Path) -> Path:
    """The same documents in ``fmt`` (written by tc's own writers, gold mentions kept)."""
    if fmt == "pubtator":
        return pubtator
    path = folder / ("brat_in" if fmt == "brat" else f"six.{SUFFIX[fmt]}")
    write_documents(path, read_documents(pubtator), fmt)
    return path


def predict(model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tc predict`` without document rules: sentence for sentence what plain JSONL gives (the rules are
    test_document_rules_cli's)."""
    return run_tc("predict", "--model-dir", str(model_dir), "-q", *ONE_THREAD, "--document-rules", "none", *args)


def predicted(model_dir: Path, *args: str) -> None:
    proc = predict(model_dir, *args)
    assert proc.returncode == 0, proc.stderr


def reference(model_dir: Path, docs: list[Document], folder: Path, *args: str) -> dict[str, list[tuple[int, int, str]]]:
    """Per document id: the spans plain-JSONL ``tc predict`` finds in its sentences, in document offsets."""
    pieces = [(doc.id, start, doc.text[start:end]) for doc in docs for start, end in sentence_spans(doc)]
    source = folder / "sentences.jsonl"
    source.write_text("".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for _, _, text in pieces),
                      encoding="utf-8")
    out = folder / "sentences.tagged.jsonl"
    predicted(model_dir, "-i", str(source), "-o", str(out), "--overwrite", *args)
    found: dict[str, list[tuple[int, int, str]]] = {doc.id: [] for doc in docs}
    for (doc_id, base, _), record in zip(pieces, read_jsonl(out), strict=True):
        found[doc_id].extend((base + e["start"], base + e["end"], e["type"]) for e in record["entities"])
    return found


def spans(doc: Document) -> list[tuple[int, int, str]]:
    return [m.span for m in doc.mentions]


def score(mention: Mention) -> float:
    return mention.score if mention.score is not None else float(mention.infons["score"])


def layout(doc: Document) -> list[tuple[int, str]]:
    return [(p.offset, p.text) for p in doc.passages]


def without_mention_lines(text: str) -> list[str]:
    """PubTator lines other than mention lines (PMID<TAB>start<TAB>...)."""
    return [line for line in text.split("\n") if not (line.count("\t") >= 4 and line.split("\t")[1].isdigit())]


@pytest.mark.cli
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_comes_back_in_its_format_with_the_predicted_mentions(
        fmt: str, model_dir: Path, pubtator: Path, tmp_path: Path) -> None:
    source = source_in(fmt, pubtator, tmp_path)
    out = tmp_path / ("brat_out" if fmt == "brat" else f"tagged.{SUFFIX[fmt]}")
    extra = ("--output-format", "jsonl") if fmt == "jsonl" else ()  # JSONL into JSONL is otherwise plain
    predicted(model_dir, "-i", str(source), "-o", str(out), *extra)
    before, after = read_documents(source, fmt), read_documents(out, fmt)
    assert [d.id for d in after] == [d.id for d in before]
    assert [layout(d) for d in after] == [layout(d) for d in before]
    expected = reference(model_dir, before, tmp_path)
    assert sum(len(v) for v in expected.values()) > 5  # the model tags something: no vacuous comparison
    assert {d.id: spans(d) for d in after} == expected
    for doc in after:
        assert all(m.text == doc.text[m.start : m.end] for m in doc.mentions)
    if fmt in ("bioc_xml", "bioc_json", "jsonl"):  # the formats with a place for a score (BioC: an infon)
        assert all(0 < score(m) <= 1 for d in after for m in d.mentions)
    if fmt == "pubtator":  # text lines, blank lines and CID relation lines byte for byte
        assert without_mention_lines(out.read_text(encoding="utf-8")) == without_mention_lines(
            source.read_text(encoding="utf-8"))
        assert "\tCID\t" in out.read_text(encoding="utf-8")
    if fmt == "brat":
        for txt in source.glob("*.txt"):
            assert (out / txt.name).read_bytes() == txt.read_bytes()


@pytest.mark.cli
def test_pubtator_converts_to_bioc_xml_and_streams_in_any_chunking(model_dir: Path, pubtator: Path,
                                                                   tmp_path: Path) -> None:
    tagged = tmp_path / "tagged.pubtator"
    predicted(model_dir, "-i", str(pubtator), "-o", str(tagged))
    converted = tmp_path / "converted.data"
    predicted(model_dir, "-i", str(pubtator), "-o", str(converted), "--output-format", "bioc_xml")
    assert converted.read_text(encoding="utf-8").startswith("<?xml")
    same, bioc = read_documents(tagged), read_documents(converted, "bioc_xml")
    assert [(d.id, layout(d), spans(d)) for d in bioc] == [(d.id, layout(d), spans(d)) for d in same]
    one_by_one = tmp_path / "chunk1.pubtator"  # chunks are concatenated exactly (resume and shards rely on it)
    predicted(model_dir, "-i", str(pubtator), "-o", str(one_by_one), "--chunk-size", "1")
    assert one_by_one.read_bytes() == tagged.read_bytes()
    to_stdout = predict(model_dir, "-i", str(pubtator))
    assert to_stdout.returncode == 0 and to_stdout.stdout.encode("utf-8") == tagged.read_bytes()


@pytest.mark.cli
def test_every_text_byte_is_kept_with_crlf_bom_and_non_ascii(model_dir: Path, tmp_path: Path) -> None:
    title = "Café patients took aspirin and 北京 naloxone\u200b twice daily."
    abstract = "Lidocaine-induced cardiac asystole (after 5 mg/kg of cocaine) was observed in rats."
    pub = tmp_path / "crlf.pubtator"
    pub.write_bytes(("\ufeff" + f"7|t|{title}\r\n7|a|{abstract}\r\n7\t0\t4\tCafé\tChemical\r\n\r\n").encode())
    out = tmp_path / "crlf.tagged.pubtator"
    predicted(model_dir, "-i", str(pub), "-o", str(out))
    data = out.read_bytes()
    assert data.startswith("\ufeff7|t|".encode()) and f"7|t|{title}\r\n7|a|{abstract}\r\n".encode() in data
    assert all(line.endswith(b"\r") for line in data.split(b"\n")[:-1])

    text = f"{title}\r\n\r\n{abstract}\r\n"  # BRAT and JSONL hold line breaks inside the text
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "doc.txt").write_bytes(text.encode())
    predicted(model_dir, "-i", str(brat), "-o", str(tmp_path / "brat_out"))
    assert (tmp_path / "brat_out" / "doc.txt").read_bytes() == text.encode()
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"id": "d", "text": text, "note": "kept"}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    predicted(model_dir, "-i", str(jsonl), "-o", str(tmp_path / "out.bioc.json"))
    predicted(model_dir, "-i", str(tmp_path / "out.bioc.json"), "-o", str(tmp_path / "back.jsonl"))
    assert read_jsonl(tmp_path / "back.jsonl")[0]["text"] == text
    for path, fmt in ((tmp_path / "brat_out", "brat"), (tmp_path / "out.bioc.json", "bioc_json")):
        doc = read_documents(path, fmt)[0]
        assert doc.text == text
        assert [m.span for m in doc.mentions] == reference(model_dir, [doc], tmp_path)[doc.id]


@pytest.mark.cli
def test_min_score_drops_entities_below_it(model_dir: Path, pubtator: Path, tmp_path: Path) -> None:
    docs = read_documents(pubtator)
    source = tmp_path / "abstracts.jsonl"
    source.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs), encoding="utf-8")
    everything, confident = tmp_path / "all.jsonl", tmp_path / "confident.jsonl"
    predicted(model_dir, "-i", str(source), "-o", str(everything))
    predicted(model_dir, "-i", str(source), "-o", str(confident), "--min-score", "0.8")
    full = [r["entities"] for r in read_jsonl(everything)]
    kept = [r["entities"] for r in read_jsonl(confident)]
    assert kept == [[e for e in spans if e["score"] >= 0.8] for spans in full]
    assert sum(map(len, kept)) < sum(map(len, full))  # the threshold drops something here
    bioc = tmp_path / "confident.xml"
    predicted(model_dir, "-i", str(pubtator), "-o", str(bioc), "--min-score", "0.8")
    assert all(score(m) >= 0.8 for d in read_documents(bioc) for m in d.mentions)


@pytest.mark.cli
def test_user_errors_are_one_line(model_dir: Path, pubtator: Path, tmp_path: Path) -> None:
    bioc = source_in("bioc_json", pubtator, tmp_path)
    text = tmp_path / "plain.txt"
    text.write_text("Naloxone.\n", encoding="utf-8")
    assert refused(predict(model_dir, "-i", str(pubtator), "-o", str(tmp_path / "x.tsv"))) == (
        f"--output {tmp_path / 'x.tsv'}: not a document format suffix for pubtator input (known: .pubtator, "
        ".pubtator.txt, .bioc.xml, .xml, .bioc.json, .json, .ann, .jsonl, .ndjson, or a folder for BRAT); name one "
        "with --output-format")
    assert refused(predict(model_dir, "-i", str(pubtator), "--output-format", "conll2012")) == (
        "--output-format conll2012: unknown document format (valid: pubtator, bioc_xml, bioc_json, brat, jsonl)")
    assert refused(predict(model_dir, "-i", str(text), "--format", "text", "--output-format", "pubtator")) == (
        "--output-format pubtator: needs document input (PubTator, BioC, BRAT or JSONL; name it with --format), "
        "not --format text")
    assert refused(predict(model_dir, "-i", str(bioc), "-o", str(tmp_path / "o.xml"), "--num-processes", "2")) == (
        "--num-processes 2: bioc_json documents are read and written whole, on one process (sharding needs "
        "PubTator or JSONL in and out)")
    assert refused(predict(model_dir, "-i", str(bioc), "-o", str(bioc))) == (
        f"--output: {bioc} is the --input file {bioc}; choose another output file")
    existing = tmp_path / "exists.xml"
    existing.write_text("mine\n")
    assert refused(predict(model_dir, "-i", str(bioc), "-o", str(existing))) == (
        f"--output {existing}: exists; pass --overwrite to replace it, or choose another output")
    assert existing.read_text() == "mine\n"
    brat = source_in("brat", pubtator, tmp_path)
    first = sorted(brat.glob("*.txt"))[0]
    assert refused(predict(model_dir, "-i", str(brat), "-o", str(brat))) == (
        f"--output: {first} is the input file {first}; choose another output file")
    assert refused(predict(model_dir, "-i", str(brat), "-o", str(tmp_path / "one.ann"))) == (
        f"--output {tmp_path / 'one.ann'}: 6 documents do not fit one BRAT file pair; give a folder")
    from_stdin = predict(model_dir, "-i", "-", "--format", "bioc_json", "-o", str(tmp_path / "s.jsonl"))
    assert refused(from_stdin) == "--input -: bioc_json is read from a file, not stdin"

