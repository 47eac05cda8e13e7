"""Run a prepared model over a dataset on any backend and score it with the task's metrics."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from tc.core.fs import atomic_write_text
from tc.core.interfaces import Backend, Dataset, Runner, Task
from tc.core.sampling import BatchPlan


def predict_rows(
    runner: Runner, backend: Backend, dataset: Dataset, batch_size: int, pad_to: int | None
) -> dict[int, np.ndarray]:
    """Argmax class ids for every row of ``dataset``, gathered from all ranks (duplicates dropped)."""
    plan = BatchPlan(dataset, batch_size, train=False, pad_to=pad_to, world_size=backend.ranks.world_size)
    mine: dict[int, np.ndarray] = {}
    for micro_batches in backend.batches(plan):
        for batch in micro_batches:
            ids = runner.eval_step(batch).argmax(-1).numpy()  # (B, T)
            for row, index in zip(ids, batch["index"].tolist(), strict=True):
                mine[index] = row[: int(dataset.lengths[index])]
    merged: dict[int, np.ndarray] = {}
    for part in backend.gather(mine):
        merged.update(part)
    return merged


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
