"""The one training loop. Every backend runs it; it never asks which backend it has.

Per step it hands the backend's runner this rank's micro-batches, then decides on logging, devel
evaluation (model selection, early stopping), checkpoints and stop signals, on the schedule of one
``Cadence``. Where to start and what to save is ``tc.core.checkpoint.policy``'s: resume state (weights,
optimizer, schedule, step, RNG, data position) round-trips through it, so a killed run restarted with
the same command ends bit-identical to one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from rich.markup import escape

from tc.core.cadence import Cadence
from tc.core.checkpoint.policy import BEST, CheckpointPolicy, Start
from tc.core.config import RunSettings, dump_config
from tc.core.errors import ConfigError, TrainingAborted
from tc.core.evaluation import evaluate, write_results
from tc.core.fs import atomic_write_text, ensure_writable_dir
from tc.core.interfaces import OptimSpec, Runner, Task
from tc.core.jobs import Job
from tc.core.reporting import Reporter
from tc.core.sampling import BatchPlan, check_divisible

__all__ = ["BEST", "Job", "Start", "final_evaluation", "fit", "optim_spec", "run", "runner_for_eval", "train_plan"]


def run(job: Job, mode: str) -> dict[str, Any] | None:
    """Train and/or evaluate as ``mode`` says; returns the final evaluation metrics, if any."""
    ensure_writable_dir(job.model_dir, "runconfig.model_dir")
    job.backend.setup()
    if not job.backend.ranks.is_main:
        job.reporter = Reporter(enabled=False)
    else:
        job.reporter.attach(job.model_dir)
    try:
        if mode not in ("train", "eval", "train_and_eval"):
            job.backend.run_mode(mode, job)
            return None
        runner = fit(job) if mode in ("train", "train_and_eval") else None
        if mode in ("eval", "train_and_eval"):
            return final_evaluation(job, runner)
        return None
    finally:
        job.reporter.close()
        job.backend.teardown()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- training ----------------------------------------------------------------------------------
def optim_spec(cfg: Any, total_steps: int) -> OptimSpec:
    o = cfg.optimizer
    warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_ratio * total_steps)
    return OptimSpec(
        optimizer_type=o.optimizer_type, learning_rate=o.learning_rate, weight_decay=o.weight_decay,
        betas=tuple(o.betas), eps=o.eps, momentum=o.momentum, warmup_steps=warmup, total_steps=total_steps,
        schedule=o.lr_schedule, max_gradient_norm=o.max_gradient_norm, layer_decay=o.layer_decay,
    )


@dataclass
class Selection:
    """Model selection by the task's ``selection_metric`` on the selection split, and early-stopping
    bookkeeping (saved in checkpoints, so a resumed run keeps its best). ``best`` is None until the first
    evaluation: with ``mode`` min no sentinel number could stand for "nothing yet"."""

    metric: str = "f1"
    mode: str = "max"
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0

    @classmethod
    def resume(cls, task: Task, saved: dict[str, Any]) -> Selection:
        """The bookkeeping a checkpoint saved (``saved``: empty for a fresh start), for ``task``. A checkpoint
        from before tasks named their metric (``best_f1``) selected by f1; one that selected by another
        metric or mode than the task's now starts selection afresh, as its best is no score of this one."""
        fresh = cls(task.selection_metric, task.selection_mode)
        if not saved:
            return fresh
        metric, mode = saved.get("metric", "f1"), saved.get("mode", "max")
        if (metric, mode) != (fresh.metric, fresh.mode):
            return fresh
        step = int(saved.get("best_step", 0))
        best = saved.get("best", saved.get("best_f1"))
        return cls(metric, mode, float(best) if step and best is not None else None, step,
                   int(saved.get("bad_evals", 0)))

    def update(self, score: float, step: int) -> bool:
        """Record the evaluation at ``step``; True when it is the best so far (ties keep the earlier step)."""
        better = self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        if better:
            self.best, self.best_step, self.bad_evals = score, step, 0
            return True
        self.bad_evals += 1
        return False


def train_plan(job: Job, dataset: Any) -> BatchPlan:
    """The training BatchPlan of ``job`` over ``dataset``: the one place the loop's data order, shapes and
    loss weighting are derived from the config (backends with a step of their own reuse it)."""
    rc, ti = job.cfg.runconfig, job.cfg.train_input
    return BatchPlan(
        dataset, ti.batch_size, train=True, seed=rc.seed, shuffle=ti.shuffle, bucket=not job.static,
        drop_last=job.backend.static_shapes, pad_to=job.pad_to, accum=rc.grad_accum_steps,
        world_size=job.backend.ranks.world_size, loss_normalization=rc.loss_normalization,
    )


def fit(job: Job) -> Runner:
    task, backend, cfg, rep = job.task, job.backend, job.cfg, job.reporter
    rc, ti = cfg.runconfig, cfg.train_input
    world = backend.ranks.world_size
    check_divisible(ti.batch_size, world, rc.grad_accum_steps)
    seed_everything(rc.seed)
    train_set = task.dataset("train")
    selection_set = task.dataset(rc.selection_split) if rc.selection_split else None
    rep.info(f"train: {train_set.describe()}")
    if selection_set is not None:
        rep.info(f"{rc.selection_split}: {selection_set.describe()}")
    if backend.ranks.is_main:
        task.write_assets(job.model_dir)
        atomic_write_text(job.model_dir / "config.yaml", dump_config(cfg))

    model = task.build_model()
    checkpoints = CheckpointPolicy(job)
    start = checkpoints.start(model)
    plan = train_plan(job, train_set)
    per_epoch = plan.steps_per_epoch()
    if per_epoch == 0:
        raise ConfigError(f"train_input.batch_size={ti.batch_size} is larger than the {len(train_set)} training rows")
    total = rc.max_steps or math.ceil((rc.num_epochs or RunSettings.model_fields["num_epochs"].default) * per_epoch)
    runner = backend.prepare(model, optim_spec(cfg, total))
    start.restore(runner)
    step, (epoch, pos) = start.step, start.epoch_position
    selection = Selection.resume(task, start.selection)
    if step >= total:
        rep.info(f"already trained to step {step} (target {total})")
        return checkpoints.use_best(runner, selection)

    cadence = Cadence.from_config(rc, per_epoch, total)
    plan.start_epoch, plan.start_position, plan.max_steps, plan.cadence = epoch, pos, total - step, cadence
    rep.info(f"training {total - step} steps ({per_epoch} per epoch, global batch {ti.batch_size}) "
             f"on {backend.device_description()}")
    rep.start_training(total, step)
    window_t, window_rows, last_ckpt = time.perf_counter(), 0, None
    with stop_signals() as stop:
        for micro_batches in backend.batches(plan):
            result = runner.train_step(micro_batches)
            step, pos = step + 1, pos + 1
            if pos == per_epoch:
                epoch, pos = epoch + 1, 0
            window_rows += sum(len(b["index"]) for b in micro_batches) * world
            if not math.isfinite(result.loss):
                rep.stop_training()
                where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else ""
                raise TrainingAborted(f"loss is {result.loss} at step {step}: training stopped{where}")
            if cadence.logs(step):
                elapsed = time.perf_counter() - window_t
                speed = window_rows / max(elapsed, 1e-9)
                rep.record({"step": step, "epoch": round(epoch + pos / per_epoch, 4), "loss": result.loss,
                            "lr": runner.lr, "grad_norm": result.grad_norm, "sentences_per_s": round(speed, 2)})
                rep.step(step, epoch + pos / per_epoch, result.loss, runner.lr, speed)
                window_t, window_rows = time.perf_counter(), 0
            evaluated = improved = False
            if selection_set is not None and cadence.evaluates(step):
                eval_start = time.perf_counter()
                improved = _select(job, runner, selection_set, selection, step)
                evaluated = True
                window_t += time.perf_counter() - eval_start  # throughput counts training time only
            patience_out = bool(rc.early_stopping_patience) and selection.bad_evals >= rc.early_stopping_patience
            stopping = backend.agree(stop.signal is not None)
            due = cadence.checkpoints(step) or evaluated or stopping or patience_out
            last_ckpt = checkpoints.save_step(runner, step, epoch, pos, selection, improved, due) or last_ckpt
            if stopping:
                rep.stop_training()
                name = stop.signal or "SIGTERM"  # another rank was signalled
                err = TrainingAborted(f"interrupted by {name} at step {step}; checkpoint saved: {last_ckpt}")
                err.exit_code = 128 + int(getattr(signal, name))
                raise err
            if patience_out:
                rep.info(f"early stopping at step {step}: no devel improvement in {selection.bad_evals} evaluations")
                break
    rep.stop_training()
    return checkpoints.use_best(runner, selection)


def _select(job: Job, runner: Runner, dataset: Any, selection: Selection, step: int) -> bool:
    ei = job.cfg.eval_input
    metrics = evaluate(job.task, runner, job.backend, dataset, ei.batch_size, job.pad_to)
    metrics.update(split=job.cfg.runconfig.selection_split, step=step)
    task, score = job.task, job.task.selection_score(metrics)
    improved = selection.update(score, step)
    curves = {k: metrics[k] for k in ("precision", "recall") if k in metrics}  # tc report draws them when there
    job.reporter.record({"step": step, "split": metrics["split"], **curves, task.selection_metric: score,
                         "selection": metrics["selection"]})
    job.reporter.info(f"step {step}: {metrics['split']} {escape(task.metric_label)} {score:.2f}"
                      + (" (best)" if improved else f" (best {selection.best:.2f} at {selection.best_step})"))
    if job.backend.ranks.is_main:
        write_results(job.model_dir, metrics)
    return improved


# -- evaluation --------------------------------------------------------------------------------
def final_evaluation(job: Job, runner: Runner | None) -> dict[str, Any]:
    """Evaluate on ``eval_input.split``: the trained runner, or weights from the model directory."""
    if runner is None:
        runner = runner_for_eval(job)
    ei = job.cfg.eval_input
    dataset = job.task.dataset(ei.split or "test")
    metrics = evaluate(job.task, runner, job.backend, dataset, ei.batch_size, job.pad_to)
    metrics.update(split=ei.split or "test")
    if job.backend.ranks.is_main:
        write_results(job.model_dir, metrics)
        metric = job.task.selection_metric
        job.reporter.record({"split": metrics["split"], metric: metrics[metric], "selection": metrics["selection"],
                             "final": True})
        job.reporter.show(job.task.render_metrics(metrics))
    return metrics


def runner_for_eval(job: Job) -> Runner:
    """Weights for ``--mode eval``: an explicit checkpoint, else the best, else the latest in model_dir."""
    seed_everything(job.cfg.runconfig.seed)
    model = job.task.build_model()
    path = CheckpointPolicy(job).weights_for_eval(model)
    job.reporter.info(f"evaluating weights from {path}")
    return job.backend.prepare(model, None)


@contextlib.contextmanager
def stop_signals() -> Iterator[Any]:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (then checkpoint and exit)."""

    class Flag:
        signal: str | None = None

    flag = Flag()

    def handler(signum: int, _frame: Any) -> None:
        if flag.signal is not None:  # second signal: give up immediately
            os._exit(128 + signum)
        flag.signal = signal.Signals(signum).name

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
