"""A ``document`` request's file text, checked against the limits BEFORE its format's reader builds it.

A BioC passage at offset N becomes N characters of text (``documents.model``: passages are laid out
at their offsets), so a 200-byte body saying ``<offset>300000000</offset>`` would build a 300 MB string,
and ``1e18`` would fail inside the layout: offsets are read from the file first (lxml for BioC XML, the
guarded JSON reader for BioC JSON) and a document that would exceed ``--max-chars``, or a collection of
more than ``--max-texts`` documents, is a 413 before anything is built. JSON inside a document (JSONL
records, BioC JSON) goes through the same guards as a request body (``request.guarded_loads``): lone
surrogates, integers beyond Python's digit limit and deep nesting are a 400 naming the line. What these
checks cannot judge (syntax, missing keys) is left to the reader, whose own message is the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tc.tasks.token_cls.serve.request import ClientError, JsonProblem, Limits, guarded_loads
from tc.tasks.token_cls.textio import BOM, split_lines

Extent = tuple[int, str, int]
"""(document number, its id, characters its text would have): per passage or sentence of a BioC document."""
_DIGITS = re.compile(r"\s*(\d+)\s*")
HUGE = 10**30
"""Stands for an offset of over 30 digits (Python would not even convert 5000)."""


def read_checked_documents(text: str, fmt: str, limits: Limits) -> list[Any]:
    """The documents of ``text`` in ``fmt``, as ``tc predict`` reads that file, within ``limits``."""
    from tc.tasks.token_cls.documents.tagging import read_text_documents

    check_document(text, fmt, limits)
    docs = read_text_documents(text, fmt)
    _check_count(len(docs), limits)
    long = next((d for d in docs if len(d.text) > limits.max_chars), None)
    if long is not None:
        raise ClientError(413, _too_long(long.id, len(long.text), limits))
    return docs


def check_document(text: str, fmt: str, limits: Limits) -> None:
    """Refuse (ClientError) what ``fmt``'s reader would build too much of, or choke on, in ``text``."""
    if fmt == "jsonl":
        for number, line in enumerate(split_lines(text.removeprefix(BOM))[0], start=1):
            if line.strip():
                _guarded(line, fmt, number)
    elif fmt == "bioc_json":
        tree = _guarded(text.removeprefix(BOM), fmt, None)
        if tree is not None:
            _check_extents(_json_extents(tree), limits)
    elif fmt == "bioc_xml":
        _check_extents(_xml_extents(text), limits)


def _guarded(text: str, fmt: str, line: int | None) -> Any:
    """``text`` as JSON (None when it is not JSON at all: its reader says so in its own words)."""
    try:
        return guarded_loads(text, strict=False)
    except json.JSONDecodeError:
        return None
    except JsonProblem as exc:
        raise ClientError(400, f"{fmt}: document{'' if line is None else f':{line}'}: {exc}") from None


def _check_extents(extents: Iterator[Extent], limits: Limits) -> None:
    """413 for a document whose text would pass ``max_chars``, or for more than ``max_texts`` documents."""
    count = 0
    for number, doc_id, extent in extents:
        if extent > limits.max_chars:
            raise ClientError(413, _too_long(doc_id, extent, limits))
        count = number
    _check_count(count, limits)


def _check_count(count: int, limits: Limits) -> None:
    if count > limits.max_texts:
        raise ClientError(413, f"{count} documents in one request exceeds the limit of {limits.max_texts}")


def _too_long(doc_id: str, chars: int, limits: Limits) -> str:
    count = "over 10^30" if chars >= HUGE else str(chars)
    return f"document {doc_id} has {count} characters, over the limit of {limits.max_chars}"


def _offset(value: Any) -> int | None:
    """An offset as the reader takes it (a JSON integer, an XML run of digits), or None for one it
    refuses itself."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _DIGITS.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return None
    return int(found.group(1)) if len(found.group(1)) <= 30 else HUGE


def _extent(number: int, doc_id: str, offset: Any, text: Any) -> Iterator[Extent]:
    start = _offset(offset)
    if start is not None:
        yield number, doc_id, start + (len(text) if isinstance(text, str) else 0)


def _json_extents(tree: Any) -> Iterator[Extent]:
    """Passages and sentences of a BioC JSON collection (shapes the reader refuses are skipped here)."""
    documents = tree.get("documents") if isinstance(tree, dict) else None
    for number, doc in enumerate(_list(documents), start=1):
        if not isinstance(doc, dict):
            continue
        doc_id = str(doc.get("id", number))
        yield number, doc_id, 0  # counted even without passages
        for passage in _list(doc.get("passages")):
            if isinstance(passage, dict):
                yield from _extent(number, doc_id, passage.get("offset"), passage.get("text"))
                for sentence in _list(passage.get("sentences")):
                    if isinstance(sentence, dict):
                        yield from _extent(number, doc_id, sentence.get("offset"), sentence.get("text"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _xml_extents(text: str) -> Iterator[Extent]:
    """Passages and sentences of a BioC XML collection, parsed as the ``bioc`` reader parses it (lxml's
    defaults, entity expansion limits included); XML it cannot parse yields nothing (the reader says why)."""
    from lxml import etree

    try:
        root = etree.fromstring(text.encode("utf-8"))
    except (etree.XMLSyntaxError, ValueError):
        return
    for number, doc in enumerate(root.iter("document"), start=1):
        doc_id = doc.findtext("id") or str(number)
        yield number, doc_id, 0
        for element in doc.iter("passage", "sentence"):
            yield from _extent(number, doc_id, element.findtext("offset"), element.findtext("text"))
