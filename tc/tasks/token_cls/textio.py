"""Reading a user's file as exact UTF-8 text, and splitting it into lines that join back to the same bytes.

The one reader of token_cls's input files: word files (CoNLL, CSV, vocab), documents (PubTator,
BRAT, BioC, JSONL); and the one parser of a JSONL record. Readers keep every character (``\\r``
included: offsets in BRAT and PubTator count it), so the only decoding done is UTF-8; a byte-order
mark is kept out of the text but reported so that document writers can put it back.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError
from tc.core.readers import parse_json

BOM = "\ufeff"
_SURROGATE = re.compile("[\ud800-\udfff]")


def not_a_file(path: Path, expected: str = "data file") -> str | None:
    """What ``path`` is when something is there but it is not a regular file (a directory, a broken or
    looping symlink, a FIFO or device); None for a regular file or for nothing at all. ``expected`` names
    what a directory was taken for."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symlink loop (it never reaches a file)"
            return f"is a broken symlink: its target {os.readlink(path)} does not exist"
    if path.is_dir():
        return f"is a directory, expected a {expected}"
    if path.exists() and not path.is_file():
        return "is not a regular file (a FIFO, socket or device)"
    return None


def read_text(path: Path, what: str = "file", expected: str | None = None) -> tuple[str, bool]:
    """``(text, had_bom)`` of ``path``; a missing file (``<what> not found``), an unreadable or non-UTF-8 one,
    and what is not a regular file (a FIFO would block the read forever; a directory is "expected a
    <expected, else what>") are user errors naming the path."""
    path = Path(path)
    odd = not_a_file(path, expected or what)
    if odd is not None:
        raise DataError(f"{path}: {odd}")
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if text.startswith(BOM):
        return text[1:], True
    return text, False


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
