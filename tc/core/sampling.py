"""Which rows form each global batch, in an order that depends only on (seed, epoch).

Every rank computes the same global batches and takes its own slice, so the data order, the resume
position and the loss weighting are identical on one process and on many. Length bucketing sorts rows
of similar length together inside shuffled windows to cut padding, then shuffles the batches again.

Bucketing makes batches length-homogeneous, so averaging the loss over each batch's own tokens gives a
token of a short-sentence batch more weight than a token of a long one; random batches do not have that
bias. ``loss_normalization="epoch"`` removes it: each step's gradient is scaled by its loss tokens over
the epoch's mean loss tokens per step (``StepRows.weight``), so every token weighs the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from tc.core.errors import ConfigError
from tc.core.interfaces import Dataset, RankInfo

if TYPE_CHECKING:
    from tc.core.cadence import Cadence

BUCKET_WINDOW = 64
"""Global batches per sorting window: wide enough to cut padding, narrow enough to stay random."""


def check_divisible(batch_size: int, world: int, accum: int, ranks: str = "world size") -> None:
    """A global batch splits into ``world`` x ``accum`` equal micro-batches, or the run is refused before it
    starts; ``ranks`` names where the world size came from (e.g. ``deepspeed.num_processes``)."""
    if batch_size % (world * accum):
        raise ConfigError(f"train_input.batch_size={batch_size} must divide by {ranks} ({world} ranks) x "
                          f"runconfig.grad_accum_steps={accum}")


@dataclass
class StepRows:
    """The rows of one global step, and how they split into micro-batches."""

    epoch: int
    position: int
    """Index of this batch within its epoch (the resume position is ``position + 1``)."""
    rows: np.ndarray
    loss_tokens: np.ndarray
    accum: int
    train: bool
    weight: float = 1.0
    """Multiplier of this step's gradient (not of its logged loss): 1, or under epoch normalisation its
    loss tokens over the epoch's mean loss tokens per step."""

    def for_rank(self, ranks: RankInfo) -> list[tuple[np.ndarray, float]]:
        """This rank's micro-batches with each one's share of the global step's loss tokens."""
        mine = self.rows[ranks.rank :: ranks.world_size]
        tokens = self.loss_tokens[ranks.rank :: ranks.world_size]
        if len(mine) == 0:  # eval tail smaller than world: repeat a row, deduplicated by index later
            return [(self.rows[:1], 0.0)]
        total = max(1, int(self.loss_tokens.sum()))
        chunks = np.array_split(np.arange(len(mine)), min(self.accum, len(mine)))
        return [(mine[c], float(tokens[c].sum()) / total) for c in chunks]


@dataclass
class BatchPlan:
    """An iterable of global batches over ``dataset``.

    Training plans run epoch after epoch from ``(start_epoch, start_position)`` until ``max_steps``
    batches were produced; evaluation plans make one ordered pass.
    """

    dataset: Dataset
    batch_size: int
    train: bool
    seed: int = 0
    shuffle: bool = True
    bucket: bool = True
    drop_last: bool = False
    pad_to: int | None = None
    accum: int = 1
    world_size: int = 1
    start_epoch: int = 0
    start_position: int = 0
    max_steps: int | None = None
    loss_normalization: Literal["epoch", "batch"] = "epoch"
    cadence: Cadence | None = None
    """The loop's schedule of evaluations and checkpoints over this plan, for backends that run steps in
    chunks and must end a chunk where the loop pauses (None: plans the loop does not train on)."""

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        n = len(self.dataset)
        lengths = self.dataset.lengths
        if not self.train:  # longest first: padding is minimal and memory peaks early
            order = np.argsort(-lengths, kind="stable") if self.bucket else np.arange(n)
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            window = self.batch_size * BUCKET_WINDOW
            for start in range(0, n, window):
                chunk = order[start : start + window]
                order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        smallest = max(self.world_size * self.accum, 1)
        if self.drop_last or self.world_size > 1:
            batches = [b for b in batches if len(b) == self.batch_size or (len(b) >= smallest and not self.drop_last)]
        if self.bucket and self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def step_weights(self, batches: list[np.ndarray]) -> np.ndarray:
        """Each step's gradient multiplier: its loss tokens over the epoch's mean per step (epoch
        normalisation of training plans), else 1."""
        if not (self.train and self.loss_normalization == "epoch"):
            return np.ones(len(batches))
        step_tokens = np.array([self.dataset.loss_tokens[b].sum() for b in batches], dtype=np.float64)
        return step_tokens / max(float(step_tokens.mean()), 1.0)

    def steps_per_epoch(self) -> int:
        return len(self.epoch_batches(0))

    def __iter__(self) -> Iterator[StepRows]:
        produced, epoch, position = 0, self.start_epoch, self.start_position
        tokens = self.dataset.loss_tokens
        while True:
            batches = self.epoch_batches(epoch)
            if not batches:
                return
            weights = self.step_weights(batches)
            for pos in range(position, len(batches)):
                if self.max_steps is not None and produced >= self.max_steps:
                    return
                rows = batches[pos]
                yield StepRows(epoch, pos, rows, tokens[rows], self.accum if self.train else 1, self.train,
                               float(weights[pos]))
                produced += 1
            if not self.train:
                return
            epoch, position = epoch + 1, 0
