"""BRAT standoff: ``doc.txt`` (the text, exactly) beside ``doc.ann`` (``T1<TAB>Type 0 8<TAB>Naloxone``).

A path may be a folder of ``.txt``/``.ann`` pairs (one document per ``.txt``; the id is its stem; a
``.txt`` without ``.ann`` is a document without mentions, to predict on), one ``.ann`` or one ``.txt``.

Only ``T`` lines are mentions. **Discontinuous rule**: a ``T`` with several fragments (``0 5;10 15``) is
kept as its fragments in the file, and trained and scored as the span from its first start to its last
end (BioC's ``total_span``); readers count them (``AlignReport.discontinuous``). Every other line
(``R`` relations, ``E`` events, ``A``/``M`` attributes, ``N`` normalisations, ``#`` notes, ``*``
equivalences) is kept in place and counted in ``extra["brat"]["kept_kinds"]``. Writing the mentions read gives
the ``.ann`` back byte-identically; writing other mentions (predictions) gives ``T1..Tn`` and drops
those other lines, which refer to the ``T`` ids read (the count is returned as ``lines_dropped``).

**File names from ids**: a folder is written as ``<id>.txt``/``<id>.ann``, the id unchanged, so that
reading the folder back gives the same ids. An id that cannot be such a name on every common file system
is refused, for all documents before any file is written (:func:`pair_paths`): empty, starting with a
dot, holding ``/``, ``\\`` or a control character (NUL included), ending in a dot or a space, a Windows
device name (``CON``, ``NUL``, ``COM1``, ...), longer than the file system allows, or the same as
another document's id up to case and Unicode normalisation.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tc.core.errors import DataError
from tc.core.fs import atomic_writer, check_distinct
from tc.tasks.token_cls.documents.model import Document, Mention, Passage, check_mention, render_layout
from tc.tasks.token_cls.textio import join_lines, read_text, split_lines

__all__ = ["pair_paths", "read_brat", "write_brat"]

_SPAN = re.compile(r"([0-9]+) ([0-9]+)\Z")
_SHAPE = "T1<TAB>Type start end[;start end...]<TAB>text"


def _pairs(path: Path) -> list[tuple[Path, Path]]:
    """``(txt, ann)`` paths to read; a folder gives all of its ``.txt`` files, in name order."""
    if path.is_dir():
        txts = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
        stray = sorted(p for p in path.iterdir() if p.suffix == ".ann" and not p.with_suffix(".txt").is_file())
        if stray:
            raise DataError(f"{stray[0]}: BRAT annotations without their text file {stray[0].with_suffix('.txt').name}")
        if not txts:
            raise DataError(f"{path}: no BRAT documents (no .txt files)")
        return [(t, t.with_suffix(".ann")) for t in txts]
    if path.suffix == ".ann":
        if not path.with_suffix(".txt").is_file():
            raise DataError(f"{path}: BRAT annotations without their text file {path.with_suffix('.txt').name}")
        return [(path.with_suffix(".txt"), path)]
    if not path.exists():
        raise DataError(f"{path}: BRAT file not found")
    return [(path, path.with_suffix(".ann"))]


def _parse_t(ann: Path, number: int, line: str) -> Mention:
    parts = line.split("\t", 2)  # the text (third field) may itself hold tabs
    if len(parts) != 3 or " " not in parts[1]:
        raise DataError(f"{ann}:{number}: malformed T line {line[:80]!r} (expected {_SHAPE})")
    kind, _, spans = parts[1].partition(" ")
    fragments = []
    for piece in spans.split(";"):
        match = _SPAN.match(piece.strip(" "))
        if match is None:
            raise DataError(f"{ann}:{number}: malformed offsets {spans!r} in T line (expected {_SHAPE})")
        fragments.append((int(match.group(1)), int(match.group(2))))
    start, end = min(s for s, _ in fragments), max(e for _, e in fragments)
    return Mention(start, end, kind, parts[2], parts[0], {}, tuple(fragments) if len(fragments) > 1 else ())


def _read_one(txt: Path, ann: Path) -> Document:
    text, _ = read_text(txt, "BRAT text file")
    doc = Document(txt.stem, (Passage(0, text),), [], {}, str(ann if ann.is_file() else txt))
    layout: list[tuple[str, str]] = []
    kinds: Counter[str] = Counter()
    final_newline = True
    if ann.is_file():
        lines, final_newline = split_lines(read_text(ann, "BRAT annotation file")[0])
        if lines == [""]:
            lines = []
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r")
            if line.startswith("T"):
                mention = _parse_t(ann, number, line)
                check_mention(text, mention, f"{ann}:{number}: document {doc.id}")
                doc.mentions.append(mention)
                layout.append(("mention", raw))
            else:
                layout.append(("keep", raw))
                if line.strip():
                    kinds[line[0]] += 1
    doc.extra.update(read_mentions=list(doc.mentions),
                     brat={"layout": layout, "kept_kinds": dict(kinds), "final_newline": final_newline})
    return doc


def read_brat(path: Path) -> list[Document]:
    """Documents of a BRAT folder or file pair (see the module docstring)."""
    return [_read_one(txt, ann) for txt, ann in _pairs(Path(path))]


def _t_line(doc_text: str, mention: Mention, id: str) -> str:
    """A ``T`` line; a mention across line breaks becomes one fragment per line, as brat itself does."""
    pieces = mention.fragments or ((mention.start, mention.end),)
    if "\n" in doc_text[mention.start : mention.end] and not mention.fragments:
        pieces = tuple(_lines_of(doc_text, mention.start, mention.end))
        text = " ".join(doc_text[s:e] for s, e in pieces)
    else:
        text = (mention.text or "").replace("\n", " ")
    spans = ";".join(f"{s} {e}" for s, e in pieces)
    return f"{id}\t{mention.type} {spans}\t{text}"


def _lines_of(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The non-empty pieces of ``text[start:end]`` between line breaks (the span ends stay put)."""
    out, at = [], start
    for i in range(start, end + 1):
        if i == end or text[i] == "\n":
            if i > at:
                out.append((at, i))
            at = i + 1
    return out


_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?\Z", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of ``folder`` (or its nearest existing parent) allows."""
    for place in (folder, *folder.parents):
        with contextlib.suppress(OSError, ValueError):
            if place.is_dir():
                return os.pathconf(place, "PC_NAME_MAX")
    return 255


def _unnameable(doc_id: str, name_max: int) -> str | None:
    """Why ``doc_id`` cannot name ``<id>.txt`` and ``<id>.ann`` (see the module docstring), or None."""
    if not doc_id:
        return "it is empty"
    if doc_id.startswith("."):
        return "a name starting with '.' is hidden"
    if "/" in doc_id or "\\" in doc_id:
        return "it holds a path separator"
    if _CONTROL.search(doc_id):
        return "it holds a control character"
    if doc_id[-1] in ". ":
        return "Windows drops a final dot or space"
    if _RESERVED.match(doc_id):
        return "it is a device name on Windows"
    size = len(doc_id.encode("utf-8", "surrogateescape")) + len(".txt")
    if size > name_max:
        return f"<id>.txt would be {size} bytes, longer than the file system allows ({name_max})"
    return None


def _where(doc: Document) -> str:
    """``source[:line]: document 'id'``, a long id cut short so the message stays one readable line."""
    line = doc.extra.get("jsonl", {}).get("line")
    shown = repr(doc.id) if len(doc.id) <= 60 else f"{doc.id[:40]!r}... ({len(doc.id)} characters)"
    return f"{doc.source}{'' if line is None else f':{line}'}: document {shown}"


def pair_paths(path: Path, docs: Sequence[Document], flag: str = "") -> list[tuple[Path, Path]]:
    """The ``(txt, ann)`` pair each document is written to: the pair named by ``path`` (a ``.ann`` or
    ``.txt``, one document), or ``<id>.txt``/``<id>.ann`` in the folder ``path``. Every id is checked
    before any file is written: one that cannot be a file name, or two that would land on one file, are
    a DataError (``flag`` starts the message of a clash, e.g. ``--output``)."""
    path = Path(path)
    if path.suffix in (".ann", ".txt"):
        if len(docs) != 1:
            raise DataError(f"{f'{flag} ' if flag else ''}{path}: {len(docs)} documents do not fit one BRAT "
                            "file pair; give a folder")
        return [(path.with_suffix(".txt"), path.with_suffix(".ann"))]
    name_max = _name_max(path)
    for doc in docs:
        reason = _unnameable(doc.id, name_max)
        if reason is not None:
            raise DataError(f"{_where(doc)}: id cannot name a BRAT file pair in {path} ({reason})")
    check_distinct(((_where(d), path / f"{d.id}.txt") for d in docs), flag)
    return [(path / f"{d.id}.txt", path / f"{d.id}.ann") for d in docs]


def write_brat(path: Path, docs: Sequence[Document]) -> dict[str, int]:
    """Write each document as ``<id>.txt`` and ``<id>.ann`` in the folder ``path`` (or, for a single
    document, the pair named by ``path``'s ``.ann`` or ``.txt``). Every name is checked first; a write
    that fails part way removes the files this call created, so a folder is never left half new."""
    created: list[Path] = []
    dropped = 0
    try:
        for doc, (txt, ann) in zip(docs, pair_paths(Path(path), docs), strict=True):
            state = doc.extra.get("brat", {})

            def render(mentions: Sequence[Mention], text: str = doc.text) -> list[str]:
                return [_t_line(text, m, f"T{i}") for i, m in enumerate(mentions, start=1)]

            lines = render_layout(doc, state, render, keep=lambda raw: not raw.strip())
            if doc.mentions != doc.extra.get("read_mentions"):
                dropped += sum(1 for kind, raw in state.get("layout", []) if kind == "keep" and raw.strip())
            if not txt.is_file() or txt.read_bytes() != doc.text.encode("utf-8"):
                _write(txt, doc.text, created)
            _write(ann, join_lines(lines, state.get("final_newline", True)), created)
    except BaseException:
        for made in created:
            with contextlib.suppress(OSError):
                made.unlink()
        raise
    return {"documents": len(docs), "mentions": sum(len(d.mentions) for d in docs), "lines_dropped": dropped}


def _write(path: Path, text: str, created: list[Path]) -> None:
    """One file of a pair, atomically; ``created`` collects the files that were not there before."""
    new = not os.path.lexists(path)
    with atomic_writer(path, "w", newline="") as handle:
        handle.write(text)
    if new:
        created.append(path)
