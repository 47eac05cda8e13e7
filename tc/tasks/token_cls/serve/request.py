"""Reading a ``/predict`` request: the body within its size limit, JSON that cannot hurt the server, the fields.

Everything here is a pure function of the bytes (and the limits), so every request shape is testable
without a server. The rule: whatever a client sends is answered with a 4xx naming what is wrong, or
accepted; nothing it sends may reach the model, the document readers or the JSON response encoder in a
form that makes them raise (a 500) or allocate beyond the limits. So the JSON is read with guards:

* a lone UTF-16 surrogate (``"\\udc80"``) is valid JSON but not Unicode: no UTF-8 writer (the response,
  a document file, the tokenizer) can encode it, so it is refused where it is, with its path;
* ``NaN``/``Infinity`` and ``1e400`` are not JSON numbers (RFC 8259) and the response encoder refuses
  them; an integer of more digits than Python converts (4300) raises inside ``json``;
* nesting deeper than ``MAX_DEPTH`` is refused before it can exhaust the stack of the parser or encoder.

NUL and other control characters are valid Unicode and stay text: they are tagged as ``tc predict``
tags them (a format whose grammar forbids them, XML, refuses them through its reader).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

FIELDS = ("text", "texts", "documents", "document")
DOCUMENT_FORMATS = ("pubtator", "bioc_xml", "bioc_json", "jsonl")  # documents.tagging.STRING_FORMATS
MAX_DEPTH = 100
"""Deepest JSON nesting read (a request, a JSONL or BioC JSON document); BioC itself needs about 8."""


@dataclass(frozen=True)
class Limits:
    """What one request may carry; beyond it the answer is 413, never an out-of-memory worker."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_chars: int = 100_000
    request_timeout_s: float = 120.0


class ClientError(Exception):
    """A bad request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JsonProblem(ValueError):
    """JSON that parses but must not be used (see the module docstring); the message says why."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ClientError(400, f"bad Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise ClientError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Guarded JSON
# ---------------------------------------------------------------------------------------------


def guarded_loads(text: str, strict: bool = True) -> Any:
    """``json.loads(text)``, raising JsonProblem for what must not be used (module docstring).

    ``strict`` (a request body) also refuses ``NaN``/``Infinity``, out-of-range floats and a key given
    twice in one object; without it (a document's own JSON, which ``tc predict`` reads the same way and
    which comes back inside a string) only what breaks the server is refused. A syntax error stays
    ``json.JSONDecodeError``, for the caller to word."""
    hooks: dict[str, Any] = {"parse_int": _int}
    if strict:
        hooks.update(parse_constant=_constant, parse_float=_float, object_pairs_hook=_unique)
    try:
        value = json.loads(text, **hooks)
    except RecursionError:
        raise JsonProblem(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    except JsonProblem as exc:
        raise JsonProblem(_located(str(exc), text)) from None
    _check_tree(value)
    return value


def _int(literal: str) -> int:
    limit = sys.get_int_max_str_digits()
    digits = len(literal.lstrip("-"))
    if limit and digits > limit:
        raise JsonProblem(f"malformed JSON: a number of {digits} digits, over the {limit} read")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonProblem(f"malformed JSON: number {literal[:30]} is out of range (over 1.8e308)")
    return value


def _constant(name: str) -> float:
    raise JsonProblem(f"malformed JSON: {name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonProblem(f"malformed JSON: duplicate key {json.dumps(key)} (a key may appear once per object)")
        out[key] = value
    return out


def _located(message: str, text: str) -> str:
    """``message`` with the line and column of its long number, when it is about one."""
    found = re.match(r"malformed JSON: a number of (\d+) digits", message)
    where = re.search(rf"\d{{{found.group(1)}}}", text) if found else None
    if where is None:
        return message
    line = text.count("\n", 0, where.start()) + 1
    return f"{message} at line {line} column {where.start() - text.rfind(chr(10), 0, where.start())}"


def _check_tree(value: Any) -> None:
    """Refuse nesting over MAX_DEPTH (iteratively: a tree the parser built must not overflow the stack
    here either), then a lone surrogate in any string or key, naming where (``textio.unicode_problem``,
    the check every JSON input of tc gets)."""
    from tc.tasks.token_cls.textio import json_path, unicode_problem

    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JsonProblem(f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    found = unicode_problem(value)
    if found is not None:
        path, problem = found
        raise JsonProblem(f"{json_path(path) or 'the body'} {problem}")


# ---------------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------------


@dataclass
class Parsed:
    """A validated /predict request: the texts to tag and how to shape the answer."""

    kind: str
    texts: list[str]
    records: list[dict[str, Any]] | None
    min_score: float
    format: str | None = None
    """``document`` requests: the document format (the text to parse is ``texts[0]``)."""


def parse_request(body: bytes, limits: Limits, default_min_score: float, content_type: str | None = None) -> Parsed:
    """Validate a /predict body; every problem is a ClientError with one line naming the field.
    ``content_type`` (the header) is named when a body that is not JSON was not sent as JSON either."""
    if not body.strip():
        raise ClientError(400, 'empty body: send a JSON object with "text", "texts", "documents" or "document"')
    try:
        text = body.decode("utf-8-sig")  # JSON is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"request body is not UTF-8 (byte {exc.start})") from None
    try:
        payload = guarded_loads(text)
    except json.JSONDecodeError as exc:
        sent = f" (sent as Content-Type {content_type[:60]}; send a JSON object)" if not _is_json(content_type) else ""
        raise ClientError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{sent}") from None
    except JsonProblem as exc:
        raise ClientError(400, str(exc)) from None
    if not isinstance(payload, dict):
        raise ClientError(400, f"request body must be a JSON object, got {json_type(payload)}")
    unknown = sorted(set(payload) - {*FIELDS, "min_score", "format"})
    if unknown:
        raise ClientError(400, f"unknown field {unknown[0]!r} (expected one of text, texts, documents, document; "
                          "format, min_score)")
    given = [f for f in FIELDS if f in payload]
    if len(given) != 1:
        raise ClientError(400, 'give exactly one of "text", "texts", "documents" or "document"'
                          + (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    fmt = _document_format(kind, payload)
    texts, records = _texts(kind, payload[kind])
    if len(texts) > limits.max_texts:
        raise ClientError(413, f"{len(texts)} texts in one request exceeds the limit of {limits.max_texts}")
    long = next((i for i, t in enumerate(texts) if len(t) > limits.max_chars), None)
    if long is not None and kind != "document":  # a document's limit applies to each of its documents
        where = "text" if kind == "text" else f"{kind}[{long}]"
        raise ClientError(413, f"{where} has {len(texts[long])} characters, over the limit of {limits.max_chars}")
    min_score = payload.get("min_score", default_min_score)
    if isinstance(min_score, bool) or not isinstance(min_score, int | float) or not 0.0 <= min_score <= 1.0:
        raise ClientError(400, f'"min_score" must be a number from 0 to 1, got {json.dumps(min_score)[:40]}')
    return Parsed(kind, texts, records, float(min_score), fmt)


def _texts(kind: str, value: Any) -> tuple[list[str], list[dict[str, Any]] | None]:
    """The texts of field ``kind`` (and the records of ``documents``), each of the type it must have."""
    if kind == "document":
        if not isinstance(value, str):
            raise ClientError(400, f'"document" must be a string (the file\'s text), got {json_type(value)}')
        return [value], None
    if kind == "text":
        if not isinstance(value, str):
            raise ClientError(400, f'"text" must be a string, got {json_type(value)}')
        return [value], None
    if kind == "texts":
        if not isinstance(value, list):
            raise ClientError(400, f'"texts" must be a list of strings, got {json_type(value)}')
        bad = next((i for i, t in enumerate(value) if not isinstance(t, str)), None)
        if bad is not None:
            raise ClientError(400, f'"texts"[{bad}] must be a string, got {json_type(value[bad])}')
        return value, None
    if not isinstance(value, list):
        raise ClientError(400, f'"documents" must be a list of objects, got {json_type(value)}')
    for i, record in enumerate(value):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ClientError(400, f'"documents"[{i}] must be an object with a string "text" field')
    return [r["text"] for r in value], value


def _document_format(kind: str, payload: dict[str, Any]) -> str | None:
    """The ``format`` of a ``document`` request (required there, refused elsewhere)."""
    value = payload.get("format")
    if kind != "document":
        if "format" in payload:
            raise ClientError(400, '"format" goes with "document" (the text of a PubTator, BioC or JSONL file)')
        return None
    valid = ", ".join(DOCUMENT_FORMATS)
    if value is None:
        raise ClientError(400, f'"document" needs "format": one of {valid}')
    key = value.lower().replace("-", "_") if isinstance(value, str) else None
    key = {"bioc": "bioc_xml"}.get(key or "", key)
    if key not in DOCUMENT_FORMATS:
        raise ClientError(400, f'"format" must be one of {valid}, got {json.dumps(value)[:40]}')
    return key


def _is_json(content_type: str | None) -> bool:
    """Whether the Content-Type header says JSON (or says nothing): other types get named in a 400."""
    media = (content_type or "").split(";")[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
