"""Reading a user's file as exact UTF-8 text, and splitting it into lines that join back to the same bytes.

The one reader of token_cls's input files: word files (CoNLL, CSV, vocab), documents (PubTator,
BRAT, BioC, JSONL); and the one parser of a JSONL record. Readers keep every character (``\\r``
included: offsets in BRAT and PubTator count it), so the only decoding done is UTF-8; a byte-order
mark is kept out of the text but reported so that document writers can put it back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError

# BOM, not_a_file and read_text are the core's (the task-generic commands read files so too), re-exported here
from tc.core.readers import BOM as BOM
from tc.core.readers import not_a_file as not_a_file
from tc.core.readers import parse_json
from tc.core.readers import read_text as read_text

_SURROGATE = re.compile("[\ud800-\udfff]")


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines of ``text`` without their ``\\n`` (a ``\\r`` stays on its line) and whether the text ended
    with a newline: ``join_lines(*split_lines(t)) == t`` for every ``t``."""
    lines = text.split("\n")
    final = len(lines) > 1 and lines[-1] == ""
    if final:
        lines.pop()
    return lines, final


def join_lines(lines: list[str], final_newline: bool = True) -> str:
    """The inverse of ``split_lines``."""
    text = "\n".join(lines)
    return text + "\n" if final_newline and lines else text


def json_path(path: Sequence[str | int]) -> str:
    """``("entities", 0, "text")`` as ``"entities"[0]["text"]``, the spelling of a place in a JSON value."""
    out = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        else:
            quoted = json.dumps(step, ensure_ascii=not _is_unicode(step))
            out.append(quoted if not out else f"[{quoted}]")
    return "".join(out)


def _is_unicode(text: str) -> bool:
    return text.isascii() or not _SURROGATE.search(text)


def unicode_problem(value: Any, path: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """Where a JSON value (parsed: dicts, lists, strings, ...) holds a string that is not valid Unicode, and
    what is wrong there; None when every string (keys too) is.

    A file decoded as UTF-8 cannot hold a lone surrogate, but a JSON ``\\udc80`` escape (half of a UTF-16
    pair) puts one into a Python string; no UTF-8 output can hold it, nor can the tokenizer read it.
    Every JSON input (JSONL records, BioC JSON, ``tc serve`` requests) is checked here, once, where it is
    parsed, so the error names the file, line and field instead of failing later in a writer.
    """
    if isinstance(value, str):
        if _is_unicode(value):
            return None
        at = _SURROGATE.search(value)
        assert at is not None
        return path, (f"is not valid Unicode: a lone surrogate \\u{ord(at.group()):04x} at character {at.start()} "
                      "(a JSON \\u escape of half a UTF-16 pair)")
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not _is_unicode(key):
                return path, f"has a key {json.dumps(key)} that is not valid Unicode (a lone surrogate)"
            found = unicode_problem(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unicode_problem(item, (*path, index))
            if found is not None:
                return found
    return None


def check_unicode(value: Any, where: str, what: str = "text") -> None:
    """Raise a DataError ``<where>: <field> is not valid Unicode: ...`` when ``value`` (a string or a parsed
    JSON value) holds a lone surrogate anywhere (see ``unicode_problem``); ``what`` names the value itself
    when the problem is not inside it."""
    found = unicode_problem(value)
    if found is not None:
        path, problem = found
        raise DataError(f"{where}: {json_path(path) if path else what} {problem}")


def parse_record(name: Path | str, number: int, raw: str) -> dict[str, Any]:
    """Line ``number`` of a JSONL file as an object with a string ``text``: what every JSONL input of tc
    (``tc predict``'s records, documents with spans) is. Bad JSON, a key given twice (``json`` would keep
    the last silently), no ``text`` or a string that is not valid Unicode (``unicode_problem``) is one
    DataError naming ``name:number`` (and the record's ``id``)."""
    record = parse_json(raw, name, DataError, line=number)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{name}:{number}: expected an object with a string "text" field')
    if "\\u" in raw:  # only a \u escape makes a lone surrogate: the line itself is valid UTF-8
        ident = record.get("id")
        document = f": document {ident}" if isinstance(ident, str | int) and not isinstance(ident, bool) else ""
        check_unicode(record, f"{name}:{number}{document}")
    return record
