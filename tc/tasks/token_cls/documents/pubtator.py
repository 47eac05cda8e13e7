"""PubTator: ``PMID|t|title``, ``PMID|a|abstract``, then ``PMID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>id...]``.

Offsets index ``title + " " + abstract`` (the title passage at 0, the abstract at ``len(title) + 1``).
Lines after the text that are not mentions (relation lines ``PMID<TAB>CID<TAB>...``, blank lines) are
kept in their place; a document read and written back is byte-identical. Predicted mentions replace
the mention lines where the first one stood (relation lines stay: they name concept ids, not lines).
A discontinuous mention from another format is written as its whole span. Columns after the type go
to ``infons["identifier"]`` (the sixth) and ``infons["pubtator_more"]`` (the rest, tab-joined, e.g.
CDR's composite mention names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError
from tc.core.fs import atomic_writer
from tc.tasks.token_cls.documents.model import Document, Mention, Passage, check_mention, render_layout
from tc.tasks.token_cls.textio import BOM, join_lines, read_text, split_lines

__all__ = ["read_pubtator", "write_pubtator"]

NAME = "pubtator"
_TEXT_LINE = re.compile(r"([^|\t]+)\|([ta])\|(.*)\Z", re.DOTALL)
_INT = re.compile(r"[0-9]+\Z")
_SHAPE = "PMID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>identifier]"


def _mention_problem(parts: list[str]) -> str | None:
    """What is wrong with the columns of a mention line, or None."""
    if len(parts) < 5:
        return f"{len(parts)} columns, not 5 or more"
    for name, value in (("start", parts[1]), ("end", parts[2])):
        if not _INT.match(value):
            return f"{name} {value!r} is not an offset (a whole number from 0)"
    return None


class _Builder:
    """One document being read: its text lines, then the lines after them."""

    def __init__(self, path: Path, pmid: str, title: str, line: int, cr: str) -> None:
        self.path, self.pmid, self.title, self.line, self.cr = path, pmid, title, line, cr
        self.abstract: str | None = None
        self.mentions: list[Mention] = []
        self.layout: list[tuple[str, str]] = []
        self.mention_lines: list[int] = []

    def add(self, number: int, raw: str) -> None:
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _TEXT_LINE.match(line)
        if match and match.group(1) == self.pmid and match.group(2) == "a":
            if self.abstract is not None or self.layout:
                raise DataError(f"{self.path}:{number}: abstract line of document {self.pmid} must directly "
                                "follow its title line")
            self.abstract = match.group(3)
            return
        if not line.strip():
            self.layout.append(("keep", raw))
            return
        parts = line.split("\t")
        if len(parts) < 2 or parts[0] != self.pmid:
            other = match.group(1) if match else parts[0]
            raise DataError(f"{self.path}:{number}: line of document {other!r} inside document {self.pmid} "
                            f"(expected {self.pmid}|a|..., {self.pmid}<TAB>... or a blank line)")
        if not _INT.match(parts[1]) and not self._meant_as_mention(parts):
            self.layout.append(("keep", raw))  # a relation line (PMID<TAB>CID<TAB>...) or other annotation
            return
        bad = _mention_problem(parts)
        if bad is not None:
            raise DataError(f"{self.path}:{number}: malformed mention line {line[:80]!r} (expected {_SHAPE}): {bad}")
        infons = {}
        if len(parts) > 5:
            infons["identifier"] = parts[5]
        if len(parts) > 6:
            infons["pubtator_more"] = "\t".join(parts[6:])
        self.mentions.append(Mention(int(parts[1]), int(parts[2]), parts[4], parts[3], None, infons))
        self.mention_lines.append(number)
        self.layout.append(("mention", raw))

    def _meant_as_mention(self, parts: list[str]) -> bool:
        """Whether a line whose start column is not a whole number is a mention line gone wrong, not a
        relation line (``PMID<TAB>CID<TAB>D1<TAB>D2``, BioRED's ``PMID<TAB>Association<TAB>5290<TAB>...``).

        Relation lines name a relation type there, a word. A start that reads like a number (a sign, a
        digit, a point, a space, nothing: ``-1``, ``1.5``, `` 3``) is a broken mention; so is any start
        (``abc``) when the end and text columns fit the text (the text column is the text ending at the
        end offset). Keeping such a line would copy gold into predicted output and drop it from training.
        """
        start = parts[1]
        if not start or start[0] in "+-." or start[0].isspace() or start[0].isdigit():
            return True
        if len(parts) < 5 or not _INT.match(parts[2]) or not parts[3]:
            return False
        text = self.title if self.abstract is None else f"{self.title} {self.abstract}"
        end = int(parts[2])
        return len(parts[3]) <= end <= len(text) and text[end - len(parts[3]) : end] == parts[3]

    def build(self) -> Document:
        passages = [Passage(0, self.title, {"type": "title"})]
        if self.abstract is not None:
            passages.append(Passage(len(self.title) + 1, self.abstract, {"type": "abstract"}))
        extra = {"read_mentions": list(self.mentions), NAME: {"layout": self.layout, "cr": self.cr}}
        doc = Document(self.pmid, tuple(passages), list(self.mentions), extra, str(self.path))
        for mention, number in zip(self.mentions, self.mention_lines, strict=True):
            check_mention(doc.text, mention, f"{self.path}:{number}: document {self.pmid}")
        return doc


def read_pubtator(path: Path) -> list[Document]:
    """Documents of a PubTator file; malformed lines and mismatching offsets name ``file:line``."""
    path = Path(path)
    text, bom = read_text(path, "PubTator file")
    lines, final_newline = split_lines(text)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    current: _Builder | None = None
    leading: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _TEXT_LINE.match(line)
        if match and match.group(2) == "t":
            pmid = match.group(1)
            if pmid in seen:
                raise DataError(f"{path}:{number}: document {pmid} appears twice (first at line {seen[pmid]})")
            seen[pmid] = number
            if current is not None:
                docs.append(current.build())
            current = _Builder(path, pmid, match.group(3), number, "\r" if raw.endswith("\r") else "")
        elif current is not None:
            current.add(number, raw)
        elif line.strip():
            raise DataError(f"{path}:{number}: expected a title line PMID|t|title before {line[:60]!r}")
        else:
            leading.append(raw)
    if current is None:
        raise DataError(f"{path}: no PubTator documents (no PMID|t|title line)")
    docs.append(current.build())
    docs[0].extra[NAME].update(leading=leading, bom=bom)
    docs[-1].extra[NAME]["final_newline"] = final_newline
    return docs


def _mention_line(doc: Document, mention: Mention, cr: str) -> str:
    """A mention line; PubTator has no fragments, so a discontinuous mention is written as its whole
    span (the span tc trains and scores on) with that span's text."""
    pmid = doc.id
    whole = mention.text is None or mention.discontinuous
    text = doc.text[mention.start : mention.end] if whole else str(mention.text)
    parts = [pmid, str(mention.start), str(mention.end), _flat(text), mention.type]
    if "identifier" in mention.infons:
        parts.append(str(mention.infons["identifier"]))
    if "pubtator_more" in mention.infons:
        parts.append(str(mention.infons["pubtator_more"]))
    return "\t".join(parts) + cr


def _title_abstract(doc: Document) -> tuple[str, str | None]:
    """Title and abstract whose ``title + " " + abstract`` is ``doc.text`` (offsets unchanged).

    A PubTator document keeps its pair; any other document's first passage becomes the title and the
    rest of the text the abstract when a space separates them, else the whole text is the title.
    """
    if doc.passages and doc.passages[0].offset == 0:
        first = doc.passages[0].text
        if len(doc.passages) == 1:
            return first, None
        if doc.text[len(first) : len(first) + 1] == " ":
            return first, doc.text[len(first) + 1 :]
    return doc.text, None


def _flat(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ")


def document_lines(doc: Document) -> tuple[list[str], int]:
    """The lines of one document, title first, and how many line breaks and tabs in its text became
    spaces (PubTator holds each text on one line and its mention texts between tabs; a space keeps
    every offset)."""
    title, abstract = _title_abstract(doc)
    replaced = sum(text.count("\n") + text.count("\t") for text in (title, abstract or ""))
    title, abstract = _flat(title), None if abstract is None else _flat(abstract)
    state = doc.extra.get(NAME, {})
    cr = state.get("cr", "")
    head = [f"{doc.id}|t|{title}{cr}"]
    if abstract is not None:
        head.append(f"{doc.id}|a|{abstract}{cr}")
    tail = render_layout(doc, state, lambda mentions: [_mention_line(doc, m, cr) for m in mentions])
    return head + tail, replaced


def write_pubtator(path: Path, docs: Sequence[Document]) -> dict[str, int]:
    """Write ``docs`` as PubTator: documents read from PubTator exactly as read (their own blank lines),
    others with a blank line before them."""
    states = [d.extra.get(NAME, {}) for d in docs]
    lines: list[str] = list(states[0].get("leading", [])) if docs else []
    replaced = 0
    previous: dict[str, Any] | None = None
    for doc, state in zip(docs, states, strict=True):
        fresh = "layout" not in state or (previous is not None and "layout" not in previous)
        if previous is not None and fresh and lines[-1].strip():
            lines.append("")
        block, count = document_lines(doc)
        lines.extend(block)
        replaced += count
        previous = state
    final = states[-1].get("final_newline", True) if docs else True
    with atomic_writer(path, "w", newline="") as handle:
        if docs and states[0].get("bom"):
            handle.write(BOM)
        handle.write(join_lines(lines, final))
    return {"documents": len(docs), "mentions": sum(len(d.mentions) for d in docs), "characters_replaced": replaced}
