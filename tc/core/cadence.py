"""When the loop logs, evaluates and checkpoints: one object shared by the loop and by any backend that
has to plan around those steps (the cerebras backend cuts its DataExecutors exactly where the loop will
evaluate or save, so the weights are on the host there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cadence:
    """The loop's fixed schedule of step events (stop signals and early stopping come on top)."""

    total: int
    """The run's last step: always logged, evaluated (with a selection split) and checkpointed."""
    eval_every: int | None
    """Steps between devel evaluations; None: the run has no selection split."""
    checkpoint_every: int | None
    """Steps between checkpoints; None: only at evaluations and at the end."""
    log_every: int = 1

    @classmethod
    def from_config(cls, rc: Any, per_epoch: int, total: int) -> Cadence:
        """From ``runconfig``: evaluations every ``eval_frequency`` steps (default once per epoch) when
        ``selection_split`` is set, checkpoints every ``checkpoint_steps``, logs every ``log_steps``."""
        eval_every = (rc.eval_frequency or per_epoch) if rc.selection_split else None
        return cls(total, eval_every, rc.checkpoint_steps, getattr(rc, "log_steps", 1))

    def logs(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total

    def evaluates(self, step: int) -> bool:
        return self.eval_every is not None and (step % self.eval_every == 0 or step == self.total)

    def checkpoints(self, step: int) -> bool:
        return bool(self.checkpoint_every and step % self.checkpoint_every == 0) or step == self.total

    def pauses(self, first: int, last: int) -> list[int]:
        """The steps in ``(first, last]`` after which the loop evaluates or checkpoints, and ``last``."""
        return sorted({g for g in range(first + 1, last) if self.evaluates(g) or self.checkpoints(g)} | {last})
