"""Registers the ``token_cls`` task and the ``bert`` model, exactly as a third-party plugin would."""

from __future__ import annotations

from tc.plugins import hookimpl
from tc.tasks.token_cls.settings import BertSettings
from tc.tasks.token_cls.task import TokenClassification


class BertModelPlugin:
    """The ``bert`` entry of the model registry: its config section schema."""

    name = "bert"
    config_model = BertSettings


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(TokenClassification)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("bert", BertModelPlugin)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    """``tc predict`` / ``export`` / ``serve`` / ``calibrate`` for token_cls model dirs; ``tc prepare token_cls``."""
    from tc.tasks.token_cls.calibrate_command import COMMANDS as CALIBRATE_COMMANDS
    from tc.tasks.token_cls.commands import COMMANDS
    from tc.tasks.token_cls.prepare_command import prepare_token_cls
    from tc.tasks.token_cls.serve.command import COMMANDS as SERVE_COMMANDS

    for command in (*COMMANDS, *SERVE_COMMANDS, *CALIBRATE_COMMANDS):
        cli.add_command(command)
    if "prepare" in cli.commands:
        cli.commands["prepare"].add_command(prepare_token_cls)
