"""``tc serve`` against requests of any shape (issue #33, round three): never a 500, never memory first.

The request parser (``serve.request.parse_request``) and the document limits (``serve.documents``) are
pure functions of the bytes, so each class of bad request is many in-process cases; ONE real server
process (loopback only, bounded waits) then gets a representative of every class over HTTP and must
answer it with its 4xx and go on answering a good request.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import ONE_THREAD, TC

from tc.tasks.token_cls.serve.documents import read_checked_documents
from tc.tasks.token_cls.serve.request import MAX_DEPTH, ClientError, Limits, parse_request

DOCUMENTED = {
    "serve-lone-surrogate", "serve-json-too-deep", "serve-json-long-number", "serve-json-nan",
    "serve-json-out-of-range", "serve-json-duplicate-key", "serve-wrong-content-type",
    "serve-bioc-offset-over-limit", "serve-bioc-offset-huge", "serve-document-json-too-deep",
    "serve-document-long-number", "serve-document-lone-surrogate",
}
"""docs/errors.md rows ("Serve and flags (round three)") tested here."""

LIMITS = Limits()
GOOD = {"text": "Naloxone reverses the effect of clonidine."}


def bioc_xml(*passages: tuple[str, str], documents: int = 1, sentence: bool = False) -> str:
    """A BioC XML collection of ``documents`` documents, each with ``passages`` (offset text, text)."""
    inner = "sentence" if sentence else "passage"
    body = "".join(f"<{inner}><offset>{o}</offset><text>{t}</text></{inner}>" for o, t in passages)
    if sentence:
        body = f"<passage><offset>0</offset>{body}</passage>"
    docs = "".join(f"<document><id>{i + 1}</id>{body}</document>" for i in range(documents))
    return f'<?xml version="1.0"?><collection><source/><date/><key/>{docs}</collection>'


def bioc_json(offset: object, text: str = "abc") -> str:
    passage = {"offset": offset, "infons": {}, "text": text, "sentences": [], "annotations": [], "relations": []}
    return json.dumps({"source": "s", "date": "d", "key": "k", "infons": {},
                       "documents": [{"id": "1", "infons": {}, "passages": [passage], "annotations": [],
                                      "relations": []}]})


DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_BODIES = {
    # not valid Unicode: lone surrogate escapes, anywhere (was a 500 from the tokenizer or the encoder)
    "surrogate-text": (b'{"text": "a\\udc80b"}', 400,
                       '"text" is not valid Unicode: a lone surrogate \\udc80 at character 1'),
    "surrogate-texts": (b'{"texts": ["ok", "a\\ud800"]}', 400, '"texts"[1] is not valid Unicode'),
    "surrogate-record-field": (b'{"documents": [{"text": "ok", "meta": {"m": ["\\udfff"]}}]}', 400,
                               '"documents"[0]["meta"]["m"][0] is not valid Unicode'),
    "surrogate-key": (b'{"documents": [{"text": "ok", "\\udc80": 1}]}', 400,
                      '"documents"[0] has a key "\\udc80" that is not valid Unicode'),
    "surrogate-document": (b'{"document": "1|t|a\\udc80\\n\\n", "format": "pubtator"}', 400,
                           '"document" is not valid Unicode'),
    "surrogate-format": (b'{"document": "x", "format": "\\ud800"}', 400, '"format" is not valid Unicode'),
    # JSON that parses but would raise later (was a 500)
    "deep-list": (DEEP, 400, f"malformed JSON: nested deeper than {MAX_DEPTH} levels"),
    "deep-in-record": (b'{"documents": [{"text": "a", "x": ' + DEEP + b"}]}", 400, "nested deeper than"),
    "depth-just-over": (b'{"documents": [{"text": "a", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}]}", 400,
                        "nested deeper than"),
    "long-number": (b'{"text": "a", "min_score": ' + b"9" * 5000 + b"}", 400,
                    "malformed JSON: a number of 5000 digits, over the 4300 read at line 1 column 28"),
    "long-number-alone": (b"-" + b"1" * 4301, 400, "a number of 4301 digits"),
    "nan": (b'{"text": "a", "min_score": NaN}', 400, "malformed JSON: NaN is not a JSON value"),
    "infinity-in-record": (b'{"documents": [{"text": "a", "x": -Infinity}]}', 400, "-Infinity is not a JSON value"),
    "out-of-range": (b'{"documents": [{"text": "a", "x": 1e400}]}', 400,
                     "malformed JSON: number 1e400 is out of range"),
    "duplicate-key": (b'{"text": "a", "text": "b"}', 400, 'malformed JSON: duplicate key "text"'),
    "duplicate-nested-key": (b'{"documents": [{"text": "a", "id": 1, "id": 2}]}', 400, 'duplicate key "id"'),
    # wrong types, unknown keys, empty bodies
    "text-bool": (b'{"text": true}', 400, '"text" must be a string, got a boolean'),
    "texts-object": (b'{"texts": {"a": 1}}', 400, '"texts" must be a list of strings, got an object'),
    "documents-string": (b'{"documents": "a"}', 400, '"documents" must be a list of objects'),
    "document-list": (b'{"document": ["a"], "format": "jsonl"}', 400, '"document" must be a string'),
    "min-score-string": (b'{"text": "a", "min_score": "0.5"}', 400, '"min_score" must be a number from 0 to 1'),
    "unknown-key": (b'{"text": "a", "lang": "en"}', 400, "unknown field 'lang'"),
    "blank-body": (b" \n\t ", 400, "empty body"),
    "bare-string": (b'"Naloxone"', 400, "must be a JSON object, got a string"),
    "null": (b"null", 400, "must be a JSON object, got null"),
    "utf16": ('{"text": "a"}'.encode("utf-16"), 400, "not UTF-8"),
    # sizes: 413 before anything is built
    "too-many-texts": (json.dumps({"texts": ["a"] * 257}).encode(), 413, "257 texts in one request"),
    "text-too-long": (json.dumps({"text": "a" * 100_001}).encode(), 413, "text has 100001 characters"),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_every_bad_body_is_a_4xx_naming_it(name: str) -> None:
    body, status, reason = BAD_BODIES[name]
    with pytest.raises(ClientError) as caught:
        parse_request(body, LIMITS, 0.0, "application/json")
    assert (caught.value.status, "\n" in caught.value.message) == (status, False)
    assert reason in caught.value.message


@pytest.mark.parametrize(("content_type", "named"), [
    ("application/x-www-form-urlencoded", True), ("multipart/form-data; boundary=x", True), ("text/plain", True),
    ("application/json; charset=utf-8", False), ("application/vnd.api+json", False), (None, False)])
def test_a_body_that_is_not_json_names_a_content_type_that_is_not_either(content_type: str | None,
                                                                        named: bool) -> None:
    with pytest.raises(ClientError) as caught:
        parse_request(b"text=Naloxone", LIMITS, 0.0, content_type)
    assert caught.value.message.startswith("malformed JSON: Expecting value at line 1 column 1")
    assert (f"sent as Content-Type {content_type}" in caught.value.message) is named


ACCEPTED = {
    "empty-text": ({"text": ""}, [""]),
    "zero-width": ({"texts": ["\u200b", "\ufeff", "\u200b\u200d"]}, ["\u200b", "\ufeff", "\u200b\u200d"]),
    "nul-and-controls": ({"texts": ["a\x00b", "\x07\x1b[0m", "x\x7f\x85\u2028y"]},
                         ["a\x00b", "\x07\x1b[0m", "x\x7f\x85\u2028y"]),
    "surrogate-pair": ({"text": "\U0001f600 aspirin"}, ["\U0001f600 aspirin"]),
    "form-content-type-json-body": (GOOD, [GOOD["text"]]),  # curl -d sends JSON as a form: still read
    "nested-record": ({"documents": [{"text": "a", "meta": json.loads("[" * 90 + "]" * 90)}]}, ["a"]),
    "empty-documents": ({"documents": []}, []),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_valid_unicode_and_empty_texts_are_accepted(name: str) -> None:
    """NUL, controls and zero-width characters are valid Unicode: tagged as tc predict tags them."""
    payload, texts = ACCEPTED[name]
    body = json.dumps(payload).encode()  # ASCII: the emoji goes as an escape pair, which is one character
    parsed = parse_request(body, LIMITS, 0.0, "application/x-www-form-urlencoded")
    assert parsed.texts == texts


BAD_DOCUMENTS = {
    "xml-offset-300M": (bioc_xml(("300000000", "abc")), "bioc_xml", 413,
                        "document 1 has 300000003 characters, over the limit of 100000"),
    "xml-offset-1e18": (bioc_xml(("1000000000000000000", "abc")), "bioc_xml", 413,
                        "document 1 has 1000000000000000003 characters"),
    "xml-offset-5000-digits": (bioc_xml(("9" * 5000, "abc")), "bioc_xml", 413, "document 1 has over 10^30 characters"),
    "xml-sentence-offset": (bioc_xml(("300000000", "abc"), sentence=True), "bioc_xml", 413, "300000003 characters"),
    "xml-second-passage": (bioc_xml(("0", "abc"), ("99999", "abcd")), "bioc_xml", 413, "100003 characters"),
    "xml-too-many-documents": (bioc_xml(("0", "a"), documents=257), "bioc_xml", 413,
                               "257 documents in one request exceeds the limit of 256"),
    "json-offset-300M": (bioc_json(300_000_000), "bioc_json", 413, "document 1 has 300000003 characters"),
    "json-offset-1e18": (bioc_json(10**18), "bioc_json", 413, "1000000000000000003 characters"),
    "json-too-deep": ("[" * 100_000 + "]" * 100_000, "bioc_json", 400,
                      f"bioc_json: document: malformed JSON: nested deeper than {MAX_DEPTH} levels"),
    "json-long-number": (bioc_json(0).replace('"offset": 0', '"offset": ' + "9" * 5000), "bioc_json", 400,
                         "bioc_json: document: malformed JSON: a number of 5000 digits"),
    "json-surrogate": (bioc_json(0, "a\udc80"), "bioc_json", 400, "is not valid Unicode"),
    "jsonl-long-number": ('{"text": "a"}\n{"text": "b", "n": ' + "9" * 5000 + "}\n", "jsonl", 400,
                          "jsonl: document:2: malformed JSON: a number of 5000 digits, over the 4300 read at line 1"),
    "jsonl-too-deep": ('{"text": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}\n", "jsonl", 400,
                       "jsonl: document:1: malformed JSON: nested deeper than"),
    "jsonl-surrogate": ('\ufeff{"text": "a\\udc80"}\n', "jsonl", 400,
                        'jsonl: document:1: "text" is not valid Unicode: a lone surrogate \\udc80'),
}


@pytest.mark.parametrize("name", BAD_DOCUMENTS)
def test_a_document_is_checked_before_it_is_built(name: str) -> None:
    """Offsets, counts and the document's own JSON are judged before the reader lays the text out: the
    300 MB case must not allocate the 300 MB (it did: 333 MB -> 916 MB before the 413)."""
    text, fmt, status, reason = BAD_DOCUMENTS[name]
    tracemalloc.start()
    try:
        with pytest.raises(ClientError) as caught:
            read_checked_documents(text, fmt, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.status == status and reason in caught.value.message, caught.value.message
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated before the answer"


def test_documents_within_the_limits_are_read() -> None:
    docs = read_checked_documents(bioc_xml(("0", "abc"), ("99000", "def")), "bioc_xml", LIMITS)
    assert [len(d.text) for d in docs] == [99003]
    assert len(read_checked_documents(bioc_json(5), "bioc_json", LIMITS)[0].text) == 8
    assert [d.text for d in read_checked_documents('{"text": "a\\u0000b"}\n', "jsonl", LIMITS)] == ["a\x00b"]


# -- one real server ----------------------------------------------------------------------------

STARTUP_S = 120.0


@pytest.fixture
def server(tiny_model: Path, tmp_path: Path) -> Iterator[str]:
    """``tc serve --port 0`` on 127.0.0.1 (the default host); yields its URL once /health answers."""
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([TC, "serve", "--model-dir", str(tiny_model), "--port", "0", *ONE_THREAD],
                                stdout=subprocess.DEVNULL, stderr=sink, cwd=tmp_path)
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            if found:
                try:
                    if httpx.get(f"{found.group(1)}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"tc serve did not answer within {STARTUP_S:g} s: {log.read_text()}")
        yield found.group(1)
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


OVER_HTTP = {  # name -> (body, content type, status); one of each class above
    "surrogate": (BAD_BODIES["surrogate-record-field"][0], "application/json", 400),
    "deep": (DEEP, "application/json", 400),
    "long-number": (BAD_BODIES["long-number"][0], "application/json", 400),
    "nan": (BAD_BODIES["nan"][0], "application/json", 400),
    "wrong-type": (b'{"texts": [1]}', "application/json", 400),
    "unknown-key": (b'{"txt": "a"}', "application/json", 400),
    "form": (b"text=Naloxone", "application/x-www-form-urlencoded", 400),
    "huge-body": (b'{"text": "' + b"a " * 600_000 + b'"}', "application/json", 413),
    "bioc-offset": (json.dumps({"document": bioc_xml(("300000000", "abc")), "format": "bioc_xml"}).encode(),
                    "application/json", 413),
    "bioc-offset-1e18": (json.dumps({"document": bioc_json(10**18), "format": "bioc_json"}).encode(),
                         "application/json", 413),
    "document-json": (json.dumps({"document": BAD_DOCUMENTS["jsonl-surrogate"][0], "format": "jsonl"}).encode(),
                      "application/json", 400),
}


@pytest.mark.cli
def test_the_server_answers_every_class_with_a_4xx_and_keeps_serving(server: str) -> None:
    good = httpx.post(f"{server}/predict", json=GOOD, timeout=60)
    assert good.status_code == 200
    for name, (body, content_type, status) in OVER_HTTP.items():
        answer = httpx.post(f"{server}/predict", content=body, headers={"content-type": content_type}, timeout=60)
        assert answer.status_code == status, (name, answer.text)
        message = answer.json()["error"]
        assert message and "\n" not in message, name
        after = httpx.post(f"{server}/predict", json=GOOD, timeout=60)
        assert (after.status_code, after.json()) == (200, good.json()), name
    for text in ("", "\u200b", "a\x00b\x07"):
        assert httpx.post(f"{server}/predict", json={"text": text}, timeout=60).status_code == 200
