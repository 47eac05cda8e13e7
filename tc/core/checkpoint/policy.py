"""The checkpoint policy, in one place for every backend: where a run starts and what it saves.

Starting: an explicit ``runconfig.checkpoint_path`` (a tc checkpoint from any backend, or a foreign one
the task converts) with the parts ``load_checkpoint_states`` names, else the newest readable checkpoint
in the model directory (a corrupt one is reported and the previous one used), else nothing; weights
apply with the run's strictness. Saving: a checkpoint with the resume state (step, RNG, data position,
model selection) through the backend's state IO, the devel-best weights as ``best_model.pt``, and the
newest ``keep_last_n`` steps kept. The loop asks :meth:`CheckpointPolicy.start` and
:meth:`CheckpointPolicy.save_step`; evaluation asks :meth:`CheckpointPolicy.weights_for_eval`.
Which file of a model directory holds the weights to use is :func:`pick_weights`'s, for resuming,
``--mode eval`` and inference alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.markup import escape

from tc.core.checkpoint.files import FORMAT, atomic_save, checkpoint_name, list_checkpoints, load_file, prune
from tc.core.checkpoint.state import PARTS, LoadReport, apply_model_state, capture_rng, parse_parts, restore_rng
from tc.core.errors import CheckpointError

if TYPE_CHECKING:
    from tc.core.interfaces import Runner
    from tc.core.jobs import Job

BEST = "best_model.pt"
"""The devel-best weights of a model directory."""


@dataclass
class Picked:
    """The weights picked from a model directory, and the preferred files passed over (path, reason)."""

    path: Path
    state: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def note(self) -> str | None:
        """One line saying which file is used instead of an unreadable preferred one, else None: weights
        other than the ones the user expects must never be used silently."""
        if not self.skipped:
            return None
        path, reason = self.skipped[0]
        more = f" (and {len(self.skipped) - 1} more unreadable)" if len(self.skipped) > 1 else ""
        return f"note: {path} is unusable ({reason}){more}; using {self.path} instead"


def weight_candidates(model_dir: Path, native: str = ".pt", best: bool = True) -> list[Path]:
    """Where a model directory's weights may be read from, best first: ``best_model.pt`` (when ``best``),
    then the checkpoints newest first, in the backend's ``native`` format when it wrote any, else ``.pt``."""
    found = list_checkpoints(model_dir, {native}) or list_checkpoints(model_dir, {".pt"})
    first = model_dir / BEST
    return [*([first] if best and first.is_file() else []), *(path for _, path in reversed(found))]


def pick_weights(model_dir: Path, read: Callable[[Path], dict[str, Any]], native: str = ".pt", best: bool = True,
                 on_skip: Callable[[Path, CheckpointError], None] | None = None) -> Picked | None:
    """The first readable of :func:`weight_candidates` (None when there is none at all); a truncated or
    corrupt file is passed over for the next one and recorded (``on_skip`` is told too). When every
    candidate is unreadable, the first one's error is raised. ``read`` is a backend's ``load_checkpoint``."""
    skipped: list[tuple[Path, str]] = []
    first_error: CheckpointError | None = None
    for path in weight_candidates(Path(model_dir), native, best):
        try:
            return Picked(path, read(path), skipped)
        except CheckpointError as exc:
            first_error = first_error or exc
            skipped.append((path, str(exc).removeprefix(f"{path}: ")))
            if on_skip is not None:
                on_skip(path, exc)
    if first_error is not None:
        raise first_error
    return None


@dataclass
class Start:
    """Where training starts: which checkpoint, which of its parts apply, and the position they give."""

    path: Path | None = None
    parts: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state.get("global_step", 0)) if "global_step" in self.parts else 0

    @property
    def epoch_position(self) -> tuple[int, int]:
        """(epoch, batch within it) of the data order to continue from."""
        position = dict(self.state.get("dataloader") or {}) if "dataloader" in self.parts else {}
        return int(position.get("epoch", 0)), int(position.get("position", 0))

    @property
    def selection(self) -> dict[str, Any]:
        """The model-selection bookkeeping saved with the step (empty: start selection afresh)."""
        return dict(self.state.get("selection", {})) if "global_step" in self.parts else {}

    def restore(self, runner: Runner) -> None:
        """Apply the optimizer, schedule and RNG parts to a prepared runner (weights were applied before
        the backend prepared the model)."""
        from tc.core.layer_decay import GroupLayoutError

        if self.state:
            try:
                runner.load_state_dict(self.state, self.parts & {"optimizer", "lr_scheduler"})
            except GroupLayoutError as exc:
                raise CheckpointError(f"{self.path}: {exc}") from None
        if "rng" in self.parts and self.state.get("rng"):
            restore_rng(self.state["rng"])


class CheckpointPolicy:
    """The loading and saving policies of one run (``job``: its task, backend, config and reporter)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.backend = job.backend
        self.rc = job.cfg.runconfig
        self.model_dir = job.model_dir

    # -- where do I start ----------------------------------------------------------------------
    def start(self, model: torch.nn.Module) -> Start:
        """Apply the loading policies to ``model``: an explicit checkpoint path, else resume from model_dir."""
        rep = self.job.reporter
        if self.rc.checkpoint_path is not None:
            path = Path(self.rc.checkpoint_path)
            parts = parse_parts(self.rc.load_checkpoint_states)
            state = self.read(path)
            start = Start(path, parts, state)
            rep.info(f"loading {sorted(parts & set(state) | parts & {'model'})} from {self.rc.checkpoint_path}")
            if parts == {"model"}:
                rep.info("load_checkpoint_states=model: fine-tuning from step 0 with a fresh optimizer")
        else:
            start = self.latest_good()
            if start.path is None:
                return start
            rep.info(f"resuming from {start.path}")
        if "model" in start.parts:
            self.load_weights(model, start.state, start.path)
        return start

    def weights_for_eval(self, model: torch.nn.Module) -> Path:
        """Weights for ``--mode eval`` into ``model``: an explicit checkpoint, else the best, else the latest."""
        if self.rc.checkpoint_path is not None:
            path = Path(self.rc.checkpoint_path)
            state = self.read(path)
        else:
            picked = pick_weights(self.model_dir, self.backend.load_checkpoint, self.backend.checkpoint_suffix)
            if picked is None:
                raise CheckpointError(
                    f"{self.model_dir}: no checkpoint to evaluate (train first, or pass --checkpoint-path)"
                )
            if picked.note():
                self.job.reporter.info(escape(picked.note() or ""))
            path, state = picked.path, picked.state
        self.load_weights(model, state, path)
        return path

    def read(self, path: Path) -> dict[str, Any]:
        """A tc checkpoint from any backend, or a foreign one (e.g. Hugging Face) converted by the task."""
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        foreign = self.job.task.convert_foreign_state(path)
        if foreign is not None:
            return {"model": foreign}
        return self.backend.load_checkpoint(path)

    def latest_good(self) -> Start:
        """Newest readable checkpoint in model_dir; a corrupt one is reported and the previous one used."""
        def warn(_path: Path, exc: CheckpointError) -> None:
            self.job.reporter.info(f"[yellow]warning:[/] {escape(str(exc))}; trying the previous checkpoint")

        try:
            picked = pick_weights(self.model_dir, self.backend.load_checkpoint, self.backend.checkpoint_suffix,
                                  best=False, on_skip=warn)
        except CheckpointError:  # every checkpoint unreadable (each one reported): start afresh
            return Start()
        return Start() if picked is None else Start(picked.path, set(PARTS), picked.state)

    def load_weights(self, model: torch.nn.Module, state: dict[str, Any], path: Path | None) -> None:
        """Apply ``state["model"]`` with the run's strictness; show what non-strict loading skipped."""
        report = apply_model_state(
            model, state["model"], strict=not self.rc.disable_strict_checkpoint_loading, source=path,
            labels=(state.get("meta", {}).get("labels"), self.job.task.meta().get("labels")),
        )
        if not report.clean:
            self.job.reporter.show(skipped_table(report))

    # -- save this step ------------------------------------------------------------------------
    def save_step(self, runner: Runner, step: int, epoch: int, position: int, selection: Any,
                  improved: bool, checkpoint: bool) -> Path | None:
        """After ``step``: the best weights when the selection score ``improved`` (written before the checkpoint
        that records them as best, with the score under the task's metric name and that name under
        ``selection_metric``), then a resumable checkpoint when one is due; returns its path, if written."""
        if improved:
            weights = runner.state_dict()["model"]  # on every rank: ZeRO-3 gathers collectively
            if self.backend.ranks.is_main:
                atomic_save({selection.metric: selection.best,  # first: a metric named "model" cannot win
                             "model": weights, "meta": self.job.task.meta(), "global_step": step,
                             "selection_metric": selection.metric}, self.model_dir / BEST)
        if not checkpoint:
            return None
        path = self.model_dir / checkpoint_name(step, self.backend.checkpoint_suffix)
        extra = {"global_step": step, "rng": capture_rng(), "dataloader": {"epoch": epoch, "position": position},
                 "selection": selection.__dict__.copy(), "meta": self.job.task.meta(), "format": FORMAT}
        self.backend.save_checkpoint(runner, path, extra)
        self.backend.barrier()
        if self.backend.ranks.is_main:
            prune(self.model_dir, self.rc.keep_last_n, {self.backend.checkpoint_suffix, ".pt"})
        return path

    def use_best(self, runner: Runner, selection: Any) -> Runner:
        """Swap the devel-best weights into ``runner`` for the final evaluation (when training found any)."""
        best = self.model_dir / BEST
        if selection.best_step and best.exists():
            runner.load_state_dict(load_file(best), {"model"})
            label = escape(self.job.task.metric_label)
            self.job.reporter.info(f"using the best {self.rc.selection_split} checkpoint "
                                   f"(step {selection.best_step}, {label} {selection.best:.2f})")
        return runner


def skipped_table(report: LoadReport) -> Any:
    """What non-strict loading skipped or left freshly initialised, as a rich table."""
    from rich.table import Table

    table = Table(title="non-strict checkpoint loading", title_justify="left")
    table.add_column("key")
    table.add_column("what happened")
    for key in report.missing:
        table.add_row(key, "not in checkpoint: freshly initialised")
    for key, theirs, ours in report.mismatched:
        table.add_row(key, f"shape {list(theirs)} != model {list(ours)}: freshly initialised")
    for key in report.unexpected:
        table.add_row(key, "not in model: skipped")
    return table
