"""Documents, passages and mentions: the format-neutral shape every reader produces and every writer takes.

A ``Document`` is a character space (``text``) with mentions given as ``[start, end)`` offsets into it.
Formats that hold several pieces of text (a PubTator title and abstract, BioC passages) place each piece
at its offset and fill the gaps with spaces, so that every format's own offsets index ``text`` directly
(PubTator's ``title + " " + abstract`` is exactly that).

What a format holds beyond text and mentions (PubTator relation lines, BRAT ``R``/``E``/``A`` lines, the
BioC collection and its relations, the JSONL record's other keys) lives in ``Document.extra[name]``,
a dict private to the format ``name`` (so converting to another format never carries it along), and a
document read and written back in its own format comes out byte-identical; ``extra["read_mentions"]``
is the mentions as read, which writers compare against to know whether they may copy the original
lines verbatim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tc.core.errors import DataError

__all__ = [
    "Document",
    "Mention",
    "Passage",
    "check_mention",
    "fresh_ids",
    "render_layout",
    "with_mentions",
]


@dataclass(frozen=True)
class Mention:
    """One annotated (or predicted) span: ``text == document.text[start:end]`` for contiguous mentions.

    ``fragments`` holds the pieces of a discontinuous mention (BRAT ``0 5;10 15``, BioC locations);
    ``start``/``end`` are then its first start and last end, the span tc trains and scores on (the rule
    documented in ``tc.tasks.token_cls.documents``). ``id`` is the annotation's own id (BRAT ``T1``,
    BioC ``<annotation id>``); ``infons`` is everything else the format says about it (PubTator's concept
    identifier, BioC infons, in their order).
    """

    start: int
    end: int
    type: str
    text: str | None = None
    id: str | None = None
    infons: dict[str, Any] = field(default_factory=dict)
    fragments: tuple[tuple[int, int], ...] = ()
    score: float | None = None
    rule: str | None = None
    """The document rule that made or retyped this predicted mention (``rules.py``), None for the model's own."""

    @property
    def discontinuous(self) -> bool:
        return len(self.fragments) > 1

    @property
    def span(self) -> tuple[int, int, str]:
        """``(start, end, type)``: what exact-offset scoring compares."""
        return self.start, self.end, self.type


@dataclass(frozen=True)
class Passage:
    """A piece of the document's text placed at ``offset`` (BioC passage; PubTator title or abstract)."""

    offset: int
    text: str
    infons: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.offset + len(self.text)


@dataclass
class Document:
    """A document: its passages, its mentions (gold or predicted) and what its format keeps besides.

    ``text`` (computed) is the passages laid out at their offsets with spaces in between: the character
    space every mention offset indexes. ``source`` names the file it came from, for error messages.
    """

    id: str
    passages: tuple[Passage, ...]
    mentions: list[Mention] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    text: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.passages = tuple(self.passages)
        self.text = _layout(self.passages, self.source, self.id)

    @classmethod
    def from_text(cls, id: str, text: str, mentions: Sequence[Mention] = (), source: str = "<memory>",
                  **extra: Any) -> Document:
        """A one-passage document (BRAT, JSONL, plain text)."""
        return cls(str(id), (Passage(0, text),), list(mentions), dict(extra), source)

    def where(self) -> str:
        return f"{self.source}: document {self.id}"


def _layout(passages: Sequence[Passage], source: str, doc_id: str) -> str:
    """Passages at their offsets, gaps filled with spaces; passages must not overlap or go backwards."""
    parts: list[str] = []
    end = 0
    for number, passage in enumerate(passages, start=1):
        if passage.offset < end:
            raise DataError(f"{source}: document {doc_id}: passage {number} starts at offset {passage.offset}, "
                            f"inside the previous passage (which ends at {end})")
        parts.append(" " * (passage.offset - end))
        parts.append(passage.text)
        end = passage.end
    return "".join(parts)


def with_mentions(doc: Document, mentions: Sequence[Mention]) -> Document:
    """A copy of ``doc`` carrying ``mentions`` instead of its own (extra and passages shared, not copied)."""
    return dataclasses.replace(doc, mentions=list(mentions))


def check_mention(doc_text: str, mention: Mention, where: str) -> None:
    """Raise a DataError naming ``where`` when ``mention``'s offsets do not fit the text it claims.

    A discontinuous mention's ``text`` may be its fragments joined by single spaces (BRAT's and BioC's
    convention) or the whole covered text. A mention without ``text`` is only checked for range.
    """
    pieces = mention.fragments or ((mention.start, mention.end),)
    for start, end in pieces:
        if not 0 <= start < end:
            raise DataError(f"{where}: mention {start}-{end} is empty or reversed (end must be greater than start)")
        if end > len(doc_text):
            raise DataError(f"{where}: mention {start}-{end} ends past the document text "
                            f"({len(doc_text)} characters)")
    if mention.text is None:
        return
    found = " ".join(doc_text[s:e] for s, e in pieces)
    if mention.text == found or (len(pieces) > 1 and mention.text == doc_text[mention.start : mention.end]):
        return
    span = ";".join(f"{s}-{e}" for s, e in pieces)
    raise DataError(f"{where}: mention {span} expected {mention.text!r} but the text has {found!r}")


def fresh_ids(taken: set[str], prefix: str, count: int) -> list[str]:
    """``count`` ids ``prefix1, prefix2, ...`` that are not in ``taken`` (for predicted annotations)."""
    out: list[str] = []
    number = 1
    while len(out) < count:
        candidate = f"{prefix}{number}"
        if candidate not in taken:
            out.append(candidate)
        number += 1
    return out


def render_layout(doc: Document, state: dict[str, Any], render: Callable[[Sequence[Mention]], list[str]],
                  keep: Callable[[str], bool] = lambda line: True) -> list[str]:
    """The lines after a document's text lines, in a line-based format (PubTator, BRAT ``.ann``).

    ``state["layout"]`` (the format's part of ``doc.extra``) lists the lines as read: ``("mention", raw)``
    or ``("keep", raw)``. When the document still carries the mentions it was read with, the raw lines
    come back verbatim (byte identity). Otherwise ``render(mentions)`` replaces all mention lines at the
    place of the first one (or first of all when there was none), and the kept lines stay in order where
    ``keep(raw)`` allows.
    """
    layout: list[tuple[str, str]] = state.get("layout", [])
    if layout and doc.mentions == doc.extra.get("read_mentions"):
        return [raw for _, raw in layout]
    rendered = render(doc.mentions)
    out: list[str] = []
    placed = False
    for kind, raw in layout:
        if kind == "mention":
            if not placed:
                out.extend(rendered)
                placed = True
        elif keep(raw):
            out.append(raw)
    return out if placed else [*rendered, *out]
