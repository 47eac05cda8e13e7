"""Run a prepared model over a dataset on any backend and score it with the task's metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tc.core.fs import atomic_write_text
from tc.core.interfaces import Backend, Batch, Dataset, Runner, Task, per_position
from tc.core.sampling import BatchPlan

if TYPE_CHECKING:
    import torch


@dataclass
class RowPredictions:
    """Per dataset row: the predicted class ids and, when asked for, their softmax probabilities."""

    ids: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, np.ndarray] = field(default_factory=dict)


Decode = Callable[["torch.Tensor", Batch, bool], tuple["torch.Tensor", "torch.Tensor | None"]]
"""``decode(logits, batch, scores) -> (ids, probabilities or None)``: host logits of ``batch`` (classes last,
e.g. (B, T, C)) to class ids (e.g. (B, T)), and with ``scores`` the probability reported for each."""


def argmax_decode(logits: torch.Tensor, batch: Batch, scores: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The default decoding: each position's argmax class; with ``scores`` read off the softmax, with the
    probability of the class chosen."""
    if scores:
        best, ids = logits.float().softmax(-1).max(-1)
        return ids, best
    return logits.argmax(-1), None


def decoder(runner: Runner) -> Decode:
    """How ``run_rows`` turns logits into ids: the runner's model's ``decode`` (same signature as
    ``argmax_decode``) when it has one, else ``argmax_decode``.

    The one decoding hook, so a model whose head decodes whole sequences (a CRF's Viterbi) is read the same
    way on every backend: ``decode`` runs on the host, after ``eval_step`` brought the logits there, and may
    read the (small) head parameters it needs from the module. A runner without a torch module (an
    onnxruntime session) offers the same through a ``model`` object that has only ``decode``."""
    return getattr(getattr(runner, "model", None), "decode", None) or argmax_decode


def run_rows(runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None,
             scores: bool = False, task: Task | None = None) -> RowPredictions:
    """The model over every row of ``dataset`` on any backend, gathered from all ranks (duplicates
    dropped): evaluation and inference run a model over data this one way, and decode it one way
    (``decoder``). ``scores`` adds each predicted class's probability (inference reports it).

    Each example's prediction is taken out of the batch output by ``task.predictions_from_outputs``: its
    shape is the task's to know. Without a task (a task's own inference calling in, which knows its model
    predicts per position) it is ``per_position``."""
    plan = BatchPlan(dataset, batch_size, train=False, pad_to=pad_to, world_size=backend.ranks.world_size)
    mine = RowPredictions()
    decode = decoder(runner)
    take = per_position if task is None else task.predictions_from_outputs
    for micro_batches in backend.batches(plan):
        for batch in micro_batches:
            logits = runner.eval_step(batch)  # on the host
            ids, best = decode(logits, batch, scores)
            indices = batch["index"].tolist()
            mine.ids.update(zip(indices, take(dataset, batch, ids), strict=True))
            if best is not None:
                mine.scores.update(zip(indices, take(dataset, batch, best), strict=True))
    merged = RowPredictions()
    for part in backend.gather(mine):
        merged.ids.update(part.ids)
        merged.scores.update(part.scores)
    return merged


def predict_rows(
    runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None, task: Task | None = None
) -> dict[int, np.ndarray]:
    """Decoded class ids (``decoder``) for every row of ``dataset``, gathered from all ranks (duplicates
    dropped), each taken out of its batch as ``task`` says (``run_rows``)."""
    return run_rows(runner, backend, dataset, batch_size, pad_to, task=task).ids


def evaluate(
    task: Task, runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None
) -> dict[str, Any]:
    """Task metrics on ``dataset`` plus throughput, identical on one rank or many, and under ``selection``
    which of them selects models (``selection_fields``), so that results read later (``tc report``, a
    resumed run) say what their score is without loading the task. A task whose metrics lack its
    ``selection_metric`` is refused here, the one place every evaluation passes."""
    start = time.perf_counter()
    predictions = predict_rows(runner, backend, dataset, batch_size, pad_to, task)
    seconds = time.perf_counter() - start
    metrics = task.evaluate(dataset, predictions)
    task.selection_score(metrics)
    metrics["selection"] = selection_fields(task)
    metrics["eval_seconds"] = round(seconds, 3)
    metrics["examples_per_s"] = round(len(dataset) / max(seconds, 1e-9), 1)
    return metrics


def selection_fields(task: Task) -> dict[str, str]:
    """What results record about the score that selects models: its key, its label and which way is better."""
    return {"metric": task.selection_metric, "label": task.metric_label, "mode": task.selection_mode}


def write_results(model_dir: Path, metrics: dict[str, Any]) -> Path:
    """``eval_results.json`` (latest evaluation) plus a per-split copy, written atomically."""
    target = model_dir / "eval_results.json"
    split = re.sub(r"[^\w.-]+", "_", Path(str(metrics.get("split", "eval"))).stem) or "eval"
    text = json.dumps(metrics, indent=2, default=str) + "\n"
    for path in (target, model_dir / f"eval_results_{split}.json"):
        atomic_write_text(path, text)
    return target
