"""Document inputs that once went through as silent wrong results or tracebacks (issue #33, round three),
each refused in one line by the real ``tc predict``, before anything is written:

* a PubTator mention line whose start is ``-1`` or ``abc`` was taken for a relation line, copied into the
  predicted output as if tc had found it (and dropped from training); a real relation line still is kept;
* an ``.xml`` that is not a BioC collection (an HTML page) or a ``.json`` that is not BioC JSON was read as
  zero documents and written back with exit 0;
* a JSON ``\\udc80`` escape (half a UTF-16 pair) in a JSONL text gave a traceback while encoding;
* a BioC JSON offset that is not an integer gave ``TypeError: '<=' not supported``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, TINY, error_line, run_tc, write

from tc.tasks.token_cls.documents import read_documents, write_documents

pytestmark = pytest.mark.cli

DOCUMENTED = {"pubtator-mention-start-negative", "pubtator-mention-start-word", "bioc-xml-not-a-collection",
              "bioc-json-not-a-collection", "jsonl-lone-surrogate", "bioc-json-offset-not-integer",
              "bioc-json-wrong-type", "bioc-xml-offset-not-integer", "pubtator-mention-start-in-training",
              "jsonl-number-too-long"}

HEAD = "1|t|Aspirin helps.\n1|a|It works.\n"
BIOC_JSON = ('{"source":"","date":"","key":"","infons":{},"documents":[{"id":"d1","infons":{},"passages":'
             '[{"offset":OFFSET,"text":"Aspirin helps.","infons":{},"annotations":[],"sentences":[],'
             '"relations":[]}],"annotations":[],"relations":[]}]}')
SHAPE = "PMID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>identifier]"

CASES: dict[str, tuple[str, str, Callable[[Path], str]]] = {
    "pubtator-mention-start-negative": (
        "in.pubtator", HEAD + "1\t-1\t7\tAspirin\tChemical\n\n",
        lambda p: f"{p}:3: malformed mention line '1\\t-1\\t7\\tAspirin\\tChemical' (expected {SHAPE}): start '-1' "
                  "is not an offset (a whole number from 0)"),
    "pubtator-mention-start-word": (
        "in.pubtator", HEAD + "1\tabc\t7\tAspirin\tChemical\n\n",
        lambda p: f"{p}:3: malformed mention line '1\\tabc\\t7\\tAspirin\\tChemical' (expected {SHAPE}): start "
                  "'abc' is not an offset (a whole number from 0)"),
    "bioc-xml-not-a-collection": (
        "in.xml", "<html><body>hi</body></html>\n",
        lambda p: f"{p}:1: not a BioC collection (the root element is <html>, not <collection>)"),
    "bioc-json-not-a-collection": (
        "in.json", '{"hello": 1}\n',
        lambda p: f"{p}: not a BioC JSON collection (the top level is an object without a \"documents\" list; "
                  "BioC JSON is an object with source, date, key, infons and a \"documents\" list)"),
    "jsonl-number-too-long": (
        "in.jsonl", '{"text": "a", "n": ' + "9" * 5000 + "}\n",
        lambda p: f"{p}:1: not valid JSON (an integer of more than 4300 digits)"),
    "jsonl-lone-surrogate": (
        "in.jsonl", '{"text": "a\\udc80b", "id": "x"}\n',
        lambda p: f"{p}:1: document x: \"text\" is not valid Unicode: a lone surrogate \\udc80 at character 1 "
                  "(a JSON \\u escape of half a UTF-16 pair)"),
    "bioc-json-offset-not-integer": (
        "in.json", BIOC_JSON.replace("OFFSET", '"zero"'),
        lambda p: f"{p}: document d1: passage 1: \"offset\" must be a whole number (got \"zero\")"),
}




def _passage(**change: object) -> str:
    """A BioC JSON collection of one document (id d1) with one passage, ``change`` applied to the passage."""
    ann = {"id": "T1", "infons": {"type": "Chemical"}, "text": "Aspirin", "locations": [{"offset": 0, "length": 7}]}
    passage: dict[str, object] = {"offset": 0, "infons": {}, "text": "Aspirin helps.", "sentences": [],
                                  "annotations": [ann], "relations": []}
    passage.update(change)
    doc = {"id": "d1", "infons": {}, "passages": [passage], "annotations": [], "relations": []}
    return json.dumps({"source": "", "date": "", "key": "", "infons": {}, "documents": [doc]})


SURROGATE = "is not valid Unicode: a lone surrogate \\{} at character {} (a JSON \\u escape of half a UTF-16 pair)"
CASES.update({  # the rest of each row's class
    "pubtator-start-decimal": (
        "in.pubtator", HEAD + "1\t0.5\t7\tAspirin\tChemical\n\n",
        lambda p: f"{p}:3: malformed mention line '1\\t0.5\\t7\\tAspirin\\tChemical' (expected {SHAPE}): start "
                  "'0.5' is not an offset (a whole number from 0)"),
    "jsonl-surrogate-in-entity": (
        "in.jsonl", '{"text": "ab", "entities": [{"start": 0, "end": 1, "type": "\\ud800"}]}\n',
        lambda p: f'{p}:1: "entities"[0]["type"] ' + SURROGATE.format("ud800", 0)),
    "bioc-json-surrogate": (
        "in.bioc.json", _passage(text="Aspirin \udc80"),
        lambda p: f'{p}: document d1: passage 1: "text" ' + SURROGATE.format("udc80", 8)),
    "bioc-json-offset-negative": (
        "in.bioc.json", _passage(offset=-3),
        lambda p: f'{p}: document d1: passage 1: "offset" must be a whole number from 0 (got -3)'),
    "bioc-json-text-number": (
        "in.bioc.json", _passage(text=5),
        lambda p: f'{p}: document d1: passage 1: "text" must be a string (or null) (got 5)'),
    "bioc-json-list-for-object": (
        "in.bioc.json", _passage(annotations=[[]]),
        lambda p: f"{p}: document d1: passage 1: annotation number 1 must be an object (got [])"),
    "bioc-json-location-string": (
        "in.bioc.json", _passage(annotations=[{"id": "T1", "infons": {"type": "X"}, "text": "A",
                                               "locations": [{"offset": "0", "length": 1}]}]),
        lambda p: f'{p}: document d1: passage 1: annotation T1: location 1: "offset" must be a whole number '
                  '(got "0")'),
    "bioc-json-type-not-string": (
        "in.bioc.json", _passage(annotations=[{"id": "T1", "infons": {"type": None}, "text": "A",
                                               "locations": [{"offset": 0, "length": 1}]}]),
        lambda p: f"{p}: document d1: annotation T1: its 'type' infon is not a string (got None)"),
    "json-list": (
        "in.json", "[1, 2]\n",
        lambda p: f"{p}: not a BioC JSON collection (the top level is a JSON list; BioC JSON is an object with "
                  "source, date, key, infons and a \"documents\" list)"),
    "bioc-xml-offset-not-integer": (
        "in.xml", "<?xml version='1.0' encoding='utf-8'?>\n<collection><source/><date/><key/>\n"
                  "<document><id>7</id>\n<passage><offset>x</offset><text>ab</text></passage>\n"
                  "</document></collection>\n",
        lambda p: f"{p}:4: document 7: passage 1: <offset> 'x' is not a whole number from 0"),
    "bioc-xml-location-not-integer": (
        "in.xml", "<?xml version='1.0' encoding='utf-8'?>\n<collection><source/><date/><key/>\n"
                  "<document><id>7</id>\n<passage><offset>0</offset><text>ab</text>\n<annotation id=\"T1\">"
                  "<infon key=\"type\">X</infon>\n<location offset=\"0\" length=\"one\"/><text>a</text>"
                  "</annotation></passage></document></collection>\n",
        lambda p: f"{p}:6: document 7: passage 1: annotation T1: location length 'one' is not a whole number from 0"),
})


@pytest.mark.parametrize("case", list(CASES))
def test_bad_document_input_is_refused_before_writing(case: str, trained: Path, tmp_path: Path) -> None:
    name, content, message = CASES[case]
    source = write(tmp_path / name, content)
    out = tmp_path / f"out{source.suffix}"
    proc = run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), *ONE_THREAD,
                  cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == message(source)  # the one error line, last; a streamed input is read after
    assert not out.exists()                     # the model's "predicting with ..." line


def test_a_real_relation_line_is_still_kept_byte_for_byte(trained: Path, tmp_path: Path) -> None:
    """``PMID<TAB>CID<TAB>D1<TAB>D2`` is not a mention: it goes to the output unchanged, as before."""
    source = write(tmp_path / "in.pubtator", HEAD + "1\tCID\tD1\tD2\n\n")
    out = tmp_path / "out.pubtator"
    run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), *ONE_THREAD, cwd=tmp_path,
           check=True)
    assert "1\tCID\tD1\tD2\n" in out.read_text(encoding="utf-8")


def test_training_refuses_a_broken_mention_line(tmp_path: Path) -> None:
    """The same line in training data was dropped while the load report said every mention aligned."""
    data = tmp_path / "d"
    for split in ("train", "devel", "test"):
        write_documents(data / f"{split}.pubtator",
                        read_documents(ROOT / "data" / "BC5CDR-PubTator" / f"{split}.pubtator")[:3])
    train = data / "train.pubtator"
    lines = train.read_text(encoding="utf-8").split("\n")
    at = next(i for i, line in enumerate(lines) if line.count("\t") >= 4)
    lines[at] = "\t".join([lines[at].split("\t")[0], "-1", *lines[at].split("\t")[2:]])
    train.write_text("\n".join(lines), encoding="utf-8")
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "m"), "--set",
                  f"train_input.data_dir={data}", "--set", "runconfig.max_steps=1", *ONE_THREAD, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc).startswith(f"{train}:{at + 1}: malformed mention line ")
    assert error_line(proc).endswith(": start '-1' is not an offset (a whole number from 0)")


def test_bioc_xml_output_puts_a_space_for_what_xml_cannot_hold(trained: Path, tmp_path: Path) -> None:
    """A NUL or another control character in a JSONL text becomes a space in BioC XML, so every offset holds
    (it was an lxml ValueError traceback after tagging)."""
    text = "Aspirin\x00 and \x07 naloxone\x0b."
    source = write(tmp_path / "in.jsonl", json.dumps({"id": "a", "text": text}) + "\n")
    out = tmp_path / "out.xml"
    run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), *ONE_THREAD, cwd=tmp_path,
           check=True)
    (doc,) = read_documents(out)
    assert doc.text == "Aspirin  and   naloxone ." and len(doc.text) == len(text)
