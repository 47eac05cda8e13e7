"""The document format registry: one reader/writer pair per format, found by name or by file suffix.

``read_documents(path, fmt=None)`` and ``write_documents(path, docs, fmt=None)`` are all the rest of tc
needs; ``fmt`` (the config's ``format:`` key, ``--output-format``) overrides the suffix. ``.json`` is
BioC JSON unless its first line is a whole JSON object with a ``"text"`` string (then JSONL, as
``tc predict`` writes); a folder, a ``.ann``, or a ``.txt`` with a ``.ann`` beside it is BRAT.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tc.core.errors import DataError
from tc.tasks.token_cls.documents import bioc_io, brat, jsonl, pubtator
from tc.tasks.token_cls.documents.model import Document
from tc.tasks.token_cls.textio import not_a_file

__all__ = ["FORMATS", "DocumentFormat", "detect_format", "find_document_split", "read_documents",
           "register_format", "write_documents"]

Reader = Callable[[Path], list[Document]]
Writer = Callable[[Path, Sequence[Document]], dict[str, int]]


@dataclass(frozen=True)
class DocumentFormat:
    """A format: its name (the ``format:`` value), the suffixes that select it, its reader and writer."""

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    write: Writer
    folder: bool = False
    """Whether a split may be a folder (BRAT: one ``.txt``/``.ann`` pair per document)."""


FORMATS: dict[str, DocumentFormat] = {}


def register_format(fmt: DocumentFormat) -> None:
    """Add a format; a name or suffix taken by another format is a programming error."""
    if fmt.name in FORMATS:
        raise ValueError(f"document format {fmt.name!r} is registered twice")
    taken = {s: f.name for f in FORMATS.values() for s in f.suffixes}
    clash = [s for s in fmt.suffixes if s in taken and not (s == ".json" and {fmt.name, taken[s]} ==
                                                               {"bioc_json", "jsonl"})]
    if clash:
        raise ValueError(f"suffix {clash[0]} of {fmt.name!r} already selects {taken[clash[0]]!r}")
    FORMATS[fmt.name] = fmt


for _fmt in (
    DocumentFormat("pubtator", (".pubtator", ".pubtator.txt"), pubtator.read_pubtator, pubtator.write_pubtator),
    DocumentFormat("bioc_xml", (".bioc.xml", ".xml"), bioc_io.read_bioc_xml, bioc_io.write_bioc_xml),
    DocumentFormat("bioc_json", (".bioc.json", ".json"), bioc_io.read_bioc_json, bioc_io.write_bioc_json),
    DocumentFormat("brat", (".ann",), brat.read_brat, brat.write_brat, folder=True),
    DocumentFormat("jsonl", (".jsonl", ".ndjson"), jsonl.read_jsonl, jsonl.write_jsonl),
):
    register_format(_fmt)


def _names() -> str:
    return ", ".join(FORMATS)


def _by_name(fmt: str, where: str) -> DocumentFormat:
    key = fmt.lower().replace("-", "_")
    key = {"bioc": "bioc_xml", "json": "jsonl", "spans": "jsonl"}.get(key, key)
    if key not in FORMATS:
        raise DataError(f"{where}: unknown document format {fmt!r} (valid: {_names()})")
    return FORMATS[key]


def _looks_jsonl(path: Path) -> bool:
    """A ``.json`` file whose first line is one complete object with a ``"text"`` string."""
    try:
        with path.open("r", encoding="utf-8-sig") as handle:
            first = handle.readline()
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and isinstance(record.get("text"), str)


def detect_format(path: str | Path, fmt: str | None = None, writing: bool = False) -> DocumentFormat:
    """The format of ``path``: ``fmt`` when given, else from the suffix (see the module docstring)."""
    path = Path(path)
    if fmt:
        return _by_name(fmt, str(path))
    name = path.name.lower()
    if path.is_dir() or (writing and not path.suffix):
        return FORMATS["brat"]
    if name.endswith(".txt") and not name.endswith(".pubtator.txt"):
        if path.with_suffix(".ann").is_file() or writing:
            return FORMATS["brat"]
        raise DataError(f"{path}: a .txt file is BRAT only with a .ann file beside it; name the format "
                        f"(valid: {_names()})")
    if name.endswith(".json") and not name.endswith(".bioc.json") and not writing and _looks_jsonl(path):
        return FORMATS["jsonl"]
    for candidate in sorted(FORMATS.values(), key=lambda f: -max(len(s) for s in f.suffixes)):
        if any(name.endswith(s) for s in candidate.suffixes):
            return candidate
    suffixes = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
    raise DataError(f"{path}: cannot tell the document format from the suffix (known: {suffixes}); "
                    f"name it (valid: {_names()})")


def read_documents(path: str | Path, fmt: str | None = None) -> list[Document]:
    """Documents of ``path`` in ``fmt`` (or the format its suffix selects)."""
    path = Path(path).expanduser()
    odd = None if path.is_dir() else not_a_file(path)  # a folder is BRAT's; a FIFO would block the read
    if odd is not None:
        raise DataError(f"{path}: {odd}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return detect_format(path, fmt).read(path)


def write_documents(path: str | Path, docs: Sequence[Document], fmt: str | None = None) -> dict[str, int]:
    """Write ``docs`` to ``path`` atomically in ``fmt`` (or the format its suffix selects); returns counts
    (documents, mentions, and what the format had to change, e.g. ``lines_dropped``)."""
    path = Path(path).expanduser()
    return detect_format(path, fmt, writing=True).write(path, list(docs))


def find_document_split(data_dir: str | Path, names: Sequence[str], fmt: str | None = None) -> Path | None:
    """The file (or BRAT folder) of a split in ``data_dir``: ``<name><suffix>`` for each name in
    ``names`` (e.g. ``("devel", "dev")``) and each suffix of ``fmt`` or of every format, else None."""
    folder = Path(data_dir).expanduser()
    formats = [_by_name(fmt, str(folder))] if fmt else list(FORMATS.values())
    for name in names:
        for f in formats:
            for suffix in f.suffixes:
                if (folder / f"{name}{suffix}").is_file():
                    return folder / f"{name}{suffix}"
            if f.folder and (folder / name).is_dir():
                return folder / name
    return None
