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
        from tc.tasks.token_cls.hf_bert import load_pretrained_encoder
        from tc.tasks.token_cls.model import BertForTokenClassification

        module = BertForTokenClassification(config)
        if settings is not None and settings.pretrained is not None:
            load_pretrained_encoder(module, settings.pretrained)
        return module


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(TokenClassification)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("bert", BertModel)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    """``tc prepare token_cls`` (``tc predict`` / ``export`` / ``serve`` / ``calibrate`` are the core's,
    run for token_cls model dirs through ``TokenClassification.model_commands``)."""
    from tc.tasks.token_cls.prepare_command import prepare_token_cls

    if "prepare" in cli.commands:
        cli.commands["prepare"].add_command(prepare_token_cls)
