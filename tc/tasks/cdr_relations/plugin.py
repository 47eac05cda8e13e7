"""Registers the ``cdr_relations`` task and the ``bert_relations`` model, as a third-party plugin would."""

from __future__ import annotations

from typing import Any

from tc.core.interfaces import Model
from tc.plugins import hookimpl
from tc.tasks.cdr_relations.settings import ENCODER_KEYS, RelationModelSettings
from tc.tasks.cdr_relations.task import CdrRelations


class BertRelationModel(Model):
    """``bert_relations``: tc's BERT encoder (a preset and/or a pretrained checkpoint) and a pair classifier."""

    name = "bert_relations"
    config_model = RelationModelSettings

    @classmethod
    def configure(cls, settings: Any, num_classes: int) -> Any:
        from dataclasses import asdict

        from tc.tasks.cdr_relations.model import RelationConfig
        from tc.tasks.token_cls.settings import BertSettings, bert_config

        settings.check()
        encoder = bert_config(BertSettings(**{k: getattr(settings, k) for k in ENCODER_KEYS}), 2)
        window = min(settings.window, encoder.max_position_embeddings)
        from tc.tasks.cdr_relations.features import PAIR_FEATURES

        return RelationConfig(asdict(encoder), settings.pair_size, settings.group_size, window, num_classes=num_classes,
                              pair_features=PAIR_FEATURES if settings.pair_features else 0)

    @classmethod
    def restore(cls, saved: dict[str, Any]) -> Any:
        from tc.tasks.cdr_relations.model import RelationConfig

        return RelationConfig(**saved)

    @classmethod
    def build(cls, config: Any, settings: Any = None) -> Any:
        """A fresh relation model; with ``settings.pretrained`` (training) the encoder starts from those weights."""
        from tc.tasks.cdr_relations.model import BertForRelations
        from tc.tasks.token_cls.hf_bert import load_pretrained_encoder

        module = BertForRelations(config)
        if settings is not None and settings.pretrained is not None:
            load_pretrained_encoder(module, settings.pretrained)
        return module


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(CdrRelations)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("bert_relations", BertRelationModel)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    """``tc pipeline``: NER then relations with two model dirs (``tc predict`` is the core's)."""
    from tc.tasks.cdr_relations.commands import pipeline

    cli.add_command(pipeline)
