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

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ONE_THREAD, error_line, run_tc, write

pytestmark = pytest.mark.cli

DOCUMENTED = {"pubtator-mention-start-negative", "pubtator-mention-start-word", "bioc-xml-not-a-collection",
              "bioc-json-not-a-collection", "jsonl-lone-surrogate", "bioc-json-offset-not-integer"}

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
    "jsonl-lone-surrogate": (
        "in.jsonl", '{"text": "a\\udc80b", "id": "x"}\n',
        lambda p: f"{p}:1: document x: \"text\" is not valid Unicode: a lone surrogate \\udc80 at character 1 "
                  "(a JSON \\u escape of half a UTF-16 pair)"),
    "bioc-json-offset-not-integer": (
        "in.json", BIOC_JSON.replace("OFFSET", '"zero"'),
        lambda p: f"{p}: document d1: passage 1: \"offset\" must be a whole number (got \"zero\")"),
}


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
