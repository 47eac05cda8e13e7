"""Tag new text with a trained model directory: ``tc.load(model_dir).predict(["text", ...])``.

A model directory is self-describing (weights, ``label2id.json``, ``vocab.txt``, ``tc_task.json``), so
prediction needs neither the training config nor the data. Raw text is split into words the way BERT's
basic tokenizer splits it (whitespace and punctuation), keeping each word's character span, so every
predicted entity can be reported as an exact substring of the input. Words then go through the same
``TokenClsDataset`` as training data: long documents are cut into windows of whole words (nothing is
dropped) and the label of a word is read on its first subword, exactly as evaluation reads it. The model
runs through a backend's runner, so prediction works on whatever hardware training did.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tc.core.errors import CheckpointError, TcError
from tc.tasks.token_cls.model_dir import TrainedModel, load_trained_model
from tc.tasks.token_cls.spans import UNTYPED, split_words, word_spans  # re-exported (__all__): moved to spans

if TYPE_CHECKING:
    from tc.core.interfaces import Backend, Runner
    from tc.tasks.token_cls.dataset import TokenClsDataset
    from tc.tasks.token_cls.longdoc import Progress
    from tc.tasks.token_cls.sentence import Sentence
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

__all__ = ["CHUNK_DOCUMENTS", "DEFAULT_BATCH_SIZE", "UNTYPED", "Predictor", "Tagged", "Throughput", "entities",
           "iter_chunks", "open_backend", "split_words", "word_spans"]
"""``split_words``, ``word_spans`` and ``UNTYPED`` live in ``spans`` (reading documents must not import the
predictor); they are re-exported here for code that imports them from ``predict``."""

DEFAULT_BATCH_SIZE = 32
CHUNK_DOCUMENTS = 1024
"""Documents featurised at once: bounds memory on huge inputs, yet gives length bucketing enough to sort."""


# ---------------------------------------------------------------------------------------------
# Entities from word labels (the words and spans themselves: ``spans``)
# ---------------------------------------------------------------------------------------------


def entities(text: str, words: Sequence[tuple[str, int, int]], labels: Sequence[str],
             scores: np.ndarray) -> list[dict[str, Any]]:
    """Entity dicts with character offsets into ``text``; ``score`` is the mean probability of the
    predicted label over the entity's words (each read on the word's first subword)."""
    found = []
    for first, stop, kind in word_spans(labels):
        start, end = words[first][1], words[stop - 1][2]
        found.append({"start": start, "end": end, "type": kind, "text": text[start:end],
                      "score": round(float(np.mean(scores[first:stop])), 4)})
    return found


# ---------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------


@dataclass
class Tagged:
    """Predicted IOB2 label and its probability for every word of one sentence or document."""

    labels: list[str]
    scores: np.ndarray


@dataclass
class Throughput:
    """Work done so far, for the docs/s and words/s report."""

    documents: int = 0
    words: int = 0
    windows: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        secs = max(self.seconds, 1e-9)
        return (f"{self.documents} documents, {self.words} words ({self.windows} windows) in {self.seconds:.2f} s: "
                f"{self.documents / secs:.1f} docs/s, {self.words / secs:.0f} words/s")


@dataclass
class Predictor:
    """A trained token_cls model ready to tag text, on any registered backend.

    ``predict(texts)`` -> entity spans per text; ``predict_tokens(word_lists)`` -> one IOB2 label per
    word. Build one with ``Predictor.from_model_dir`` (or ``tc.load``); ``close()`` releases the backend.
    """

    trained: TrainedModel
    backend: Backend
    runner: Runner
    encoder: WordPieceEncoder
    batch_size: int = DEFAULT_BATCH_SIZE
    stats: Throughput = field(default_factory=Throughput)
    progress: Progress | None = None
    """Called as ``progress(chars_done, chars_total, words_done)`` while a very long document is tagged."""
    document_rules: tuple[str, ...] | None = None
    """The document rules tagging documents applies (``documents/rules.py``); None: the model dir's
    ``document_rules``, else tc's default. ``tc predict --document-rules`` sets it."""

    def __post_init__(self) -> None:
        if self.document_rules is None:
            from tc.tasks.token_cls.settings import DEFAULT_DOCUMENT_RULES

            own = self.trained.document_rules
            self.document_rules = DEFAULT_DOCUMENT_RULES if own is None else own

    def __repr__(self) -> str:
        """One line: the model directory, the weights used, the labels and the backend."""
        backend = getattr(self.backend, "name", type(self.backend).__name__)
        return (f"Predictor(model_dir={str(self.trained.model_dir)!r}, weights={self.trained.weights_path.name!r}, "
                f"labels={list(self.labels)!r}, backend={backend!r})")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_model_dir(cls, model_dir: str | Path, backend: str = "cpu", checkpoint: str | Path | None = None,
                       batch_size: int = DEFAULT_BATCH_SIZE, overrides: Sequence[str] = ()) -> Predictor:
        """Load ``model_dir`` (best weights, else the newest checkpoint) onto ``backend``.

        ``overrides`` are ``--set``-style ``section.key=value`` settings for the backend, e.g.
        ``runconfig.num_threads=2`` or ``runconfig.precision=bf16``.
        """
        from tc.tasks.token_cls.wordpiece import WordPieceEncoder

        if batch_size < 1:
            raise TcError(f"--batch-size {batch_size}: must be at least 1")
        hardware = open_backend(backend, Path(model_dir), overrides)
        try:
            trained = load_trained_model(model_dir, checkpoint, hardware.checkpoint_suffix, hardware.load_checkpoint)
            encoder = WordPieceEncoder(trained.vocab_file, do_lower_case=trained.do_lower_case)
            if encoder.vocab_size != trained.config.vocab_size:
                raise CheckpointError(f"{trained.vocab_file}: {encoder.vocab_size} entries but the model has "
                                      f"{trained.config.vocab_size}")
            runner = hardware.prepare(trained.build_model(), None)
        except BaseException:
            hardware.teardown()
            raise
        return cls(trained, hardware, runner, encoder, batch_size)

    def close(self) -> None:
        self.backend.teardown()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.trained.label_map.labels

    @property
    def pad_to(self) -> int | None:
        return self.trained.max_sequence_length if self.backend.static_shapes else None

    # -- public API --------------------------------------------------------------------------
    def predict(self, texts: Sequence[str], documents: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
        """Entities of each text: ``{"start", "end", "type", "text", "score"}`` with ``text ==
        texts[i][start:end]``; documents of any length (long ones are windowed). ``documents``: see
        ``tag`` (texts that are sentences of one document share context, as in training)."""
        from tc.tasks.token_cls.longdoc import LONG_DOCUMENT_CHARS, tag_long_document

        _require_sequence(texts, "predict", "texts")
        long = {i for i, text in enumerate(texts) if isinstance(text, str) and len(text) > LONG_DOCUMENT_CHARS}
        short = [text for i, text in enumerate(texts) if i not in long]
        words = [split_words(text) for text in short]
        docs = None if documents is None else [d for i, d in enumerate(_checked_documents(documents, len(texts)))
                                               if i not in long]
        tagged = self.tag([[w for w, _, _ in doc] for doc in words], docs)
        found = iter([entities(text, doc, t.labels, t.scores) for text, doc, t in zip(short, words, tagged,
                                                                                        strict=True)])
        return [tag_long_document(self, text, self.progress) if i in long else next(found)
                for i, text in enumerate(texts)]

    def predict_records(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The predictor protocol (``tc.core.predicting``): ``{"text": ...}`` records, each text one document
        (its document rules applied, as ``tc predict`` does for JSONL), to ``{"entities": [...]}``."""
        from tc.core.errors import DataError
        from tc.tasks.token_cls.documents.tagging import revise_entities

        texts = [r.get("text") if isinstance(r, dict) else None for r in records]
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f'records[{bad}]: expected an object with a string "text" field')
        found = self.predict(texts)  # type: ignore[arg-type]
        return [{"entities": revise_entities(text, entities, self.document_rules or ())}
                for text, entities in zip(texts, found, strict=True)]

    def describe(self) -> dict[str, Any]:
        """The model dir, its weights, labels and backend (the protocol's ``/info``)."""
        return {"task": "token_cls", "model_dir": str(self.trained.model_dir),
                "weights": self.trained.weights_path.name, "labels": list(self.labels),
                "backend": getattr(self.backend, "name", type(self.backend).__name__)}

    def predict_tokens(self, sentences: Sequence[Sequence[str]],
                       documents: Sequence[int] | None = None) -> list[list[str]]:
        """One IOB2 label per word of each pre-tokenized sentence (``documents``: see ``tag``)."""
        _require_sequence(sentences, "predict_tokens", "sentences")
        for i, sentence in enumerate(sentences):
            _require_sequence(sentence, "predict_tokens", f"sentences[{i}]")
            bad = next((w for w in sentence if not isinstance(w, str)), None)
            if bad is not None:
                raise TypeError(f"predict_tokens(): sentences[{i}] holds {type(bad).__name__} {bad!r}, not a str")
        return [t.labels for t in self.tag(sentences, documents)]

    def tag(self, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None = None) -> list[Tagged]:
        """Labels and probabilities per word, in chunks so that memory stays flat on huge inputs.

        ``documents`` (one key per sentence; neighbours with the same key form one document) matters to a
        model trained with ``context_tokens``: its rows are fed the neighbouring sentences of their own
        document, as ``tc run`` fed them. Without it every sentence is a document of its own. Chunks are
        cut between documents (only a document of over four chunks' sentences is cut inside).
        """
        keys = list(range(len(sentences))) if documents is None else _checked_documents(documents, len(sentences))
        out: list[Tagged] = []
        start = 0
        while start < len(sentences):
            stop = min(start + CHUNK_DOCUMENTS, len(sentences))
            while stop < len(sentences) and keys[stop] == keys[stop - 1] and stop - start < 4 * CHUNK_DOCUMENTS:
                stop += 1
            out.extend(self._tag_chunk(sentences[start:stop], keys[start:stop]))
            start = stop
        return out

    # -- internals ---------------------------------------------------------------------------
    def _tag_chunk(self, sentences: Sequence[Sequence[str]], documents: Sequence[int]) -> list[Tagged]:
        from tc.tasks.token_cls.sentence import Sentence

        keep = [i for i, words in enumerate(sentences) if len(words)]
        out = [Tagged([], np.zeros(0, dtype=np.float32)) for _ in sentences]
        self.stats.documents += len(sentences)
        if not keep:
            return out
        start = time.perf_counter()
        rows = [Sentence(tuple(sentences[i]), None, "<input>", doc_index=documents[i]) for i in keep]
        dataset = self._dataset(rows)
        labels, scores = self._run(dataset)
        for slot, (lab, sc) in zip(keep, zip(labels, scores, strict=True), strict=True):
            out[slot] = Tagged(lab, sc)
        self.stats.words += dataset.num_words
        self.stats.windows += len(dataset)
        self.stats.seconds += time.perf_counter() - start
        return out

    def _dataset(self, sentences: list[Sentence]) -> TokenClsDataset:
        from tc.tasks.token_cls.dataset import TokenClsDataset, model_inputs

        return TokenClsDataset(sentences, self.encoder, self.trained.label_map, self.trained.max_sequence_length,
                               scheme=self.trained.label_scheme, context_tokens=self.trained.context_tokens,
                               **model_inputs(self.trained.config))

    def _run(self, dataset: TokenClsDataset) -> tuple[list[list[str]], list[np.ndarray]]:
        """Run every window through the runner; per word: label name and its softmax probability (with a
        CRF head: the Viterbi label, and the softmax probability of its emission; ``crf_head``)."""
        from tc.core.evaluation import run_rows

        rows = run_rows(self.runner, self.backend, dataset, self.batch_size, self.pad_to, scores=True)
        labels = dataset.word_predictions(rows.ids)
        flat = np.concatenate([rows.scores[row] for row in range(len(dataset))])[dataset.word_position]
        bounds = dataset.word_offsets
        return labels, [flat[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def _checked_documents(documents: Sequence[int], count: int) -> list[int]:
    """``documents`` as a list, one key per input (a wrong length is the caller's bug, said plainly)."""
    _require_sequence(documents, "tag", "documents")
    keys = list(documents)
    if len(keys) != count:
        raise ValueError(f"documents has {len(keys)} keys for {count} inputs")
    return keys


def _require_sequence(value: Any, method: str, name: str) -> None:
    """A bare string is a sequence of characters: refuse it rather than tag every letter."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{method}(): {name} must be a list, got {type(value).__name__} (wrap one item as [item])")


def open_backend(name: str, model_dir: Path, overrides: Sequence[str] = (), precision: str = "fp32") -> Backend:
    """A set-up backend for inference, configured from defaults plus ``overrides`` (only keys inference
    honours: ``inference_sets``; the model's own settings come from ``model_dir``)."""
    from tc.core.jobs import open_job
    from tc.tasks.token_cls.inference_sets import check_inference_sets

    check_inference_sets(overrides, model_dir, name, precision)
    sets = [*overrides, f"runconfig.model_dir={Path(model_dir).expanduser().resolve()}"]
    backend = open_job("token_cls", name, None, sets, require_available=True).backend
    backend.setup()
    return backend


def iter_chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to ``size`` items (streaming: the input is never held whole)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
