"""Data streaming through cstorch: a BatchPlan as the fixed-size batches a cstorch DataLoader's
``input_fn`` yields, and the running DataExecutor the runner advances step by step.

A DataExecutor runs a step's execution and step closures only when its iterator is asked for the next
batch. The shared loop needs the loss as soon as ``train_step`` returns, so the runner advances the
executor itself after each traced call (``Feed``); the next batch is prefetched then. Training runs one
executor per stretch between the steps where the loop evaluates or saves (``segments``, from the loop's
``Cadence``), as the Model Zoo trainer does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from tc.core.cadence import Cadence
from tc.core.interfaces import Batch, RankInfo

if TYPE_CHECKING:
    from tc.core.sampling import BatchPlan, StepRows


def step_rows(step: StepRows) -> tuple[np.ndarray, float]:
    """All rows of a global step in micro-batch order, and their summed loss share (1.0 on one rank)."""
    parts = step.for_rank(RankInfo())
    return np.concatenate([rows for rows, _ in parts]), float(sum(share for _, share in parts))


class PlanStream:
    """What the cstorch DataLoader's ``input_fn`` returns: ``plan``'s steps as fixed-size batches.

    On CSX this object is deep-copied to the appliance workers and iterated there, so it holds only the
    dataset and the plan (no cstorch, no open files)."""

    def __init__(self, plan: BatchPlan, rows: int) -> None:
        self.plan = plan
        self.rows = rows

    def __len__(self) -> int:
        return sum(1 for _ in self.plan)

    def __iter__(self) -> Iterator[Batch]:
        for step in self.plan:
            yield self.collate(step)

    def collate(self, step: StepRows) -> Batch:
        import torch

        rows, share = step_rows(step)
        if len(rows) < self.rows:  # eval tail: copies of the last row, their logits are dropped
            rows = np.concatenate([rows, np.repeat(rows[-1:], self.rows - len(rows))])
        batch = self.plan.dataset.collate(rows, self.plan.pad_to)
        batch["index"] = batch["index"].to(torch.int32)
        batch["loss_share"] = torch.full((self.rows,), share, dtype=torch.float32)
        batch["step_weight"] = torch.full((self.rows,), step.weight, dtype=torch.float32)
        return batch


def plan_stream(plan: BatchPlan, rows: int) -> PlanStream:
    """The ``input_fn`` handed to ``cstorch.utils.data.DataLoader``."""
    return PlanStream(plan, rows)


class Feed:
    """A running DataExecutor, advanced by the runner: ``end_step`` asks the executor for the next batch,
    which is when cstorch executes the step and runs its step closures."""

    _UNSET = object()

    def __init__(self, executor: Any) -> None:
        self._it = iter(executor)
        self._next: Any = self._UNSET
        self.done = False
        self.stepped = True

    def take(self) -> Batch:
        if self._next is self._UNSET:
            self._next = next(self._it)
        batch, self._next = self._next, None
        self.stepped = False
        return batch

    def end_step(self) -> None:
        self.stepped = True
        try:
            self._next = next(self._it)
        except StopIteration:
            self.done = True

    def close(self) -> None:
        self._it.close()


def segments(plan: BatchPlan, rc: Any) -> list[BatchPlan]:
    """``plan`` cut after every step the loop evaluates (selection split) or checkpoints at: the loop's own
    ``plan.cadence``, or for a plan without one the cadence ``rc`` (runconfig) gives."""
    per_epoch = plan.steps_per_epoch()
    if per_epoch == 0:
        return [plan]
    first = plan.start_epoch * per_epoch + plan.start_position
    last = first + (plan.max_steps if plan.max_steps is not None else per_epoch - plan.start_position)
    cadence = plan.cadence or Cadence.from_config(rc, per_epoch, total=last)
    parts, start = [], first
    for end in cadence.pauses(first, last):
        parts.append(dataclasses.replace(plan, start_epoch=start // per_epoch, start_position=start % per_epoch,
                                         max_steps=end - start))
        start = end
    return parts


def execute(plan: BatchPlan, feeds: list[Feed], activation_steps: int | None,
            ready: Callable[[], Any]) -> Iterator[list[Batch]]:
    """One DataExecutor over ``plan``, registered in ``feeds`` while it runs (the runner advances the
    newest); ``ready`` creates the cstorch backend first when the plan has steps. The model inputs are
    the executor's (device) tensors; ``index`` holds the step's real rows, from the same plan on the host
    (CSX hosts never see worker batches)."""
    import cerebras.pytorch as cstorch
    import torch

    num_steps = sum(1 for _ in plan)
    if num_steps == 0:
        return
    ready()
    args: dict[str, Any] = {"activation_steps": 1}
    if plan.train:
        args = {"checkpoint_steps": plan.max_steps}
        if activation_steps is not None:
            args["activation_steps"] = activation_steps
    loader = cstorch.utils.data.DataLoader(plan_stream, plan, plan.batch_size)
    feed = Feed(cstorch.utils.data.DataExecutor(loader, num_steps=num_steps, **args))
    feeds.append(feed)
    try:
        for step in plan:
            if feed.done:
                return
            rows, _ = step_rows(step)
            batch = feed.take()
            yield [{**batch, "index": torch.from_numpy(rows.astype(np.int64))}]
            if not feed.stepped:  # the caller took the batch without running a step on it
                feed.end_step()
    finally:
        if feed in feeds:
            feeds.remove(feed)
        feed.close()
