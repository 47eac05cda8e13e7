"""Relation documents: each document's concepts (a concept id and its mentions) and its gold CID pairs.

Concepts come from the mentions' identifiers (PubTator's sixth column, BioC's ``MESH``/``identifier``
infon); a composite mention (``D001|D002``) belongs to each of its concepts, a mention without an id
(``-1``, none) is a concept of its own, named by its lowercased text, which is how predicted mentions
without normalisation are grouped too. Gold relations are PubTator's ``PMID<TAB>CID<TAB>chem<TAB>dis``
lines and BioC relations whose infons name the two concepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tc.tasks.token_cls.documents import read_documents
from tc.tasks.token_cls.documents.model import Document

ID_KEYS = ("identifier", "MESH", "MeSH", "mesh", "Identifier", "concept_id")
"""Mention infons that hold a concept id, in the order they are looked for."""
NO_ID = ("", "-1", "-")


@dataclass
class Concept:
    """One entity of a document: its id, its type and the ``(start, end)`` of each of its mentions."""

    id: str
    type: str
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class RelationDoc:
    """A document as the relation task sees it; ``doc`` is the document as read (kept for writing back)."""

    id: str
    text: str
    concepts: list[Concept]
    relations: set[tuple[str, str]]
    doc: Document | None = None
    sentences: list[tuple[int, int]] = field(default_factory=list)
    """``(start, end)`` of each sentence (tc's splitter, never inside a mention); the title is the first."""
    title_end: int = 0
    """Where the first passage (a PubTator title) ends, when the document has more than one; else 0."""

    def of_type(self, kind: str) -> list[Concept]:
        return [c for c in self.concepts if c.type == kind]


def mention_ids(infons: dict[str, Any]) -> list[str]:
    """The concept ids a mention's infons give (composite ``|`` or ``,`` lists split), [] for none."""
    for key in ID_KEYS:
        value = infons.get(key)
        if value is not None:
            parts = [p.strip() for p in str(value).replace(",", "|").split("|")]
            return [p for p in parts if p not in NO_ID]
    return []


def concepts_of(doc: Document, types: Sequence[str]) -> list[Concept]:
    """The document's concepts of ``types``, in order of first mention."""
    found: dict[tuple[str, str], Concept] = {}
    for mention in sorted(doc.mentions, key=lambda m: (m.start, m.end)):
        if mention.type not in types:
            continue
        ids = mention_ids(mention.infons) or [" ".join(doc.text[mention.start : mention.end].lower().split())]
        for concept_id in ids:
            concept = found.setdefault((mention.type, concept_id), Concept(concept_id, mention.type))
            if (mention.start, mention.end) not in concept.spans:
                concept.spans.append((mention.start, mention.end))
    return list(found.values())


def pubtator_relations(doc: Document, relation: str) -> set[tuple[str, str]]:
    """``(head, tail)`` of the document's PubTator relation lines of type ``relation``."""
    out = set()
    for kind, raw in doc.extra.get("pubtator", {}).get("layout", []):
        parts = raw.rstrip("\r").split("\t")
        if kind == "keep" and len(parts) >= 4 and parts[1] == relation:
            out.add((parts[2], parts[3]))
    return out


def bioc_relations(doc: Document, relation: str, head_type: str, tail_type: str) -> set[tuple[str, str]]:
    """``(head, tail)`` of BioC relations whose infons say ``relation`` and name both concepts (CDR's BioC)."""
    bdoc = doc.extra.get("bioc", {}).get("document")
    if bdoc is None:
        return set()
    out = set()
    for rel in getattr(bdoc, "relations", []):
        infons = rel.infons
        if infons.get("relation", infons.get("type")) == relation and head_type in infons and tail_type in infons:
            out.add((str(infons[head_type]), str(infons[tail_type])))
    return out


def relation_docs(docs: Sequence[Document], head_type: str, tail_type: str, relation: str) -> list[RelationDoc]:
    """Documents as relation documents: concepts of the two types and the gold pairs they carry."""
    from tc.tasks.token_cls.documents.align import sentence_spans

    out = []
    for doc in docs:
        gold = pubtator_relations(doc, relation) | bioc_relations(doc, relation, head_type, tail_type)
        title_end = doc.passages[0].end if len(doc.passages) > 1 else 0
        out.append(RelationDoc(doc.id, doc.text, concepts_of(doc, (head_type, tail_type)), gold, doc,
                               sentence_spans(doc, doc.mentions), title_end))
    return out


def read_relation_docs(path: str | Path, head_type: str, tail_type: str, relation: str,
                       fmt: str | None = None) -> list[RelationDoc]:
    """A document file (any of tc's formats) as relation documents."""
    return relation_docs(read_documents(path, fmt), head_type, tail_type, relation)
