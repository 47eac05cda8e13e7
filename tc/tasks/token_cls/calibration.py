"""Calibrated entity scores: temperature scaling fitted on the devel split, stored in the model dir.

An entity's score is the mean softmax probability of its predicted label over its words. Fine-tuned
BERTs are over-confident, so a 0.9 score is right less than 90% of the time. ``tc calibrate`` fits one
temperature ``T`` (logits / T before the softmax) that minimises the log loss of devel ENTITY scores
against entity correctness (what users threshold with ``--min-score``; word-level NLL of the gold
labels when nothing is predicted), words read on their first subword as predictions are, and reports the
expected calibration error (ECE, 10 equal-width bins) of ENTITY scores before and after, where an
entity counts as right when its words and type match a gold entity exactly. ``T`` goes to
``MODEL_DIR/calibration.json``; predict and serve then divide logits by it. Neither argmax nor constrained
decoding (``decoding.py``: zero transition scores) depends on a temperature, so labels, spans and F1 are
exactly those of the uncalibrated model: only scores move. Words are labelled as the model decodes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tc.core.errors import CheckpointError, DataError, first_line
from tc.core.fs import STAGING_STEM, atomic_write_text, not_regular, write_errors

if TYPE_CHECKING:
    import torch

    from tc.tasks.token_cls.decoding import ConstrainedDecoder
    from tc.tasks.token_cls.predict import Predictor
    from tc.tasks.token_cls.sentence import Sentence

CALIBRATION_FILE = "calibration.json"
BINS = 10


class TemperatureRunner:
    """A runner whose logits are divided by ``temperature`` (wraps tc's runner or an OnnxRunner)."""

    def __init__(self, inner: Any, temperature: float) -> None:
        self.inner = inner
        self.temperature = temperature

    def eval_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.eval_step(batch).float() / self.temperature

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def read_temperature(model_dir: Path) -> float | None:
    """The fitted temperature, or None when the model was never calibrated."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({first_line(exc)}); delete it or rerun tc calibrate") from None
    if not 0.0 < value < 1e3:
        raise CheckpointError(f"{path}: temperature {value} is out of range; rerun tc calibrate")
    return value


def apply_calibration(predictor: Predictor) -> float | None:
    """Wrap ``predictor``'s runner with the model dir's temperature, if there is one; returns it."""
    temperature = read_temperature(predictor.trained.model_dir)
    if temperature is not None:
        predictor.runner = TemperatureRunner(predictor.runner, temperature)  # type: ignore[assignment]
    return temperature


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


def word_logits(predictor: Predictor, sentences: Sequence[Sentence]) -> tuple[np.ndarray, list[int]]:
    """(W, C) logits of every word's first subword, and the word count of each sentence."""
    from tc.core.sampling import BatchPlan

    rows = [dataclasses.replace(s, labels=None) for s in sentences if s.words]  # document kept: context
    dataset = predictor._dataset(rows)
    plan = BatchPlan(dataset, predictor.batch_size, train=False, pad_to=predictor.pad_to)
    per_row: dict[int, np.ndarray] = {}
    for micro_batches in predictor.backend.batches(plan):
        for batch in micro_batches:
            logits = predictor.runner.eval_step(batch).float().numpy()
            for row, index in enumerate(batch["index"].tolist()):
                per_row[index] = logits[row, : int(dataset.lengths[index])]
    flat = np.concatenate([per_row[r] for r in range(len(dataset))])[dataset.word_position]
    return flat, [len(s.words) for s in rows]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def word_nll(logits: np.ndarray, gold: np.ndarray) -> Callable[[float], float]:
    """Mean NLL of the gold label of every word under softmax(logits / T), as a function of T."""
    return lambda t: float(-_log_softmax(logits / t)[np.arange(len(gold)), gold].mean())


def word_ids(logits: np.ndarray, counts: Sequence[int], decoder: ConstrainedDecoder | None = None) -> np.ndarray:
    """(W,) each word's class as the model decodes it: argmax, or through ``decoder`` (constrained decoding),
    which reads the sentences as rows of words. Neither depends on a temperature, so the labels are found once."""
    if decoder is None or not len(logits):
        return logits.argmax(-1)
    import torch

    from tc.tasks.token_cls.crf_head import WORD_MASK

    mask = np.arange(max(counts))[None, :] < np.asarray(counts)[:, None]  # (S, W)
    rows = np.zeros((*mask.shape, logits.shape[1]), dtype=np.float32)  # (S, W, C)
    rows[mask] = logits
    ids, _ = decoder.decode(torch.from_numpy(rows), {WORD_MASK: torch.from_numpy(mask)})  # (S, W)
    return ids.numpy()[mask]


def entity_log_loss(logits: np.ndarray, counts: Sequence[int], gold: Sequence[Sequence[str]],
                    labels: Sequence[str], ids: np.ndarray | None = None) -> Callable[[float], float]:
    """Binary log loss of entity scores against entity correctness, as a function of T. The predicted
    entities do not depend on T (``word_ids``), so they are found once."""
    ids = logits.argmax(-1) if ids is None else ids
    scores, correct = entity_confidences(logits, counts, gold, labels, 1.0, ids)
    if len(scores) == 0:
        return lambda t: 0.0
    spans = _entity_word_spans(ids, counts, labels)

    def loss(t: float) -> float:
        best = np.exp(_log_softmax(logits / t))[np.arange(len(ids)), ids]
        p = np.clip(np.asarray([best[a:b].mean() for a, b in spans]), 1e-6, 1 - 1e-6)
        return float(-(correct * np.log(p) + (~correct) * np.log1p(-p)).mean())

    return loss


def _entity_word_spans(ids: np.ndarray, counts: Sequence[int], labels: Sequence[str]) -> list[tuple[int, int]]:
    from tc.tasks.token_cls.spans import word_spans

    spans, start = [], 0
    for count in counts:
        spans.extend((start + a, start + b) for a, b, _ in word_spans([labels[i] for i in ids[start : start + count]]))
        start += count
    return spans


def fit_temperature(objective: Callable[[float], float]) -> float:
    """The T in [0.05, 20] minimising ``objective(T)`` (golden section on log T; both objectives here are
    smooth and, in practice, unimodal in T)."""
    def nll(log_t: float) -> float:
        return objective(float(np.exp(log_t)))

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def entity_confidences(logits: np.ndarray, counts: Sequence[int], gold: Sequence[Sequence[str]],
                       labels: Sequence[str], temperature: float,
                       ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(score, correct) per predicted entity, scored as ``predict.entities`` scores them (``ids``: the words'
    decoded classes, ``word_ids``; argmax when not given)."""
    from tc.tasks.token_cls.spans import word_spans

    probs = np.exp(_log_softmax(logits / temperature))
    ids = probs.argmax(-1) if ids is None else ids
    best = probs[np.arange(len(ids)), ids]
    scores, correct, start = [], [], 0
    for count, gold_labels in zip(counts, gold, strict=True):
        predicted = [labels[i] for i in ids[start : start + count]]
        truth = set(word_spans(list(gold_labels)))
        for first, stop, kind in word_spans(predicted):
            scores.append(float(best[start + first : start + stop].mean()))
            correct.append((first, stop, kind) in truth)
        start += count
    return np.asarray(scores), np.asarray(correct, dtype=bool)


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Σ_bins (n_bin / N) |accuracy_bin − mean score_bin| over equal-width score bins."""
    if len(scores) == 0:
        return 0.0
    which = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - scores[inside].mean())
    return float(total)


@dataclass
class Calibration:
    temperature: float
    ece_before: float
    ece_after: float
    entities: int
    words: int
    split: str
    held_out: dict[str, Any] | None = None
    """ECE before/after on a split the temperature was NOT fitted on (``measure``), when one was given."""

    def as_dict(self) -> dict[str, Any]:
        out = {"temperature": round(self.temperature, 6), "entity_ece_before": round(self.ece_before, 6),
               "entity_ece_after": round(self.ece_after, 6), "predicted_entities": self.entities,
               "words": self.words, "split": self.split, "bins": BINS}
        if self.held_out is not None:
            out["held_out"] = self.held_out
        return out


def calibrate(predictor: Predictor, sentences: Sequence[Sentence], split: str = "devel") -> Calibration:
    """Fit the temperature on ``sentences`` (labelled) and measure entity ECE before and after. A CRF head is
    refused: its labels are a Viterbi path, which a temperature on the emissions would change."""
    if getattr(predictor.trained.config, "head", "softmax") != "softmax":
        raise CheckpointError(f"{predictor.trained.model_dir}: tc calibrate scales softmax scores; this model has "
                              "model.head crf, whose Viterbi labels a temperature would change")
    labelled = _labelled(sentences, split, "calibrate on")
    logits, counts = word_logits(predictor, labelled)
    table = predictor.trained.label_map.label2id
    gold_ids = np.asarray([table.get(label, table.get("O", 0)) for s in labelled for label in s.labels or ()])
    gold = [s.labels or () for s in labelled]
    ids = word_ids(logits, counts, _decoder(predictor))
    objective = entity_log_loss(logits, counts, gold, predictor.labels, ids)  # calibrate what is reported
    temperature = fit_temperature(objective if objective(1.0) > 0 else word_nll(logits, gold_ids))
    before, after, entities = _ece_pair(logits, counts, gold, predictor.labels, temperature, ids)
    return Calibration(temperature, before, after, entities, len(gold_ids), split)


def _labelled(sentences: Sequence[Sentence], split: str, purpose: str) -> list[Sentence]:
    """The sentences of ``split`` with words and gold labels; none is a one-line error."""
    labelled = [s for s in sentences if s.words and s.labels is not None]
    if not labelled:
        raise CheckpointError(f"split {split!r}: no labelled sentences to {purpose}")
    return labelled


def _decoder(predictor: Predictor) -> ConstrainedDecoder | None:
    """The constrained decoding the model reads words with (``decoding.word_decoder``); None: argmax."""
    from tc.tasks.token_cls.decoding import word_decoder

    trained = predictor.trained
    return word_decoder(trained.config, trained.label_map.labels, trained.label_scheme)


def _ece_pair(logits: np.ndarray, counts: Sequence[int], gold: Sequence[Sequence[str]], labels: Sequence[str],
              temperature: float, ids: np.ndarray) -> tuple[float, float, int]:
    """Entity ECE at temperature 1 and at ``temperature``, and how many entities were predicted (the same
    either way: the decoded labels do not depend on the temperature)."""
    before = entity_confidences(logits, counts, gold, labels, 1.0, ids)
    after = entity_confidences(logits, counts, gold, labels, temperature, ids)
    return expected_calibration_error(*before), expected_calibration_error(*after), len(before[0])


def measure(predictor: Predictor, sentences: Sequence[Sentence], temperature: float, split: str) -> dict[str, Any]:
    """Entity ECE before and after ``temperature`` on labelled ``sentences`` of a held-out ``split``: the
    honest figure, since the fitted split's own ECE after fitting is optimistic."""
    labelled = _labelled(sentences, split, "measure calibration on")
    logits, counts = word_logits(predictor, labelled)
    before, after, entities = _ece_pair(logits, counts, [s.labels or () for s in labelled], predictor.labels,
                                        temperature, word_ids(logits, counts, _decoder(predictor)))
    return {"split": split, "entity_ece_before": round(before, 6), "entity_ece_after": round(after, 6),
            "predicted_entities": entities}


def check_writable(model_dir: Path) -> None:
    """Refuse, before any fitting (minutes on a large split, all lost if ``save`` then fails), a model
    directory ``save`` cannot write ``calibration.json`` into: the same one line ``atomic_writer`` would
    give afterwards, now first. A ``calibration.json`` that is not a regular file is refused as every
    writer refuses it; a read-only or forbidden folder shows by making and removing a staging file there
    as ``atomic_writer`` does (``write_errors``: ``<path>: cannot write (<reason>)``). A disk that fills
    during the write still fails there, atomically."""
    path = Path(model_dir) / CALIBRATION_FILE
    kind = not_regular(path)
    if kind is not None:
        raise DataError(f"{path}: is {kind}, not a regular file; tc writes only regular files")
    with write_errors(path):
        fd, staging = tempfile.mkstemp(prefix=f".{path.name[:STAGING_STEM]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(staging)


def save(model_dir: Path, result: Calibration) -> None:
    """``calibration.json``, and the ECE figures under ``entity_calibration`` in ``eval_results.json``."""
    atomic_write_text(model_dir / CALIBRATION_FILE, json.dumps(result.as_dict(), indent=2) + "\n")
    results = model_dir / "eval_results.json"
    if results.is_file():
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # an unreadable results file is not ours to repair
        if isinstance(data, dict):
            data["entity_calibration"] = result.as_dict()
            atomic_write_text(results, json.dumps(data, indent=2) + "\n")
