"""Opening a job from names: task, backend, config file and overrides -> plugins, RunConfig, task, backend.

``tc run``, ``tc predict``, ``tc.load``, the benchmarks and the tests all start a job this one way, so a
config and its ``--set`` overrides mean the same whichever way in was taken. A trained model directory
says which task made it (``tc_task.json``), and :func:`load` hands it to that task's loader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.core.reporting import Reporter

if TYPE_CHECKING:
    from tc.core.config import Override
    from tc.core.interfaces import Backend, Task
    from tc.plugins.manager import Plugins

TASK_FILE = "tc_task.json"
"""What a trained model directory says about itself: its task, tokenizer settings and model architecture."""
DEFAULT_TASK = "token_cls"
"""The task of a model directory whose ``tc_task.json`` does not say (written before it recorded its task)."""

Flags = Callable[["Plugins", "type[Backend]"], Sequence["Override"]]
"""Command-line flags as overrides, given the resolved backend class (flags may name its section)."""


@dataclass
class Job:
    """A task, a backend and a validated config, with somewhere to report."""

    task: Task
    backend: Backend
    cfg: Any
    reporter: Reporter = field(default_factory=Reporter)

    @property
    def model_dir(self) -> Path:
        return Path(self.cfg.runconfig.model_dir)

    @property
    def static(self) -> bool:
        return self.backend.static_shapes or self.cfg.runconfig.padding == "static"

    @property
    def pad_to(self) -> int | None:
        return self.cfg.train_input.max_sequence_length if self.static else None


def open_job(task: str = DEFAULT_TASK, backend: str = "cpu", config: Path | None = None,
             overrides: Sequence[str | Override] = (), *, flags: Flags | None = None, model_dir_base: bool = False,
             require_available: bool = False, reporter: Reporter | None = None) -> Job:
    """The job ``tc run --task TASK --backend BACKEND --config CONFIG --set ...`` would run.

    ``flags`` turns command-line flags into overrides applied after ``overrides`` (so they win) once the
    backend class is known; ``model_dir_base`` makes the model directory's own config.yaml the base layer
    (``tc run``); ``require_available`` refuses an unavailable backend before the config is read. Nothing
    is set up: ``job.backend.setup()`` is the caller's, when it runs something."""
    from tc.core.config import load_run_config
    from tc.plugins.manager import load_plugins

    plugins = load_plugins()
    task_cls = plugins.task(task)
    backend_cls = plugins.backend(backend)
    if require_available:
        backend_cls.require_available()
    sets = [*overrides, *(flags(plugins, backend_cls) if flags is not None else ())]
    cfg = load_run_config(task_cls, plugins.registry.models, plugins.registry.backends, config, sets,
                          model_dir_base=model_dir_base)
    return Job(task_cls(cfg), backend_cls(cfg), cfg, reporter or Reporter())


def task_of(model_dir: Path) -> str:
    """The task a model directory was trained for, as its ``tc_task.json`` records it (``DEFAULT_TASK``
    when the file is missing, unreadable or silent: that task's loader then says what is wrong)."""
    try:
        info = json.loads((Path(model_dir).expanduser() / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return DEFAULT_TASK
    name = info.get("task") if isinstance(info, dict) else None
    return name if isinstance(name, str) and name else DEFAULT_TASK


def load(model_dir: str | Path, backend: str = "cpu", **options: Any) -> Any:
    """A ready predictor for a trained model directory, from the task that trained it (``Task.load``)."""
    from tc.core.errors import CheckpointError
    from tc.plugins.manager import load_plugins

    plugins = load_plugins()
    name = task_of(Path(model_dir))
    task_cls = plugins.registry.tasks.get(name)
    if task_cls is None:
        raise CheckpointError(f"{Path(model_dir) / TASK_FILE}: task {name!r} is not installed here "
                              f"(installed: {', '.join(sorted(plugins.registry.tasks))})")
    return task_cls.load(model_dir, backend=backend, **options)
