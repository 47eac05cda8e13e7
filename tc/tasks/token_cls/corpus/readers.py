"""Lazy readers of ``tc predict``'s inputs: raw text lines, JSONL records, CoNLL blocks.

Every reader is a generator over the file's lines, so a corpus of any size is read in constant memory.
Each line is decoded alone, so a bad byte or bad JSON names its line. An optional :class:`Cursor`
counts the bytes consumed, which is what the progress line's percentage and ETA are computed from.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tc.core.errors import DataError
from tc.tasks.token_cls.textio import parse_record

FORMATS = ("jsonl", "conll", "text")
DOCUMENT_INPUTS = ("pubtator", "bioc_xml", "bioc_json", "brat")
"""Document formats ``tc predict`` also reads (tc.tasks.token_cls.documents), beside the line formats above."""
CONLL_SUFFIXES = (".tsv", ".conll", ".iob", ".iob2", ".bio", ".tags")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
DOCSTART = "-DOCSTART-"


@dataclass
class Cursor:
    """Bytes of the input read so far (updated by ``read_lines`` as it goes)."""

    bytes_read: int = 0


def input_format(path: str, chosen: str | None) -> str:
    """``--format`` when given, else from the file suffix; stdin defaults to raw text."""
    if chosen is not None:
        return chosen
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CONLL_SUFFIXES:
        return "conll"
    return "text"


def check_input(path: str) -> None:
    """Fail on a missing input before minutes go into loading a model."""
    if path == "-":
        return
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    if source.is_dir():
        raise DataError(f"{source}: is a directory, expected a file to tag")


def decoded_lines(path: str, cursor: Cursor | None = None, keep_bom: bool = False) -> Iterator[tuple[int, str]]:
    """``(line number, text with its line ending)``, each line decoded alone so a bad byte names its
    line; ``cursor`` counts the bytes read; a BOM on line 1 is dropped unless ``keep_bom``."""
    name = "<stdin>" if path == "-" else path
    try:
        handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or exc})") from None
    with contextlib.closing(handle) if path != "-" else contextlib.nullcontext(handle):
        for number, raw in enumerate(handle, start=1):
            if cursor is not None:
                cursor.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8-sig" if number == 1 and not keep_bom else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{name}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
            yield number, text


def read_lines(path: str, cursor: Cursor | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, text without line ending)`` of a file tc predict tags line by line."""
    check_input(path)
    for number, text in decoded_lines(path, cursor):
        yield number, text.rstrip("\r\n")


@dataclass
class Document:
    """One text to tag and the record it came from (JSONL keeps its other fields)."""

    text: str
    record: dict[str, Any]


def read_documents(path: str, fmt: str, cursor: Cursor | None = None) -> Iterator[Document]:
    """Raw text: every line is a document (blank lines too, so output lines match input lines).
    JSONL: every non-blank line is an object with a string ``text``."""
    name = "<stdin>" if path == "-" else path
    for number, line in read_lines(path, cursor):
        if fmt == "text":
            yield Document(line, {"text": line})
            continue
        if not line.strip():
            continue
        record = parse_record(name, number, line)
        yield Document(record["text"], record)


@dataclass
class Block:
    """A CoNLL sentence (its lines and their tokens) or a separator line kept verbatim."""

    lines: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    docstart: bool = False
    """A ``-DOCSTART-`` separator: the next sentence starts a document."""

    @property
    def is_sentence(self) -> bool:
        return bool(self.tokens)


def read_conll_blocks(path: str, cursor: Cursor | None = None) -> Iterator[Block]:
    """Sentences (one token per line, first column) and the blank/-DOCSTART- lines between them."""
    sentence = Block()
    for _, line in read_lines(path, cursor):
        parts = line.split("\t") if "\t" in line else line.split(" ")
        token = next((p.strip(" ") for p in parts if p.strip(" ")), "")
        if not token or token == DOCSTART:
            if sentence.is_sentence:
                yield sentence
                sentence = Block()
            yield Block([line], docstart=token == DOCSTART)
            continue
        sentence.lines.append(line)
        sentence.tokens.append(token)
    if sentence.is_sentence:
        yield sentence


def conll_line(line: str, label: str) -> str:
    """The input line plus a label column, separated as the line's own columns are."""
    body = line.rstrip(" \t")
    return f"{body}{chr(9) if chr(9) in body else ' '}{label}"


def read_units(path: str, fmt: str, cursor: Cursor | None = None) -> Iterator[Document | Block]:
    """What ``tc predict`` tags one by one and writes back in order: documents, or CoNLL blocks."""
    return read_conll_blocks(path, cursor) if fmt == "conll" else read_documents(path, fmt, cursor)
