"""PubTator: ``PMID|t|title``, ``PMID|a|abstract``, then ``PMID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>id...]``.

Offsets index ``title + " " + abstract`` (the title passage at 0, the abstract at ``len(title) + 1``).
Lines after the text that are not mentions (relation lines ``PMID<TAB>CID<TAB>...``, blank lines) are
kept in their place; a document read and written back is byte-identical. Predicted mentions replace
the mention lines where the first one stood (relation lines stay: they name concept ids, not lines).
A discontinuous mention from another format is written as its whole span. Columns after the type go
to ``infons["identifier"]`` (the sixth) and ``infons["pubtator_more"]`` (the rest, tab-joined, e.g.
CDR's composite mention names).

**Line ends**: each document keeps the line end it was read with (``\\r\\n`` or ``\\n``: its title line's),
its abstract line its own, and its last line ends as read, so a CRLF file without a final line break
comes back without a stray ``\\r``. **Refused before anything is written** (one DataError naming the
document): an id PubTator cannot hold (empty, or holding ``|``, a tab or a line break: the title line
``PMID|t|`` and the tab-separated mention lines would read back as another id or as broken lines), and a
title or abstract ending in ``\\r`` on a ``\\n`` line (the reader takes that ``\\r`` for half of a CRLF line
end, so the text would come back one character short and every later offset would shift). Line breaks
and tabs inside a text become spaces, one for one, so offsets hold (``characters_replaced``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError
from tc.core.fs import atomic_writer
from tc.tasks.token_cls.documents.brat import _where
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
        self.abstract_cr = cr
        self.last_cr = cr
        """What ended the abstract line and the document's last line before its ``\\n`` (``\\r`` or nothing):
        the last line of a CRLF file without a final line break has no ``\\r``, and must not get one."""
        self.mentions: list[Mention] = []
        self.layout: list[tuple[str, str]] = []
        self.mention_lines: list[int] = []

    def add(self, number: int, raw: str) -> None:
        line = raw[:-1] if raw.endswith("\r") else raw
        self.last_cr = raw[len(line) :]
        match = _TEXT_LINE.match(line)
        if match and match.group(1) == self.pmid and match.group(2) == "a":
            if self.abstract is not None or self.layout:
                raise DataError(f"{self.path}:{number}: abstract line of document {self.pmid} must directly "
                                "follow its title line")
            self.abstract, self.abstract_cr = match.group(3), self.last_cr
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
        state = {"layout": self.layout, "cr": self.cr, "abstract_cr": self.abstract_cr, "last_cr": self.last_cr}
        extra = {"read_mentions": list(self.mentions), NAME: state}
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
    for name, value in zip(("type", "identifier"), parts[4:], strict=False):
        if any(c in value for c in "\t\r\n"):
            raise DataError(f"{_where(doc)}: mention {mention.start}-{mention.end}: its {name} {value!r} holds a tab "
                            "or a line break, which would end PubTator's mention line; change it or write another "
                            "format")
    if "pubtator_more" in mention.infons:  # the columns after the sixth, tab-joined as read
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


_ID_PROBLEMS = (("|", "'|', which ends the id in PMID|t|title"), ("\t", "a tab, which ends the id in a mention line"),
                ("\n", "a line break"), ("\r", "a line break"))


def check_writable(doc: Document, title: str, abstract: str | None, cr: str, abstract_cr: str) -> None:
    """Refuse, naming the document, what PubTator cannot hold so that it reads back the same (the module
    docstring): an id that is empty or holds ``|``, a tab or a line break, and a title or abstract (line
    breaks already spaces) ending in ``\\r`` on a line without its own ``\\r``."""
    problem = "it is empty" if not doc.id else next(
        (f"it holds {what}" for char, what in _ID_PROBLEMS if char in doc.id), None)
    if problem is not None:
        raise DataError(f"{_where(doc)}: id cannot be a PubTator id ({problem}); give the document another id "
                        "or write another format")
    first = "text" if abstract is None else "title"  # one passage: the whole text (JSONL, a BRAT .txt)
    for name, text, end in ((first, title, cr), ("abstract", abstract, abstract_cr)):
        if text is not None and text.endswith("\r") and not end:
            raise DataError(f"{_where(doc)}: its {name} ends with a carriage return (\\r), which PubTator would "
                            "read back as part of the line end, shifting every later offset; remove it or write "
                            "another format")


def document_lines(doc: Document) -> tuple[list[str], int]:
    """The lines of one document, title first, and how many line breaks and tabs in its text became
    spaces (PubTator holds each text on one line and its mention texts between tabs; a space keeps
    every offset). What PubTator cannot hold is refused (``check_writable``); the last line ends as it
    was read (``last_cr``), so a file without a final line break gets no stray ``\\r``."""
    title, abstract = _title_abstract(doc)
    replaced = sum(text.count("\n") + text.count("\t") for text in (title, abstract or ""))
    title, abstract = _flat(title), None if abstract is None else _flat(abstract)
    state = doc.extra.get(NAME, {})
    cr = state.get("cr", "")
    abstract_cr = state.get("abstract_cr", cr)
    check_writable(doc, title, abstract, cr, abstract_cr)
    head = [f"{doc.id}|t|{title}{cr}"]
    if abstract is not None:
        head.append(f"{doc.id}|a|{abstract}{abstract_cr}")
    tail = render_layout(doc, state, lambda mentions: [_mention_line(doc, m, cr) for m in mentions])
    lines = head + tail
    if cr and not state.get("last_cr", cr) and lines[-1].endswith(cr):
        lines[-1] = lines[-1][: -len(cr)]
    return lines, replaced


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
