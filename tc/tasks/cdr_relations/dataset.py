"""Relation rows: one document each, padded per batch (or to fixed widths under static shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tc.core.interfaces import Batch, Dataset
from tc.tasks.cdr_relations.corpus import RelationDoc
from tc.tasks.cdr_relations.features import Encoded
from tc.tasks.cdr_relations.model import PAD

if TYPE_CHECKING:
    import torch

ARRAYS = ("mention_pos", "mention_concept", "pair_head", "pair_tail", "labels", "pair_feature")


def pair_predictions(dataset: RelationDataset, batch: Batch, outputs: torch.Tensor) -> list[np.ndarray]:
    """Each document's own pairs of a ``(B, P)`` batch output (its pair padding cut off): how a task's
    ``predictions_from_outputs`` and the predictor read the model's pair probabilities."""
    return [outputs[row, : int(dataset.pairs[i])].numpy() for row, i in enumerate(batch["index"].tolist())]


class RelationDataset(Dataset):
    """Encoded documents; ``lengths`` are their token counts, ``loss_tokens`` their candidate pairs."""

    def __init__(self, docs: list[RelationDoc], rows: list[Encoded], pad_id: int = 0) -> None:
        self.docs = docs
        self.rows = rows
        self.pad_id = pad_id
        self.lengths = np.array([len(r.input_ids) for r in rows], dtype=np.int64)
        self.pairs = np.array([len(r.pairs) for r in rows], dtype=np.int64)
        self.loss_tokens = self.pairs  # every candidate pair carries loss
        self.widths = {key: max([1, *(len(getattr(r, key)) for r in rows)]) for key in ARRAYS}
        self.concepts = max([1, *(len(d.concepts) for d in docs)])

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self) -> str:
        cut = sum(r.truncated for r in self.rows)
        positive = sum(int(r.labels.sum()) for r in self.rows)
        return (f"{len(self)} documents, {int(self.pairs.sum())} candidate pairs ({positive} related)"
                + (f", {cut} cut at max_sequence_length" if cut else ""))

    def collate(self, indices: Sequence[int], pad_to: int | None = None) -> Batch:
        import torch

        rows = [self.rows[i] for i in indices]
        width = pad_to or max(len(r.input_ids) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(rows), width), dtype=np.int32)
        for k, r in enumerate(rows):
            ids[k, : len(r.input_ids)] = r.input_ids
            mask[k, : len(r.input_ids)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        for key in ARRAYS:
            size = self.widths[key] if pad_to else max(1, *(len(getattr(r, key)) for r in rows))
            out = np.full((len(rows), size), PAD if key != "labels" else -100, dtype=np.int32)
            for k, r in enumerate(rows):
                values = getattr(r, key)
                out[k, : len(values)] = values
            batch[key] = out
        concepts = self.concepts if pad_to else max(1, *(len(self.docs[i].concepts) for i in indices))
        present = np.zeros((len(rows), concepts), dtype=np.int32)
        for k, i in enumerate(indices):
            present[k, : len(self.docs[i].concepts)] = 1
        batch["concept_mask"] = present
        tensors = {key: torch.from_numpy(value) for key, value in batch.items()}
        tensors["index"] = torch.as_tensor(list(indices), dtype=torch.int64)
        return tensors
