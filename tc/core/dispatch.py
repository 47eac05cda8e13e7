"""``tc predict`` / ``serve`` / ``export`` / ``calibrate``: core commands that run the command of the task
that trained the model directory they are given.

Each task declares the commands it offers for its model directories (``Task.model_commands``); for
every verb some task offers, the CLI gets one ``ModelDirCommand``, which reads ``--model-dir`` from the
arguments, asks the directory which task made it (``jobs.task_of``) and hands the whole argument list to
that task's command. So a plugin task gets ``tc predict`` without registering a command of that name
(which the plugin manager would refuse as a clash), and two tasks never fight over one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from tc.core.errors import ConfigError, PluginError
from tc.core.jobs import DEFAULT_TASK, task_of

MODEL_DIR_FLAGS = ("--model-dir", "--model_dir")
SHORT_HELP = {"predict": "Predict with a trained model directory (the task that trained it decides how).",
              "serve": "Serve a trained model directory over HTTP.",
              "export": "Export a trained model directory to OUT.",
              "calibrate": "Calibrate a trained model directory's scores on a split."}


def model_dir_argument(args: Sequence[str]) -> str | None:
    """The value of ``--model-dir`` (either spelling, ``--model-dir=D`` too) in ``args``, or None."""
    for i, arg in enumerate(args):
        if arg in MODEL_DIR_FLAGS and i + 1 < len(args):
            return args[i + 1]
        for flag in MODEL_DIR_FLAGS:
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1 :]
    return None


def import_command(spec: str, owner: str) -> click.Command:
    """The click command ``"module:attribute"`` names; a task whose spec is broken is a PluginError."""
    module, _, attribute = spec.partition(":")
    try:
        command = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"the {owner} task's command {spec!r} cannot be imported ({exc})") from None
    if not isinstance(command, click.Command):
        raise PluginError(f"the {owner} task's command {spec!r} is not a click command")
    return command


class ModelDirCommand(click.Command):
    """One verb over every task that offers it; ``tasks`` maps a task name to its command's spec."""

    def __init__(self, verb: str, tasks: Mapping[str, str], prepare: Callable[[click.Command], None] | None = None):
        super().__init__(verb, context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                                 "help_option_names": []},
                         add_help_option=False, short_help=SHORT_HELP.get(verb, f"{verb} a trained model directory."))
        self.verb = verb
        self.tasks = dict(tasks)
        self.prepare = prepare

    @property
    def default_task(self) -> str:
        return DEFAULT_TASK if DEFAULT_TASK in self.tasks else next(iter(self.tasks))

    def target(self, args: Sequence[str]) -> click.Command:
        """The command of the task that trained ``--model-dir`` (the default task's without one: its
        ``--help``, or its own error that the flag is missing)."""
        model_dir = model_dir_argument(args)
        name = self.default_task if model_dir is None else task_of(Path(model_dir))
        spec = self.tasks.get(name)
        if spec is None:
            offered = ", ".join(sorted(self.tasks))
            raise ConfigError(f"--model-dir {model_dir}: it was trained for the {name} task, which has no "
                              f"`tc {self.verb}` (tasks that have one: {offered})")
        command = import_command(spec, name)
        if self.prepare is not None:
            self.prepare(command)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.args = list(args)
        return []

    def invoke(self, ctx: click.Context) -> Any:
        command = self.target(ctx.args)
        with command.make_context(ctx.info_name, list(ctx.args), parent=ctx.parent) as sub:
            return command.invoke(sub)

    def get_help(self, ctx: click.Context) -> str:
        command = self.target([])
        with command.make_context(ctx.info_name, ["--help"], parent=ctx.parent, resilient_parsing=True) as sub:
            return command.get_help(sub)


def add_model_commands(cli: click.Group, tasks: Mapping[str, Any],
                       prepare: Callable[[click.Command], None] | None = None) -> None:
    """One ``ModelDirCommand`` on ``cli`` per verb any of ``tasks`` (name -> Task class) offers."""
    verbs: dict[str, dict[str, str]] = {}
    for name, task in tasks.items():
        for verb, spec in getattr(task, "model_commands", {}).items():
            verbs.setdefault(verb, {})[name] = spec
    for verb, offered in verbs.items():
        cli.add_command(ModelDirCommand(verb, offered, prepare))
