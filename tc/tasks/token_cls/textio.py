"""Reading a user's file as exact UTF-8 text, and splitting it into lines that join back to the same bytes.

The one reader of token_cls's input files: word files (CoNLL, CSV, vocab), documents (PubTator,
BRAT, BioC, JSONL); and the one parser of a JSONL record. Readers keep every character (``\\r``
included: offsets in BRAT and PubTator count it), so the only decoding done is UTF-8; a byte-order
mark is kept out of the text but reported so that document writers can put it back.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from tc.core.errors import DataError
from tc.core.readers import parse_json

BOM = "\ufeff"


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


def parse_record(name: Path | str, number: int, raw: str) -> dict[str, Any]:
    """Line ``number`` of a JSONL file as an object with a string ``text``: what every JSONL input of tc
    (``tc predict``'s records, documents with spans) is. Bad JSON, a key given twice (``json`` would keep
    the last silently) or no ``text`` is one DataError naming ``name:number``."""
    record = parse_json(raw, name, DataError, line=number)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{name}:{number}: expected an object with a string "text" field')
    return record
