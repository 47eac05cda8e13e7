"""``tc run --dry-run``: everything a run would use, resolved and counted, without training."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from tc.core.config import dump_config
from tc.core.interfaces import Backend, Task


def describe(task: Task, backend: Backend, cfg: Any, console: Console) -> None:
    console.print(Syntax(dump_config(cfg), "yaml", theme="ansi_dark", background_color="default"))
    available = backend.is_available()
    table = Table(title="dry run", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    status = "available" if available.ok else f"not available: {available.reason}"
    table.add_row("backend", f"{backend.name} ({status})")
    if available.ok:
        table.add_row("device", backend.device_description())
    table.add_row("train", task.dataset("train").describe())
    for split in {cfg.runconfig.selection_split, cfg.eval_input.split or "test"} - {None}:
        table.add_row(split, task.dataset(split).describe())
    meta = task.meta()
    if "labels" in meta:
        table.add_row("labels", f"{len(meta['labels'])}: {', '.join(meta['labels'])}")
    model = task.build_model()
    params = sum(p.numel() for p in model.parameters())
    describe = getattr(model, "describe", None)  # a model may say more of itself (its head, its decoding)
    more = f", {describe()}" if callable(describe) else ""
    table.add_row("model", f"{type(model).__name__}, {params / 1e6:.2f} M parameters{more}")
    console.print(table)
