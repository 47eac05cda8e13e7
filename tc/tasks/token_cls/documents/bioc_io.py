"""BioC XML and BioC JSON through the ``bioc`` package (imported only when a BioC file is read or written).

Every annotation with a location is a mention (type from its ``type`` infon; several locations make a
discontinuous mention, see the rule in ``brat.py``); passages keep their offsets and infons, and the
whole ``BioCDocument`` (relations, sentences, annotations, infons) is kept in ``extra["bioc"]["document"]``,
so writing rebuilds it with the document's current mentions: the mentions read come back as the annotations
they were read from, in their places; other mentions (predictions) replace every annotation with a location and go to
the passage holding their start, with ids ``T1..`` that no kept annotation or relation uses, and
their score as a ``score`` infon. A collection written by ``bioc`` comes back byte-identical.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import DataError, first_line
from tc.core.fs import atomic_writer
from tc.core.readers import parse_json
from tc.tasks.token_cls.documents.bioc_check import check_bioc_json, check_bioc_xml
from tc.tasks.token_cls.documents.model import Document, Mention, Passage, check_mention, fresh_ids
from tc.tasks.token_cls.textio import read_text

__all__ = ["read_bioc_json", "read_bioc_xml", "write_bioc_json", "write_bioc_xml"]

Place = tuple[int, ...]
"""Where an annotation sits: ``()`` the document, ``(p,)`` passage p, ``(p, s)`` sentence s of passage p."""


def _container(bdoc: Any, place: Place) -> Any:
    if not place:
        return bdoc
    passage = bdoc.passages[place[0]]
    return passage if len(place) == 1 else passage.sentences[place[1]]


def _places(bdoc: Any) -> list[Place]:
    """Every annotation container in the order bioc writes them."""
    out: list[Place] = []
    for p, passage in enumerate(bdoc.passages):
        out.extend((p, s) for s in range(len(passage.sentences)))
        out.append((p,))
    out.append(())
    return out


def _passage_text(passage: Any) -> str:
    """A passage's text, or its sentences laid out at their offsets when it has none."""
    if passage.text or not passage.sentences:
        return passage.text or ""
    parts, end = [], passage.offset
    for sentence in passage.sentences:
        parts.append(" " * max(0, (sentence.offset or 0) - end) + (sentence.text or ""))
        end = max(end, (sentence.offset or 0) + len(sentence.text or ""))
    return "".join(parts)


def _document(path: Path, bdoc: Any, header: dict[str, Any]) -> Document:
    doc_id = str(bdoc.id)
    passages = tuple(Passage(int(p.offset), _passage_text(p), dict(p.infons)) for p in bdoc.passages)
    doc = Document(doc_id, passages, [], {}, str(path))
    for place in _places(bdoc):
        for ann in _container(bdoc, place).annotations:
            if not ann.locations:
                continue
            where = f"{path}: document {doc_id}: annotation {ann.id}"
            if "type" not in ann.infons:
                raise DataError(f"{where} has no 'type' infon (the entity type tc trains on)")
            if not isinstance(ann.infons["type"], str):
                raise DataError(f"{where}: its 'type' infon is not a string (got {ann.infons['type']!r})")
            fragments = tuple((int(loc.offset), int(loc.offset) + int(loc.length)) for loc in ann.locations)
            mention = Mention(min(s for s, _ in fragments), max(e for _, e in fragments), str(ann.infons["type"]),
                              ann.text, None if ann.id is None else str(ann.id), dict(ann.infons),
                              fragments if len(fragments) > 1 else ())
            check_mention(doc.text, mention, f"{path}: document {doc_id}")
            doc.mentions.append(mention)
    doc.extra.update(read_mentions=list(doc.mentions), bioc={"document": bdoc, "header": header})
    return doc


def _header(collection: Any, **style: Any) -> dict[str, Any]:
    return {"source": collection.source, "date": collection.date, "key": collection.key,
            "infons": dict(collection.infons), "encoding": collection.encoding,
            "standalone": collection.standalone, "version": collection.version, **style}


def read_bioc_xml(path: Path) -> list[Document]:
    """Documents of a BioC XML collection."""
    import bioc.biocjson
    import bioc.biocxml
    from lxml import etree

    path = Path(path)
    text, _ = read_text(path, "BioC XML file")
    check_bioc_xml(path)
    try:
        with path.open("rb") as handle:
            collection = bioc.biocxml.load(handle)
    except etree.XMLSyntaxError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid XML ({first_line(exc)})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # what check_bioc_xml does not foresee
        raise DataError(f"{path}: not a BioC collection ({type(exc).__name__}: {first_line(exc)})") from None
    header = _header(collection, pretty="\n  <" in text, final_newline=text.endswith("\n"))
    return [_document(path, d, header) for d in collection.documents]


def read_bioc_json(path: Path) -> list[Document]:
    """Documents of a BioC JSON collection."""
    import bioc.biocjson
    import bioc.biocxml

    path = Path(path)
    text, _ = read_text(path, "BioC JSON file")
    obj = parse_json(text, path, DataError)
    check_bioc_json(obj, path)
    try:
        collection = bioc.biocjson.decoder.parse_collection(obj)
    except KeyError as exc:  # what check_bioc_json does not foresee
        raise DataError(f"{path}: not a BioC JSON collection (missing key {exc})") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a BioC JSON collection ({type(exc).__name__}: {first_line(exc)})") from None
    header = _header(collection, **_json_style(text))
    return [_document(path, d, header) for d in collection.documents]


def _json_style(text: str) -> dict[str, Any]:
    """The ``json.dumps`` arguments that reproduce ``text``'s spelling (indent, ASCII escapes)."""
    indent = None
    lines = text.split("\n", 2)
    if len(lines) > 1:
        stripped = lines[1].lstrip(" ")
        indent = len(lines[1]) - len(stripped) or None
    return {"indent": indent, "ensure_ascii": text.isascii(), "final_newline": text.endswith("\n")}


def _annotation(bioc: Any, mention: Mention, ann_id: str) -> Any:
    ann = bioc.BioCAnnotation()
    ann.id = ann_id
    ann.infons = dict(mention.infons)
    ann.infons["type"] = mention.type
    if mention.score is not None and "score" not in mention.infons:
        ann.infons["score"] = f"{mention.score:.4f}"
    if mention.rule is not None and "rule" not in mention.infons:
        ann.infons["rule"] = mention.rule
    ann.text = mention.text if mention.text is not None else ""
    for start, end in mention.fragments or ((mention.start, mention.end),):
        ann.add_location(bioc.BioCLocation(start, end - start))
    return ann


def _fresh_document(bioc: Any, doc: Document) -> Any:
    bdoc = bioc.BioCDocument()
    bdoc.id = doc.id
    for passage in doc.passages:
        bpassage = bioc.BioCPassage.of_text(passage.text, passage.offset)
        bpassage.infons = dict(passage.infons)
        bdoc.add_passage(bpassage)
    return bdoc


def add_relations(bioc: Any, bdoc: Any, relations: Sequence[Any]) -> None:
    """Predicted document-level relations (``Document.extra["relations"]``: objects with ``type``, ``head``,
    ``tail``, ``head_type``, ``tail_type``, ``score``) as ``<relation>`` elements in CDR's BioC shape (the
    ``relation`` infon and one infon per concept type), replacing the document's relations of those types."""
    if not relations:
        return
    types = {r.type for r in relations}
    bdoc.relations = [r for r in bdoc.relations if r.infons.get("relation") not in types]
    taken = {r.id for r in bdoc.relations}
    for relation, rel_id in zip(relations, fresh_ids(taken, "R", len(relations)), strict=True):
        element = bioc.BioCRelation()
        element.id = rel_id
        element.infons.update({"relation": relation.type, relation.head_type: relation.head,
                               relation.tail_type: relation.tail, "score": f"{relation.score:.4f}"})
        bdoc.add_relation(element)


def to_bioc(doc: Document) -> Any:
    """The ``BioCDocument`` of ``doc`` carrying its current mentions."""
    import bioc.biocjson
    import bioc.biocxml

    state = doc.extra.get("bioc", {})
    kept = state.get("document")
    bdoc = copy.deepcopy(kept) if kept is not None else _fresh_document(bioc, doc)
    add_relations(bioc, bdoc, doc.extra.get("relations", ()))
    if kept is not None and doc.mentions == doc.extra.get("read_mentions"):
        return bdoc  # the annotations as read, in their places and order (null texts and int ids included)
    for place in _places(bdoc):
        container = _container(bdoc, place)
        container.annotations = [a for a in container.annotations if not a.locations]
    taken = {a.id for place in _places(bdoc) for a in _container(bdoc, place).annotations}
    taken |= {r.id for place in _places(bdoc) for r in _container(bdoc, place).relations}
    new_ids = iter(fresh_ids(taken, "T", len(doc.mentions)))
    for mention in doc.mentions:
        index = next((i for i, p in enumerate(bdoc.passages)
                      if p.offset <= mention.start < p.offset + len(_passage_text(p))), None)
        target = bdoc if index is None else bdoc.passages[index]
        target.add_annotation(_annotation(bioc, mention, next(new_ids)))
    return bdoc


def _collection(docs: Sequence[Document]) -> tuple[Any, dict[str, Any]]:
    import bioc.biocjson
    import bioc.biocxml

    header = next((d.extra["bioc"]["header"] for d in docs if "bioc" in d.extra), None)
    collection = bioc.BioCCollection()
    if header is None:
        header = {"source": "tc", "date": time.strftime("%Y-%m-%d"), "key": "", "infons": {}}
    for name in ("source", "date", "key", "encoding", "standalone", "version"):
        if name in header:
            setattr(collection, name, header[name])
    collection.infons = dict(header.get("infons", {}))
    for doc in docs:
        collection.add_document(to_bioc(doc))
    return collection, header


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What XML 1.0 cannot hold, even as ``&#...;``: NUL and the other C0 controls but tab, line feed and carriage
return; U+FFFE, U+FFFF; lone surrogates (lxml refuses them all with a ValueError)."""


def _xml_safe(collection: Any) -> int:
    """Put a space in place of every character XML cannot hold, in every string of ``collection`` (a text
    from JSONL, PubTator or BioC JSON may have a NUL or another control character); one character for one
    keeps every offset, as PubTator's writer does with a line break. Returns how many were replaced."""
    replaced = 0

    def fix(value: Any) -> Any:
        nonlocal replaced
        if not isinstance(value, str):
            return value
        value, count = _NOT_XML.subn(" ", value)
        replaced += count
        return value

    objects: list[Any] = [collection]
    for bdoc in collection.documents:
        containers = [_container(bdoc, place) for place in _places(bdoc)]  # sentences, passages, the document
        objects.extend(containers)
        for container in containers:
            objects.extend(container.annotations)
            objects.extend(container.relations)
            objects.extend(node for relation in container.relations for node in relation.nodes)
    for obj in objects:
        for name in ("id", "text", "source", "date", "key", "refid", "role"):
            if isinstance(getattr(obj, name, None), str):
                setattr(obj, name, fix(getattr(obj, name)))
        if isinstance(getattr(obj, "infons", None), dict):
            obj.infons = {fix(k): fix(v) for k, v in obj.infons.items()}
    return replaced


def write_bioc_xml(path: Path, docs: Sequence[Document]) -> dict[str, int]:
    """Write ``docs`` as one BioC XML collection (characters XML cannot hold become spaces: ``_xml_safe``)."""
    import bioc.biocjson
    import bioc.biocxml

    collection, header = _collection(docs)
    replaced = _xml_safe(collection)
    collection.encoding = collection.encoding or "utf-8"
    text = bioc.biocxml.dumps(collection, pretty_print=header.get("pretty", True))
    if header.get("final_newline", True) and not text.endswith("\n"):
        text += "\n"
    elif not header.get("final_newline", True):
        text = text.rstrip("\n")
    with atomic_writer(path, "wb") as handle:
        handle.write(text.encode(collection.encoding))
    return {"documents": len(docs), "mentions": sum(len(d.mentions) for d in docs), "characters_replaced": replaced}


def write_bioc_json(path: Path, docs: Sequence[Document]) -> dict[str, int]:
    """Write ``docs`` as one BioC JSON collection."""
    import bioc.biocjson
    import bioc.biocxml

    collection, header = _collection(docs)
    text = bioc.biocjson.dumps(collection, indent=header.get("indent", 2),
                               ensure_ascii=header.get("ensure_ascii", False))
    if header.get("final_newline", True):
        text += "\n"
    with atomic_writer(path, "w", newline="") as handle:
        handle.write(text)
    return {"documents": len(docs), "mentions": sum(len(d.mentions) for d in docs)}
