"""Predicted relations into documents, per format: PubTator relation lines, a JSONL ``relations`` list,
BioC ``<relation>`` elements (``bioc_io.add_relations`` reads ``extra["relations"]``). Everything else a
document holds is left as read (PubTator: every line but the relation lines of the predicted type comes
back byte for byte)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tc.tasks.token_cls.documents.model import Document

RELATIONS = "relations"
"""``Document.extra`` key of the predicted relations (a list of ``Relation``)."""


def with_relations(doc: Document, relations: Sequence[Any]) -> Document:
    """A copy of ``doc`` carrying ``relations`` in every format it may be written in."""
    extra = dict(doc.extra)
    extra[RELATIONS] = list(relations)
    relation_type = relations[0].type if relations else None
    if "pubtator" in extra:
        extra["pubtator"] = _pubtator_state(doc, extra["pubtator"], relations, relation_type)
    if "jsonl" in extra:
        state = dict(extra["jsonl"])
        record = dict(state.get("record") or {"id": doc.id, "text": doc.text})
        record[RELATIONS] = [r.as_dict() for r in relations]
        state["record"] = record
        state.pop("raw", None)
        extra["jsonl"] = state
    else:
        extra["jsonl"] = {"record": {"id": doc.id, "text": doc.text, RELATIONS: [r.as_dict() for r in relations]}}
    return dataclasses.replace(doc, extra=extra)


def _pubtator_state(doc: Document, state: dict[str, Any], relations: Sequence[Any],
                    relation_type: str | None) -> dict[str, Any]:
    """The PubTator layout with the old relation lines of the predicted types out and the new ones in,
    after the last mention line (where CDR puts them), in the file's own line ending."""
    cr = state.get("cr", "")
    types = {relation_type} if relation_type else {"CID"}
    layout = [(kind, raw) for kind, raw in state.get("layout", [])
              if not (kind == "keep" and len(raw.split("\t")) >= 4 and raw.split("\t")[1] in types)]
    lines = [("keep", f"{doc.id}\t{r.type}\t{r.head}\t{r.tail}{cr}") for r in relations]
    last = max((i for i, (kind, raw) in enumerate(layout) if raw.strip()), default=-1)
    new = dict(state)
    new["layout"] = layout[: last + 1] + lines + layout[last + 1 :]
    return new
