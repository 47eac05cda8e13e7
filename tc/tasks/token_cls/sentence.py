"""A sentence (words, IOB2 labels, where it came from) and reading a data file as checked text.

Every reader of token_cls data produces ``Sentence`` objects; each remembers its file and line so that
later errors (a bad label, a label unknown to the model) can point at ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tc.core.errors import DataError
from tc.tasks.token_cls import textio

__all__ = ["LINE_SPACE", "Sentence", "read_text"]

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


def read_text(path: Path) -> str:
    """The data file as text; missing, unreadable, non-UTF-8 or empty files are user errors (a BOM is
    dropped: word readers have no use for it)."""
    text, _ = textio.read_text(path, "file", expected="data file")
    if not text.strip(LINE_SPACE):  # not str.strip(): \x1f, \x85, \xa0... can be tokens
        raise DataError(f"{path}: file is empty")
    return text
