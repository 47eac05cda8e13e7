"""A sentence (words, IOB2 labels, where it came from) and reading a data file as checked text.

Every reader of token_cls data produces ``Sentence`` objects; each remembers its file and line so that
later errors (a bad label, a label unknown to the model) can point at ``file:line``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from tc.core.errors import DataError

__all__ = ["LINE_SPACE", "Sentence", "not_a_file", "read_text"]

LINE_SPACE = " \t\r\n"
"""Stripped from line ends. Only ASCII: a token may legitimately start with e.g. a no-break space."""


@dataclass(frozen=True, slots=True)
class Sentence:
    """Words of one sentence with IOB2 labels (``None`` for unlabeled input) and where they came from.

    ``line`` is the 1-based line of the first word; in CoNLL files word ``i`` sits on ``line + i``
    (``per_line``), in prepared CSVs the whole sentence is one row. ``doc_index`` is the document the
    sentence belongs to within its source (a CoNLL file's ``-DOCSTART-`` lines count them), ``None``
    where the source marks no documents: then the whole source is one document for context.
    """

    words: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    source: str = "<memory>"
    line: int = 0
    per_line: bool = True
    doc_index: int | None = None

    def where(self, i: int = 0) -> str:
        """``file:line`` of word ``i``, for error messages."""
        if self.per_line:
            return f"{self.source}:{self.line + i}"
        return f"{self.source}:{self.line} (word {i + 1})"


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when something is there but it is not a regular file (a directory, a broken or
    looping symlink, a FIFO or device); None for a regular file or for nothing at all."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symlink loop (it never reaches a file)"
            return f"is a broken symlink: its target {os.readlink(path)} does not exist"
    if path.is_dir():
        return "is a directory, expected a data file"
    if path.exists() and not path.is_file():
        return "is not a regular file (a FIFO, socket or device)"
    return None


def read_text(path: Path) -> str:
    """The file as text; missing, unreadable, non-UTF-8 or empty files are user errors."""
    what = not_a_file(path)
    if what is not None:
        raise DataError(f"{path}: {what}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if not text.strip(LINE_SPACE):  # not str.strip(): \x1f, \x85, \xa0... can be tokens
        raise DataError(f"{path}: file is empty")
    return text
