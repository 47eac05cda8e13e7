"""Config sections of the ``cdr_relations`` task (``train_input``/``eval_input``) and its ``bert_relations`` model."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from tc.core.config import Section
from tc.core.errors import ConfigError
from tc.tasks.token_cls.settings import DEFAULT_PRETRAINED

DEFAULT_DATASET = "BC5CDR-PubTator"
ENCODER_KEYS = ("preset", "pretrained", "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "filter_size",
                "max_position_embeddings", "dropout_rate", "embedding_dropout_rate", "attention_dropout_rate",
                "encoder_output_dropout_rate", "initializer_range")
"""The ``model`` keys that describe the BERT encoder (as in token_cls's ``bert`` model)."""


class RelationInput(Section):
    """``train_input`` / ``eval_input``: where the documents are, how long a document may be, which relation."""

    data_dir: Path | None = None
    """A folder with train/devel/test document files (PubTator, BioC); unset: the shipped BC5CDR-PubTator."""
    split: str | None = None
    """Split read by this section: train_input -> "train"; eval_input -> "test" unless set."""
    format: str | None = None
    """Document format of the split files (None: by suffix)."""
    max_sequence_length: int = Field(1024, gt=8)
    """WordPiece tokens kept per document, markers and [CLS]/[SEP] included (a CDR abstract has at most 876);
    the encoder reads longer documents than its position table in overlapping windows (``model.window``)."""
    batch_size: int = Field(4, gt=0)
    shuffle: bool = True
    max_documents: int | None = Field(None, gt=0)
    """Use only the first N documents of each split (quick checks)."""
    head_type: str = "Chemical"
    tail_type: str = "Disease"
    relation: str = "CID"
    """The relation type of the gold lines (PubTator ``PMID<TAB>CID<TAB>...``, BioC ``relation`` infon)."""
    vocab_file: Path | None = None
    do_lower: bool | None = None
    num_workers: int = Field(0, ge=0)

    identity_keys: ClassVar[tuple[str, ...]] = ("head_type", "tail_type", "relation", "vocab_file", "do_lower")
    name_keys: ClassVar[tuple[str, ...]] = ("split", "head_type", "tail_type", "relation")


class RelationModelSettings(Section):
    """The ``model`` section of ``bert_relations``: the encoder as for ``bert``, then the pair classifier."""

    name: str = "bert_relations"
    preset: str | None = None
    pretrained: str | None = DEFAULT_PRETRAINED
    vocab_size: int | None = Field(None, gt=0)
    hidden_size: int | None = Field(None, gt=0)
    num_hidden_layers: int | None = Field(None, gt=0)
    num_heads: int | None = Field(None, gt=0)
    filter_size: int | None = Field(None, gt=0)
    max_position_embeddings: int | None = Field(None, gt=0)
    dropout_rate: float | None = Field(None, ge=0, lt=1)
    embedding_dropout_rate: float | None = Field(None, ge=0, lt=1)
    attention_dropout_rate: float | None = Field(None, ge=0, lt=1)
    encoder_output_dropout_rate: float | None = Field(None, ge=0, lt=1)
    initializer_range: float | None = Field(None, gt=0)
    pair_size: int = Field(384, gt=0)
    """Width of the head and tail projections."""
    group_size: int = Field(32, gt=0)
    """Block size of the grouped bilinear layer (``pair_size`` must divide by it)."""
    window: int = Field(512, gt=8)
    """Encoder window; capped at the encoder's position table."""
    pair_features: bool = True
    """Embed each pair's sentence distance and title flags (``features.pair_features``) into the classifier."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """A pair is predicted when its probability reaches this (not part of the architecture)."""

    identity_keys: ClassVar[tuple[str, ...]] = (
        "name", "preset", "pretrained", "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "filter_size",
        "max_position_embeddings", "pair_size", "group_size", "pair_features")
    path_keys: ClassVar[tuple[str, ...]] = ("pretrained",)
    name_keys: ClassVar[tuple[str, ...]] = ("name", "preset")

    def check(self) -> None:
        if self.pair_size % self.group_size:
            raise ConfigError(f"model.pair_size={self.pair_size} must divide by model.group_size={self.group_size}")
