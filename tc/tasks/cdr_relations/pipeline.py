"""NER then relations: a token_cls model dir tags the mentions, a cdr_relations model dir relates them.

Predicted mentions carry no concept ids, so each is grouped with the mentions of the same normalised
text (``corpus.concepts_of``: lowercased, whitespace collapsed); a relation is then named by that text.
``gold_concepts`` maps predicted mentions onto a gold document's concept ids by exact offsets instead
(the end-to-end evaluation), an unmatched mention staying a concept of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tc.tasks.token_cls.documents.model import Document, Mention


def tag_mentions(ner_model_dir: Path, docs: Sequence[Document], backend: str = "cpu") -> list[Document]:
    """``docs`` with the mentions the NER model predicts (its document rules applied), ids left out."""
    from tc.tasks.token_cls.documents.tagging import tag_documents
    from tc.tasks.token_cls.onnx_export import load_predictor

    predictor = load_predictor(ner_model_dir, backend=backend)
    try:
        return tag_documents(predictor.predict, list(docs), 0.0, predictor.document_rules)
    finally:
        predictor.close()


def gold_concepts(predicted: Document, gold: Document) -> Document:
    """``predicted`` with each mention given the concept ids of the gold mention at the same offsets and type."""
    ids = {(m.start, m.end, m.type): m.infons.get("identifier") for m in gold.mentions}
    mentions = []
    for mention in predicted.mentions:
        identifier = ids.get((mention.start, mention.end, mention.type))
        infons = {} if identifier is None else {"identifier": identifier}
        mentions.append(Mention(mention.start, mention.end, mention.type, mention.text, mention.id, infons))
    return dataclasses.replace(predicted, mentions=mentions)


def run_pipeline(ner_model_dir: Path, relation_model_dir: Path, input_path: Path, fmt: str | None, backend: str,
                 batch_size: int, threshold: float | None, checkpoint: Path | None) -> list[Document]:
    """The documents of ``input_path`` with predicted mentions and the relations between them."""
    from tc.tasks.cdr_relations.predictor import RelationPredictor
    from tc.tasks.token_cls.documents import read_documents

    tagged = tag_mentions(ner_model_dir, read_documents(input_path, fmt), backend)
    with RelationPredictor.from_model_dir(relation_model_dir, backend, checkpoint, batch_size, threshold) as model:
        return model.predict_documents(tagged)
