"""A trained token_cls model directory, read and checked once: weights, labels, vocabulary, settings.

A model directory is self-describing (weights, ``label2id.json``, ``vocab.txt``, ``tc_task.json``), so
inference (``tc predict``, ``tc export``, ``tc.load``) needs neither the training config nor the data.
The weights are ``best_model.pt`` (best devel F1) or else the newest checkpoint; a file that cannot be
read is passed over for the next one, and that is said on stderr, never done silently.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.core.checkpoint.policy import BEST, pick_weights, weight_candidates
from tc.core.errors import CheckpointError, first_line
from tc.core.jobs import TASK_FILE

if TYPE_CHECKING:
    import torch

    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.model import BertConfig

INFERENCE_MISMATCH = ("a trained model loads whole (only tc run has --disable-strict-checkpoint-loading); give a "
                      "checkpoint of the model {task} describes")
"""The end of a strict-load error at inference, which has no --disable-strict-checkpoint-loading: a model
missing weights would predict from random ones."""
LABELS_FILE = "label2id.json"
VOCAB_FILE = "vocab.txt"
__all__ = ["BEST", "LABELS_FILE", "TASK_FILE", "VOCAB_FILE", "TrainedModel", "load_trained_model", "read_task_info",
           "weight_candidates"]


# ---------------------------------------------------------------------------------------------
# The model directory
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """Everything inference needs from a model directory, read and checked once."""

    model_dir: Path
    weights_path: Path
    state: dict[str, torch.Tensor] = field(repr=False)
    config: BertConfig
    label_map: LabelMap
    vocab_file: Path
    do_lower_case: bool
    max_sequence_length: int
    label_scheme: str
    note: str | None = None
    """The line saying which weights are used instead of unreadable preferred ones (None: the preferred)."""
    model_name: str = "bert"
    """The registered model that builds the network (``tc_task.json``'s ``model``)."""
    context_tokens: int = 0
    """Document context the model was trained with (``tc_task.json``): prediction feeds the same."""
    document_rules: tuple[str, ...] | None = None
    """``model.document_rules`` as trained (``tc_task.json``); None: tc's default."""

    def __repr__(self) -> str:
        return (f"TrainedModel({str(self.model_dir)!r}, weights={self.weights_path.name!r}, "
                f"labels={len(self.label_map)}, max_sequence_length={self.max_sequence_length})")

    def build_model(self) -> torch.nn.Module:
        """The network with these weights; a checkpoint that does not fit the config is refused."""
        from tc.core.checkpoint import apply_model_state
        from tc.plugins.manager import registered_model
        from tc.tasks.token_cls.decoding import attach_word_decoder

        model = registered_model(self.model_name, str(self.model_dir / TASK_FILE)).build(self.config)
        apply_model_state(model, self.state, strict=True, source=self.weights_path,
                          labels=(None, list(self.label_map.labels)), advice=INFERENCE_MISMATCH.format(
                              task=self.model_dir / TASK_FILE))
        return attach_word_decoder(model, self.label_map.labels, self.label_scheme).eval()


def read_task_info(model_dir: Path) -> dict[str, Any]:
    """``tc_task.json``: tokenizer casing, trained sequence length and the model config."""
    path = model_dir / TASK_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is {model_dir} a tc token_cls model directory?")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({first_line(exc)})") from None
    missing = [k for k in ("do_lower_case", "max_sequence_length", "model_config") if k not in info]
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]!r}")
    return info


def _document_rules(info: dict[str, Any], path: Path) -> tuple[str, ...] | None:
    """``tc_task.json``'s ``document_rules`` (absent: None, the default applies)."""
    from tc.tasks.token_cls.documents.rules import check_rules

    rules = info.get("document_rules")
    if rules is None:
        return None
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise CheckpointError(f"{path}: document_rules must be a list of rule names")
    try:
        return check_rules(rules, f"{path}: document_rules")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def read_weights(model_dir: Path, checkpoint: Path | None, native: str, reader: Any) -> tuple[Path, Any, str | None]:
    """(path, checkpoint dict, note) of an explicit checkpoint, else of the model directory's weights as
    ``tc.core.checkpoint.policy.pick_weights`` picks them (a corrupt one passed over, and the note says so)."""
    from tc.core.checkpoint import load_file

    read = reader or load_file
    if checkpoint is not None:
        return Path(checkpoint), read(Path(checkpoint)), None
    picked = pick_weights(model_dir, read, native)
    if picked is None:
        raise CheckpointError(f"{model_dir}: no {BEST} or checkpoint_<step>.pt to predict with (train first)")
    return picked.path, picked.state, picked.note()


def load_trained_model(model_dir: str | Path, checkpoint: str | Path | None = None,
                       native: str = ".pt", reader: Any = None, quiet: bool = False) -> TrainedModel:
    """Read weights, labels, vocabulary and task settings of a trained model directory.

    When the preferred weights (``best_model.pt``, else the newest checkpoint) cannot be read and an older
    file is used instead, one ``note:`` line on stderr says so (unless ``quiet``): predictions from other
    weights than the user expects must never be silent.
    """
    from tc.plugins.manager import registered_model
    from tc.tasks.token_cls.labels import LabelMap

    model_dir = Path(model_dir).expanduser()
    if not model_dir.exists():
        raise CheckpointError(f"{model_dir}: model directory not found")
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: not a directory (expected a tc model directory)")
    info = read_task_info(model_dir)
    labels_path = model_dir / LABELS_FILE
    if not labels_path.is_file():
        raise CheckpointError(f"{labels_path}: not found; the label map is needed to name predictions")
    vocab = model_dir / VOCAB_FILE
    if not vocab.is_file():
        raise CheckpointError(f"{vocab}: not found; the vocabulary is needed to tokenize input")
    label_map = LabelMap.load(labels_path)
    model_name = str(info.get("model") or "bert")
    try:
        config = registered_model(model_name, f"{model_dir / TASK_FILE}: model").restore(info["model_config"])
    except TypeError as exc:
        raise CheckpointError(f"{model_dir / TASK_FILE}: model_config does not fit this tc ({exc})") from None
    if config.num_classes != len(label_map):
        raise CheckpointError(f"{labels_path}: {len(label_map)} labels but the model has {config.num_classes} "
                              "classes")
    path, state, note = read_weights(model_dir, None if checkpoint is None else Path(checkpoint), native, reader)
    trained = TrainedModel(
        model_dir=model_dir, weights_path=path, state=state["model"], config=config, label_map=label_map,
        vocab_file=vocab, do_lower_case=bool(info["do_lower_case"]),
        max_sequence_length=int(info["max_sequence_length"]), label_scheme=info.get("label_scheme", "typed"),
        note=note, model_name=model_name, context_tokens=int(info.get("context_tokens") or 0),
        document_rules=_document_rules(info, model_dir / TASK_FILE),
    )
    if note and not quiet:
        print(note, file=sys.stderr, flush=True)
    return trained
