"""Run a prepared model over a dataset on any backend and score it with the task's metrics."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tc.core.fs import atomic_write_text
from tc.core.interfaces import Backend, Dataset, Runner, Task
from tc.core.sampling import BatchPlan


@dataclass
class RowPredictions:
    """Per dataset row: the predicted class ids and, when asked for, their softmax probabilities."""

    ids: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, np.ndarray] = field(default_factory=dict)


def run_rows(runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None,
             scores: bool = False) -> RowPredictions:
    """The model over every row of ``dataset`` on any backend, gathered from all ranks (duplicates
    dropped): evaluation and inference run a model over data this one way. ``scores`` adds each
    predicted class's probability (inference reports it); ids are then read off the same softmax."""
    plan = BatchPlan(dataset, batch_size, train=False, pad_to=pad_to, world_size=backend.ranks.world_size)
    mine = RowPredictions()
    for micro_batches in backend.batches(plan):
        for batch in micro_batches:
            logits = runner.eval_step(batch)  # (B, T, C) on the host
            if scores:
                best, ids = logits.float().softmax(-1).max(-1)
            else:
                best, ids = None, logits.argmax(-1)
            for row, index in enumerate(batch["index"].tolist()):
                length = int(dataset.lengths[index])
                mine.ids[index] = ids[row, :length].numpy()
                if best is not None:
                    mine.scores[index] = best[row, :length].numpy()
    merged = RowPredictions()
    for part in backend.gather(mine):
        merged.ids.update(part.ids)
        merged.scores.update(part.scores)
    return merged


def predict_rows(
    runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None
) -> dict[int, np.ndarray]:
    """Argmax class ids for every row of ``dataset``, gathered from all ranks (duplicates dropped)."""
    return run_rows(runner, backend, dataset, batch_size, pad_to).ids


def evaluate(
    task: Task, runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None
) -> dict[str, Any]:
    """Task metrics on ``dataset`` plus throughput, identical on one rank or many."""
    start = time.perf_counter()
    predictions = predict_rows(runner, backend, dataset, batch_size, pad_to)
    seconds = time.perf_counter() - start
    metrics = task.evaluate(dataset, predictions)
    metrics["eval_seconds"] = round(seconds, 3)
    metrics["examples_per_s"] = round(len(dataset) / max(seconds, 1e-9), 1)
    return metrics


def write_results(model_dir: Path, metrics: dict[str, Any]) -> Path:
    """``eval_results.json`` (latest evaluation) plus a per-split copy, written atomically."""
    target = model_dir / "eval_results.json"
    split = re.sub(r"[^\w.-]+", "_", Path(str(metrics.get("split", "eval"))).stem) or "eval"
    text = json.dumps(metrics, indent=2, default=str) + "\n"
    for path in (target, model_dir / f"eval_results_{split}.json"):
        atomic_write_text(path, text)
    return target
