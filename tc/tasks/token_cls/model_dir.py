"""A trained token_cls model directory, read and checked once: weights, labels, vocabulary, settings.

A model directory is self-describing (weights, ``label2id.json``, ``vocab.txt``, ``tc_task.json``), so
inference (``tc predict``, ``tc export``, ``tc.load``) needs neither the training config nor the data.
The weights are ``best_model.pt`` (best devel F1) or else the newest checkpoint; a file that cannot be
read is passed over for the next one, and that is said on stderr, never done silently.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.core.errors import CheckpointError, first_line

if TYPE_CHECKING:
    import torch

    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.model import BertConfig

BEST = "best_model.pt"
LABELS_FILE = "label2id.json"
VOCAB_FILE = "vocab.txt"
TASK_FILE = "tc_task.json"


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
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Weight files passed over because they could not be read (path, reason), best first."""

    def __repr__(self) -> str:
        return (f"TrainedModel({str(self.model_dir)!r}, weights={self.weights_path.name!r}, "
                f"labels={len(self.label_map)}, max_sequence_length={self.max_sequence_length})")

    def fallback_note(self) -> str | None:
        """One line saying which weight file is used instead of an unreadable preferred one, else None."""
        if not self.skipped:
            return None
        path, reason = self.skipped[0]
        more = f" (and {len(self.skipped) - 1} more unreadable)" if len(self.skipped) > 1 else ""
        return f"note: {path} is unusable ({reason}){more}; using {self.weights_path} instead"

    def build_model(self) -> torch.nn.Module:
        """The network with these weights; a checkpoint that does not fit the config is refused."""
        from tc.core.checkpoint import apply_model_state
        from tc.tasks.token_cls.model import BertForTokenClassification

        model = BertForTokenClassification(self.config)
        apply_model_state(model, self.state, strict=True, source=self.weights_path,
                          labels=(None, list(self.label_map.labels)))
        return model.eval()


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


def weight_candidates(model_dir: Path, suffixes: Sequence[str] = (".pt",)) -> list[Path]:
    """Where weights may be read from, best first: the devel-best model, then checkpoints newest first."""
    from tc.core.checkpoint import list_checkpoints

    found = [path for _, path in reversed(list_checkpoints(model_dir, set(suffixes)))]
    best = model_dir / BEST
    return [best, *found] if best.is_file() else found


def read_weights(model_dir: Path, checkpoint: Path | None = None, suffixes: Sequence[str] = (".pt",),
                 reader: Any = None, skipped: list[tuple[Path, str]] | None = None) -> tuple[Path, dict[str, Any]]:
    """(path, checkpoint dict) of an explicit checkpoint, else the first readable candidate.

    A corrupt newest checkpoint falls back to the previous one, as resuming does; ``reader`` is a
    backend's ``load_checkpoint`` (it also reads that backend's native checkpoint format). Files passed
    over are appended to ``skipped`` as (path, reason), so the caller can say which file is used and why.
    """
    from tc.core.checkpoint import load_file

    read = reader or load_file
    if checkpoint is not None:
        return Path(checkpoint), read(Path(checkpoint))
    candidates = weight_candidates(model_dir, suffixes)
    if not candidates:
        raise CheckpointError(f"{model_dir}: no {BEST} or checkpoint_<step>.pt to predict with (train first)")
    first_error: CheckpointError | None = None
    for path in candidates:
        try:
            return path, read(path)
        except CheckpointError as exc:
            first_error = first_error or exc
            if skipped is not None:
                skipped.append((path, str(exc).removeprefix(f"{path}: ")))
    assert first_error is not None
    raise first_error


def load_trained_model(model_dir: str | Path, checkpoint: str | Path | None = None,
                       suffixes: Sequence[str] = (".pt",), reader: Any = None, quiet: bool = False) -> TrainedModel:
    """Read weights, labels, vocabulary and task settings of a trained model directory.

    When the preferred weights (``best_model.pt``, else the newest checkpoint) cannot be read and an older
    file is used instead, one ``note:`` line on stderr says so (unless ``quiet``): predictions from other
    weights than the user expects must never be silent.
    """
    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.model import BertConfig

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
    try:
        config = BertConfig(**info["model_config"])
    except TypeError as exc:
        raise CheckpointError(f"{model_dir / TASK_FILE}: model_config does not fit this tc ({exc})") from None
    if config.num_classes != len(label_map):
        raise CheckpointError(f"{labels_path}: {len(label_map)} labels but the model has {config.num_classes} "
                              "classes")
    skipped: list[tuple[Path, str]] = []
    path, state = read_weights(model_dir, None if checkpoint is None else Path(checkpoint), suffixes, reader,
                               skipped)
    trained = TrainedModel(
        model_dir=model_dir, weights_path=path, state=state["model"], config=config, label_map=label_map,
        vocab_file=vocab, do_lower_case=bool(info["do_lower_case"]),
        max_sequence_length=int(info["max_sequence_length"]), label_scheme=info.get("label_scheme", "typed"),
        skipped=skipped,
    )
    message = trained.fallback_note()
    if message and not quiet:
        print(message, file=sys.stderr, flush=True)
    return trained
