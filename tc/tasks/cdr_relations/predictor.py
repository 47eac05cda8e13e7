"""A trained relation model directory, ready to predict: documents with mentions in, relations out.

``tc.load(model_dir)`` returns a ``RelationPredictor`` for a ``cdr_relations`` model dir; ``tc predict``
and the NER -> relations pipeline use the same one. It runs on any backend through the one evaluation
path (``tc.core.evaluation.run_rows``), so what it predicts is what ``tc run`` scored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tc.core.errors import CheckpointError, DataError, TcError
from tc.core.interfaces import Backend, Runner
from tc.core.jobs import TASK_FILE
from tc.tasks.cdr_relations.corpus import RelationDoc, relation_docs
from tc.tasks.token_cls.documents.model import Document


@dataclass(frozen=True)
class Relation:
    """A predicted relation between two concepts of one document."""

    head: str
    tail: str
    type: str
    score: float
    head_type: str = "Chemical"
    tail_type: str = "Disease"

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, self.head_type: self.head, self.tail_type: self.tail, "score": round(self.score, 4)}


class _Rows:
    """What ``run_rows`` asks of a task: how each document's pair probabilities are cut out of a batch."""

    @staticmethod
    def predictions_from_outputs(dataset: Any, batch: Any, outputs: Any) -> list[np.ndarray]:
        from tc.tasks.cdr_relations.dataset import pair_predictions

        return pair_predictions(dataset, batch, outputs)


@dataclass
class RelationPredictor:
    model_dir: Path
    info: dict[str, Any]
    backend: Backend
    runner: Runner
    encoder: Any
    weights: Path
    batch_size: int = 8
    threshold: float = 0.5
    stats: dict[str, float] = field(default_factory=lambda: {"documents": 0, "pairs": 0, "seconds": 0.0})

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, backend: str = "cpu", checkpoint: str | Path | None = None,
                       batch_size: int = 8, threshold: float | None = None) -> RelationPredictor:
        """Load ``model_dir`` (best weights, else the newest checkpoint) onto ``backend``."""
        from tc.core.checkpoint.policy import pick_weights
        from tc.core.jobs import open_job
        from tc.plugins.manager import registered_model
        from tc.tasks.token_cls.settings import read_json_object
        from tc.tasks.token_cls.wordpiece import WordPieceEncoder

        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise CheckpointError(f"{model_dir}: model directory not found")
        if batch_size < 1:
            raise TcError(f"--batch-size {batch_size}: must be at least 1")
        info = read_json_object(model_dir / TASK_FILE)
        try:
            config = registered_model(str(info.get("model", "bert_relations")), f"{model_dir / TASK_FILE}: model"
                                      ).restore(info["model_config"])
        except (TypeError, KeyError) as exc:
            raise CheckpointError(f"{model_dir / TASK_FILE}: model_config does not fit this tc ({exc})") from None
        hardware = open_job("cdr_relations", backend, None, [f"runconfig.model_dir={model_dir.resolve()}"],
                            require_available=True).backend
        hardware.setup()
        try:
            if checkpoint is not None:
                path, state = Path(checkpoint), hardware.load_checkpoint(Path(checkpoint))
            else:
                picked = pick_weights(model_dir, hardware.load_checkpoint, hardware.checkpoint_suffix)
                if picked is None:
                    raise CheckpointError(f"{model_dir}: no best_model.pt or checkpoint_<step>.pt to predict with "
                                          "(train first)")
                path, state = picked.path, picked.state
            from tc.tasks.cdr_relations.model import BertForRelations

            module = BertForRelations(config)
            module.load_state_dict(state["model"])
            runner = hardware.prepare(module, None)
        except BaseException:
            hardware.teardown()
            raise
        encoder = WordPieceEncoder(model_dir / "vocab.txt", do_lower_case=bool(info.get("do_lower_case", True)))
        chosen = float(info.get("threshold", 0.5)) if threshold is None else threshold
        return cls(model_dir, info, hardware, runner, encoder, path, batch_size, chosen)

    def close(self) -> None:
        self.backend.teardown()

    def __enter__(self) -> RelationPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def relation(self) -> str:
        return str(self.info.get("relation", "CID"))

    def relations(self, docs: Sequence[Document]) -> list[list[Relation]]:
        """Each document's predicted relations between the concepts of its mentions (ids as
        ``corpus.concepts_of`` reads them), most probable first."""
        import time

        from tc.core.evaluation import run_rows
        from tc.tasks.cdr_relations.dataset import RelationDataset
        from tc.tasks.cdr_relations.features import encode_document

        head, tail = str(self.info.get("head_type", "Chemical")), str(self.info.get("tail_type", "Disease"))
        rdocs: list[RelationDoc] = relation_docs(docs, head, tail, self.relation)
        if not rdocs:
            return []
        start = time.perf_counter()
        rows = [encode_document(d, self.encoder, head, tail, int(self.info.get("max_sequence_length", 1024)))
                for d in rdocs]
        dataset = RelationDataset(rdocs, rows, self.encoder.pad_id)
        pad_to = int(self.info.get("max_sequence_length", 1024)) if self.backend.static_shapes else None
        probabilities = run_rows(self.runner, self.backend, dataset, self.batch_size, pad_to, task=_Rows()).ids  # type: ignore[arg-type]
        out = []
        for i, row in enumerate(rows):
            found = [Relation(h, t, self.relation, float(p), head, tail)
                     for (h, t), p in zip(row.pairs, probabilities[i].tolist(), strict=True) if p >= self.threshold]
            out.append(sorted(found, key=lambda r: -r.score))
        self.stats["documents"] += len(rows)
        self.stats["pairs"] += int(dataset.pairs.sum())
        self.stats["seconds"] += time.perf_counter() - start
        return out

    def predict_documents(self, docs: Sequence[Document]) -> list[Document]:
        """The documents with their predicted relations attached, ready for any writer (``writing.py``)."""
        from tc.tasks.cdr_relations.writing import with_relations

        return [with_relations(doc, found) for doc, found in zip(docs, self.relations(docs), strict=True)]

    def predict_records(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The predictor protocol (``tc.core.predicting``: the generic ``tc serve``): each record's relations."""
        docs = records_to_documents(records)
        return [{"id": d.id, "relations": [r.as_dict() for r in rels]}
                for d, rels in zip(docs, self.relations(docs), strict=True)]

    def describe(self) -> dict[str, Any]:
        """What ``/info`` and ``repr`` say: the model dir, weights, relation and threshold."""
        return {"task": "cdr_relations", "model_dir": str(self.model_dir), "weights": self.weights.name,
                "relation": self.relation, "head_type": self.info.get("head_type"),
                "tail_type": self.info.get("tail_type"), "threshold": self.threshold}

    def __repr__(self) -> str:
        return f"RelationPredictor({json.dumps(self.describe())})"


def records_to_documents(records: Sequence[Any]) -> list[Document]:
    """Records ``{"id", "text", "entities": [{"start", "end", "type", "id"}]}`` as Documents (an entity without
    ``id`` is grouped by its normalised text); a DataError naming the record and field that does not fit.
    A record's text is one passage: without a title passage, no concept counts as named in the title."""
    from tc.tasks.token_cls.documents.model import Mention, check_mention

    docs = []
    for n, item in enumerate(records):
        where = f"records[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(f'{where}: must be an object with a "text" string')
        entities = item.get("entities", [])
        if not isinstance(entities, list):
            raise DataError(f'{where}.entities: must be a list of {{"start", "end", "type"}} objects')
        mentions = []
        for k, entity in enumerate(entities):
            whole = isinstance(entity, dict) and all(
                isinstance(entity.get(f), int) and not isinstance(entity.get(f), bool) for f in ("start", "end"))
            if not (whole and isinstance(entity.get("type"), str)):
                raise DataError(f"{where}.entities[{k}]: needs integer start and end and a string type")
            infons = {"identifier": str(entity["id"])} if entity.get("id") is not None else {}
            mention = Mention(entity["start"], entity["end"], entity["type"], None, None, infons)
            check_mention(item["text"], mention, f"{where}.entities[{k}]")
            mentions.append(mention)
        docs.append(Document.from_text(str(item.get("id", n)), item["text"], mentions, "<request>"))
    return docs
