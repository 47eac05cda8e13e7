"""Registers the ``token_cls`` task and the ``bert`` model, exactly as a third-party plugin would."""

from __future__ import annotations

from typing import Any

from tc.core.interfaces import Model
from tc.plugins import hookimpl
from tc.tasks.token_cls.settings import BertSettings
from tc.tasks.token_cls.task import TokenClassification


class BertModel(Model):
    """The ``bert`` model: tc's BERT encoder with a token head (``model.py``), from a preset, a pretrained
    Hugging Face checkpoint and explicit keys. Imports torch only when asked for a config or a module."""

    name = "bert"
    config_model = BertSettings

    @classmethod
    def configure(cls, settings: Any, num_classes: int) -> Any:
        from tc.tasks.token_cls.settings import bert_config

        return bert_config(settings, num_classes)

    @classmethod
    def restore(cls, saved: dict[str, Any]) -> Any:
        from tc.tasks.token_cls.model import BertConfig

        return BertConfig(**saved)

    @classmethod
    def build(cls, config: Any, settings: Any = None) -> Any:
        """A fresh BERT; with ``settings.pretrained`` (training) the encoder starts from those weights."""
        from tc.core.checkpoint import match_state
        from tc.core.errors import ConfigError
        from tc.tasks.token_cls.hf_bert import load_hf_checkpoint
        from tc.tasks.token_cls.model import BertForTokenClassification
        from tc.tasks.token_cls.settings import pretrained_dir

        module = BertForTokenClassification(config)
        if settings is not None and settings.pretrained is not None:
            state, _ = load_hf_checkpoint(pretrained_dir(settings.pretrained))
            fitting, report = match_state(module, state)
            if report.mismatched:
                key, theirs, ours = report.mismatched[0]
                raise ConfigError(f"model: {key} is {list(ours)} but the pretrained checkpoint has {list(theirs)}")
            module.load_state_dict(fitting, strict=False)
        return module


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(TokenClassification)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("bert", BertModel)


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
