"""JSONL spans: one object per line, ``{"id": ..., "text": ..., "entities": [{"start", "end", "type"}]}``.

What ``tc predict`` emits, and what spaCy/Prodigy users export: ``spans`` is read where ``entities``
is missing and ``label`` where ``type`` is; written back under the key the file used. Every other key
of a record or an entity is kept. A line whose mentions did not change is written back verbatim; a
changed one is the record with its entity list replaced, as ``json.dumps(..., ensure_ascii=False)``
(``tc predict``'s own spelling). A discontinuous mention carries ``"fragments": [[start, end], ...]``
besides its whole span. A record without ``id`` gets its line number as id (not written).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError
from tc.core.fs import atomic_writer
from tc.tasks.token_cls.documents.model import Document, Mention, Passage, check_mention
from tc.tasks.token_cls.textio import BOM, join_lines, parse_record, read_text, split_lines

__all__ = ["read_jsonl", "write_jsonl"]

_ENTITY_KEYS = ("entities", "spans")
_TYPE_KEYS = ("type", "label")


def _mention(path: Path, number: int, index: int, entity: Any) -> tuple[Mention, str]:
    where = f"{path}:{number}: entity {index + 1}"
    if not isinstance(entity, dict):
        raise DataError(f"{where}: expected an object with start, end and type, got {type(entity).__name__}")
    type_key = next((k for k in _TYPE_KEYS if k in entity), None)
    start, end = entity.get("start"), entity.get("end")
    if type(start) is not int or type(end) is not int:
        raise DataError(f"{where}: start and end must be integers (got {start!r}, {end!r})")
    if type_key is None or not isinstance(entity[type_key], str):
        raise DataError(f"{where}: no \"type\" (or \"label\") string")
    text = entity.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: \"text\" must be a string")
    score = entity.get("score")
    ident = entity.get("id")
    fragments = _fragments(where, entity.get("fragments"))
    if fragments:
        start, end = fragments[0][0], fragments[-1][1]
    mention = Mention(start, end, entity[type_key], text, None if ident is None else str(ident), {},
                      fragments, float(score) if isinstance(score, int | float) else None)
    return mention, type_key


def _fragments(where: str, value: Any) -> tuple[tuple[int, int], ...]:
    """The optional ``"fragments": [[start, end], ...]`` of a discontinuous entity (tc writes it)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(f, list) and len(f) == 2 and all(type(x) is int for x in f)
                                              for f in value):
        raise DataError(f"{where}: \"fragments\" must be a list of [start, end] integer pairs")
    return tuple((f[0], f[1]) for f in value) if len(value) > 1 else ()


def _document(path: Path, number: int, raw: str) -> Document:
    record = parse_record(path, number, raw)
    key = next((k for k in _ENTITY_KEYS if k in record), "entities")
    entities = record.get(key, [])
    if not isinstance(entities, list):
        raise DataError(f"{path}:{number}: \"{key}\" must be a list of {{start, end, type}} objects")
    pairs = [_mention(path, number, i, e) for i, e in enumerate(entities)]
    mentions = [m for m, _ in pairs]
    type_key = pairs[0][1] if pairs else "type"
    doc_id = str(record["id"]) if "id" in record else str(number)
    doc = Document(doc_id, (Passage(0, record["text"]),), mentions,
                   {"read_mentions": list(mentions), "jsonl": {"record": record, "raw": raw, "entity_key": key,
                                                              "type_key": type_key, "line": number}}, str(path))
    for index, mention in enumerate(mentions):
        check_mention(doc.text, mention, f"{path}:{number}: document {doc_id}: entity {index + 1}")
    return doc


def read_jsonl(path: Path) -> list[Document]:
    """Documents of a JSONL file, one per non-blank line; bad lines name ``file:line``."""
    path = Path(path)
    text, bom = read_text(path, "JSONL file")
    lines, final_newline = split_lines(text)
    docs: list[Document] = []
    blanks: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            blanks.append(raw)
            continue
        doc = _document(path, number, raw)
        doc.extra["jsonl"]["before"], blanks = blanks, []
        docs.append(doc)
    if not docs:
        raise DataError(f"{path}: no JSONL records")
    docs[0].extra["jsonl"]["bom"] = bom
    docs[-1].extra["jsonl"].update(after=blanks, final_newline=final_newline)
    return docs


def _entity(mention: Mention, doc: Document, type_key: str) -> dict[str, Any]:
    text = mention.text if mention.text is not None else doc.text[mention.start : mention.end]
    entity: dict[str, Any] = {"start": mention.start, "end": mention.end, type_key: mention.type, "text": text}
    if mention.discontinuous:
        entity["fragments"] = [list(f) for f in mention.fragments]
    if mention.id is not None:
        entity["id"] = mention.id
    if mention.score is not None:
        entity["score"] = mention.score
    if mention.rule is not None:
        entity["rule"] = mention.rule
    return entity


def record_line(doc: Document) -> str:
    """The document's JSONL line: verbatim when its mentions are those read."""
    state = doc.extra.get("jsonl", {})
    if "raw" in state and doc.mentions == doc.extra.get("read_mentions"):
        return state["raw"]
    record = dict(state.get("record") or {"id": doc.id, "text": doc.text})
    type_key = state.get("type_key", "type")
    record[state.get("entity_key", "entities")] = [_entity(m, doc, type_key) for m in doc.mentions]
    return json.dumps(record, ensure_ascii=False)


def write_jsonl(path: Path, docs: Sequence[Document]) -> dict[str, int]:
    """Write one line per document (see ``record_line``)."""
    lines: list[str] = []
    states = [d.extra.get("jsonl", {}) for d in docs]
    for doc, state in zip(docs, states, strict=True):
        lines.extend(state.get("before", []))
        lines.append(record_line(doc))
    if docs:
        lines.extend(states[-1].get("after", []))
    with atomic_writer(path, "w", newline="") as handle:
        if docs and states[0].get("bom"):
            handle.write(BOM)
        handle.write(join_lines(lines, states[-1].get("final_newline", True) if docs else True))
    return {"documents": len(docs), "mentions": sum(len(d.mentions) for d in docs)}
