"""What a run tells the user while it works: a rich progress bar on a terminal, plain periodic lines
in CI logs, and ``metrics.jsonl`` in the model directory for anything that reads it afterwards.

Only the main rank reports; other ranks get a silent reporter.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """Progress, log lines and the metrics file of one run."""

    def __init__(self, console: Console | None = None, quiet: bool = False, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet or not enabled
        self.enabled = enabled
        self.metrics_path: Path | None = None
        self._progress: Progress | None = None
        self._task_id: Any = None
        self._tensorboard: Any = None

    # -- files -------------------------------------------------------------------------------
    def attach(self, model_dir: Path, tensorboard: bool = True) -> None:
        """Start appending to ``model_dir/metrics.jsonl`` (and TensorBoard, when installed)."""
        if not self.enabled:
            return
        self.metrics_path = model_dir / "metrics.jsonl"
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(log_dir=str(model_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tensorboard = None

    def record(self, entry: dict[str, Any]) -> None:
        if self.metrics_path is None:
            return
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=_jsonable) + "\n")
        if self._tensorboard is not None and "step" in entry:
            for key, value in entry.items():
                if isinstance(value, int | float) and key != "step" and math.isfinite(value):
                    prefix = entry.get("split", "train")
                    self._tensorboard.add_scalar(f"{prefix}/{key}", value, entry["step"])

    # -- terminal ----------------------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def show(self, renderable: Any) -> None:
        if self.enabled and renderable is not None:
            self.console.print(renderable)

    def start_training(self, total_steps: int, start_step: int) -> None:
        self._t0 = time.perf_counter()
        self._start_step = start_step
        self._total = total_steps
        self._last_plain = 0.0
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task_id = self._progress.add_task("train", total=total_steps, completed=start_step, stats="")

    def step(self, step: int, epoch: float, loss: float, lr: float, sentences_per_s: float) -> None:
        stats = f"epoch {epoch:.2f} loss {loss:.4f} lr {lr:.2e} {sentences_per_s:.0f} sent/s"
        if self._progress is not None:
            self._progress.update(self._task_id, completed=step, stats=stats)
            return
        now = time.perf_counter()
        if not self.quiet and (now - self._last_plain >= 10 or step == self._total):
            self._last_plain = now
            done = step - self._start_step
            eta = (now - self._t0) / max(done, 1) * (self._total - step)
            self.console.print(f"step {step}/{self._total} {stats} eta {eta:.0f}s", highlight=False, soft_wrap=True)

    def stop_training(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self.stop_training()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def plain_console() -> Console:
    """A console for stderr that never emits colour codes into pipes."""
    return Console(stderr=True, force_terminal=sys.stderr.isatty() or None)
