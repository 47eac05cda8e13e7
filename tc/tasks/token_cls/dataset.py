"""The token_cls Dataset: sentences -> WordPiece rows in flat numpy arrays, and predictions back to words.

``TokenClsDataset`` tokenizes all words at once with a ``WordPieceEncoder``, cuts sentences that do not
fit ``max_len`` into windows of whole words (``windows``), optionally surrounds each row with context
from its document, and stores every row in flat numpy arrays, so ``collate`` is a handful of vectorised
gathers and ``word_predictions`` maps model outputs back to exactly one label per input word.

Two label schemes:

* ``typed`` (default): labels are the IOB2 labels seen in train (``B-Chemical``...). Only the first
  subword of each word carries a label; continuations and [CLS]/[SEP] get -100 (ignored).
* ``seed``: the Cerebras seed's fixed vocabulary ``[PAD] B I O X [CLS] [SEP]``: types stripped,
  continuations labelled ``X``, [CLS]/[SEP] labelled as themselves, padding ``[PAD]``; every real
  position carries loss (the model masks padding by ``attention_mask``).

``label_all_subwords`` (typed only, training): every piece of a word carries the word's label, a ``B-X``
word's later pieces ``I-X`` (``B-X`` itself when the label map has no ``I-X``), as Hugging Face's
``label_all_tokens`` does; predictions are still read on first pieces. ``word_ids=True`` adds the batch
key ``word_ids`` (B, T) int32, each piece's word index within its row, -1 elsewhere (``pooling.py``).

Context tokens (``context_tokens``) are labelled -100 in both schemes. Several corpora: a
``class_mask`` (sentences, classes) bool gives each row the classes its corpus annotates, collated as
the batch key ``class_mask`` (B, C) that the model's loss reads. ``word_mask=True`` adds the batch key
``word_mask`` (B, T) bool, True on the first piece of each of the row's own words (not context): where a
CRF head chains and decodes words, with or without gold labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tc.core.errors import DataError
from tc.core.interfaces import Dataset
from tc.tasks.token_cls.labels import IGNORE_INDEX, LabelMap, check_label_map, check_scheme, strip_type
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.windows import context_sizes, document_groups, plan_windows, ranges
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

if TYPE_CHECKING:
    import torch

__all__ = ["TokenClsDataset", "model_inputs"]


def model_inputs(model_config: object) -> dict[str, bool]:
    """The optional batch keys a model config reads (``uses_word_mask``: CRF; ``uses_word_ids``: pooling),
    as ``TokenClsDataset`` keyword arguments: training, evaluation and prediction build rows alike."""
    return {"word_mask": bool(getattr(model_config, "uses_word_mask", False)),
            "word_ids": bool(getattr(model_config, "uses_word_ids", False))}


class TokenClsDataset(Dataset):
    """Rows (windows) of WordPiece features, stored flat; one prediction per word on its first piece.

    Per row ``r``: ``lengths[r]`` positions starting at ``row_offsets[r]`` in ``flat_ids`` /
    ``flat_labels``; it covers words ``row_first_word[r] .. + row_num_words[r]`` of sentence
    ``row_sentence[r]``, after ``row_left[r]`` context pieces (and before ``row_right[r]``). Per word
    (all sentences back to back): ``word_position`` is the flat position of its first piece.
    """

    def __init__(self, sentences: Sequence[Sentence], encoder: WordPieceEncoder, label_map: LabelMap,
                 max_len: int, scheme: str = "typed", context_tokens: int = 0,
                 class_mask: np.ndarray | None = None, word_mask: bool = False,
                 label_all_subwords: bool = False, word_ids: bool = False) -> None:
        check_scheme(scheme)
        if label_all_subwords and scheme != "typed":
            raise ValueError("label_all_subwords needs the typed scheme (the seed's continuations are X)")
        if context_tokens < 0:
            raise ValueError(f"context_tokens={context_tokens} must be >= 0")
        if max_len < 3:
            raise ValueError(f"max_len={max_len}: need room for [CLS], one piece and [SEP]")
        if not sentences:
            raise ValueError("no sentences")
        self.sentences = list(sentences)
        self.label_map = label_map
        self.max_len = max_len
        self.scheme = scheme
        self.labeled = all(s.labels is not None for s in self.sentences)
        self.pad_id = encoder.pad_id
        self.pad_label = 0 if scheme == "seed" else IGNORE_INDEX
        self.context_tokens = context_tokens
        self.label_all_subwords = label_all_subwords
        self.with_word_ids = word_ids
        self.word_mask = word_mask
        self.class_mask = None if class_mask is None else np.asarray(class_mask, dtype=bool)
        if self.class_mask is not None and self.class_mask.shape != (len(self.sentences), len(label_map)):
            raise ValueError(f"class_mask is {self.class_mask.shape}, expected {(len(self.sentences), len(label_map))}")
        check_label_map(label_map, scheme)
        word_label_ids = self._word_label_ids() if self.labeled else None
        if word_label_ids is not None and self.class_mask is not None:
            self._check_mask(word_label_ids)
        self._build(encoder, word_label_ids)

    # -- construction ------------------------------------------------------------------------
    def _word_label_ids(self) -> np.ndarray:
        """Class id of every word; a gold label unknown to the label map names its file:line."""
        table = self.label_map.label2id
        convert = strip_type if self.scheme == "seed" else (lambda label: label)
        flat = [convert(label) for s in self.sentences for label in s.labels or ()]
        unknown = set(flat) - table.keys()
        if unknown:
            s, i, label = next((s, i, x) for s in self.sentences for i, x in enumerate(s.labels or ())
                               if convert(x) in unknown)
            known = ", ".join(self.label_map.labels)
            where = f" ({self.label_map.source})" if self.label_map.source else ""
            raise DataError(f"{s.where(i)}: label {label!r} is not in the label map{where}; "
                            f"known labels: {known}")
        return np.fromiter((table[x] for x in flat), dtype=np.int32, count=len(flat))

    def _check_mask(self, word_label_ids: np.ndarray) -> None:
        """Every gold label must be a class its sentence's corpus annotates (else it would be masked out)."""
        sizes = [len(s.words) for s in self.sentences]
        sentence_of = np.repeat(np.arange(len(self.sentences)), sizes)
        bad = np.flatnonzero(~self.class_mask[sentence_of, word_label_ids])  # type: ignore[index]
        if len(bad):
            raise ValueError(f"label {self.label_map.labels[word_label_ids[bad[0]]]!r} of sentence "
                             f"{sentence_of[bad[0]]} is masked out by its class_mask")

    def _build(self, encoder: WordPieceEncoder, word_label_ids: np.ndarray | None) -> None:
        sizes = np.fromiter((len(s.words) for s in self.sentences), dtype=np.int64, count=len(self.sentences))
        if (sizes == 0).any():
            raise ValueError(f"sentence {int(np.argmax(sizes == 0))} has no words")
        self.word_offsets = np.concatenate([[0], np.cumsum(sizes)])
        pieces, counts = encoder.encode_words([w for s in self.sentences for w in s.words])
        budget = self.max_len - 2
        self._plan_rows(counts, budget)
        kept = np.minimum(counts, budget)
        self.word_pieces = kept  # pieces of each word in its row (a word longer than a row is cut to fit)
        self.num_truncated_words = int((counts > budget).sum())
        self.num_words = int(sizes.sum())
        self.num_subwords = int(counts.sum())

        word_row = np.repeat(np.arange(len(self.row_sentence), dtype=np.int64), self.row_num_words)
        before = np.cumsum(kept) - kept  # kept pieces of all earlier words
        piece_row = np.repeat(word_row, kept)
        own = np.bincount(word_row, weights=kept, minlength=len(self.row_num_words)).astype(np.int64)
        piece_starts = np.cumsum(counts) - counts
        self.row_left, self.row_right = self._context(counts, piece_starts, own, budget)
        self.lengths = own + 2 + self.row_left + self.row_right
        self.row_offsets = np.cumsum(self.lengths) - self.lengths
        row_first = self.word_offsets[self.row_sentence] + self.row_first_word  # global index of each row's first word
        shift = self.row_offsets + 1 + self.row_left - before[row_first]  # own piece k of row r sits at k + shift[r]
        self.word_position = before + shift[word_row]
        total = int(self.lengths.sum())

        ids = np.empty(total, dtype=np.int32)
        ids[self.row_offsets] = encoder.cls_id
        ids[self.row_offsets + self.lengths - 1] = encoder.sep_id
        ids[np.arange(len(piece_row)) + shift[piece_row]] = pieces[ranges(piece_starts, kept)]
        context = np.zeros(0, dtype=np.int64)
        if self.context_tokens:
            own_start = piece_starts[row_first]
            left_at = ranges(self.row_offsets + 1, self.row_left)
            right_at = ranges(self.row_offsets + 1 + self.row_left + own, self.row_right)
            ids[left_at] = pieces[ranges(own_start - self.row_left, self.row_left)]
            own_stop = (piece_starts + counts)[row_first + self.row_num_words - 1]
            ids[right_at] = pieces[ranges(own_stop, self.row_right)]
            context = np.concatenate([left_at, right_at])
        self.flat_ids = ids
        self.flat_labels = self._labels(total, word_label_ids)
        self.flat_labels[context] = IGNORE_INDEX  # context is fed, never scored
        self.row_first_positions = self.word_position - self.row_offsets[word_row]
        self.flat_word_ids = self._word_ids(total, word_row, row_first) if self.with_word_ids else None
        self.flat_words: np.ndarray | None = None
        if self.word_mask:
            self.flat_words = np.zeros(total, dtype=bool)
            self.flat_words[self.word_position] = True
        if not self.labeled:
            self.loss_tokens = np.zeros(len(self.lengths), dtype=np.int64)
        elif self.scheme == "seed":
            self.loss_tokens = own + 2
        elif self.label_all_subwords:
            self.loss_tokens = own
        else:
            self.loss_tokens = self.row_num_words.astype(np.int64)

    def _context(self, counts: np.ndarray, piece_starts: np.ndarray, own: np.ndarray,
                 budget: int) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) context pieces of every row (zeros without ``context_tokens``); see ``windows``."""
        rows = len(self.row_sentence)
        if not self.context_tokens:
            return np.zeros(rows, dtype=np.int64), np.zeros(rows, dtype=np.int64)
        ends = piece_starts + counts  # full (untruncated) piece stream of all words
        first = self.word_offsets[self.row_sentence] + self.row_first_word
        last = first + self.row_num_words - 1
        group = document_groups([(s.source, getattr(s, "doc_index", None)) for s in self.sentences])
        first_sentence = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])  # of each document
        stop_sentence = np.r_[first_sentence[1:], len(group)]
        doc = group[self.row_sentence]
        doc_start = piece_starts[self.word_offsets[first_sentence[doc]]]
        doc_stop = ends[self.word_offsets[stop_sentence[doc]] - 1]
        return context_sizes(piece_starts[first], ends[last], doc_start, doc_stop, budget - own, self.context_tokens)

    def _plan_rows(self, counts: np.ndarray, budget: int) -> None:
        """Windows of every sentence: one per sentence that fits, greedy cuts for the others."""
        starts = self.word_offsets[:-1]
        totals = np.add.reduceat(counts, starts)
        rows_sentence: list[int] = []
        rows_first: list[int] = []
        rows_count: list[int] = []
        split = 0
        fits = (totals <= budget).tolist()
        for index, (ok, start, stop) in enumerate(zip(fits, starts.tolist(), self.word_offsets[1:].tolist(),
                                                      strict=True)):
            windows = [(0, stop - start)] if ok else plan_windows(counts[start:stop].tolist(), budget)
            split += len(windows) > 1
            for first, count in windows:
                rows_sentence.append(index)
                rows_first.append(first)
                rows_count.append(count)
        self.num_split_sentences = split
        self.row_sentence = np.asarray(rows_sentence, dtype=np.int64)
        self.row_first_word = np.asarray(rows_first, dtype=np.int64)
        self.row_num_words = np.asarray(rows_count, dtype=np.int64)

    def _word_ids(self, total: int, word_row: np.ndarray, row_first: np.ndarray) -> np.ndarray:
        """Per flat position: the index within its row of the word it is a piece of, -1 for [CLS], [SEP], context."""
        local = np.arange(len(self.word_position)) - row_first[word_row]
        out = np.full(total, -1, dtype=np.int32)
        out[ranges(self.word_position, self.word_pieces)] = np.repeat(local, self.word_pieces)
        return out

    def _continuation_ids(self) -> np.ndarray:
        """Per class id, the label of a word's later pieces under ``label_all_subwords``: I-X for B-X (B-X
        when the label map has no I-X), the class itself otherwise."""
        table = self.label_map.label2id
        return np.asarray([table.get(f"I-{x[2:]}", i) if x.startswith("B-") else i
                           for i, x in enumerate(self.label_map.labels)], dtype=np.int32)

    def _labels(self, total: int, word_label_ids: np.ndarray | None) -> np.ndarray:
        if self.scheme == "typed":
            labels = np.full(total, IGNORE_INDEX, dtype=np.int32)
            if word_label_ids is not None and self.label_all_subwords:
                pieces = ranges(self.word_position, self.word_pieces)
                labels[pieces] = np.repeat(self._continuation_ids()[word_label_ids], self.word_pieces)
            if word_label_ids is not None:
                labels[self.word_position] = word_label_ids
            return labels
        ids = self.label_map.label2id
        labels = np.full(total, ids["X"], dtype=np.int32)
        labels[self.row_offsets] = ids["[CLS]"]
        labels[self.row_offsets + self.lengths - 1] = ids["[SEP]"]
        labels[self.word_position] = ids["O"] if word_label_ids is None else word_label_ids
        return labels

    # -- Dataset -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, row: int) -> dict[str, np.ndarray]:
        """One row's features (views into the flat arrays) and its place in its sentence."""
        lo, hi = int(self.row_offsets[row]), int(self.row_offsets[row] + self.lengths[row])
        first = int(self.word_offsets[self.row_sentence[row]] + self.row_first_word[row])
        return {
            "input_ids": self.flat_ids[lo:hi],
            "labels": self.flat_labels[lo:hi],
            "first_positions": self.row_first_positions[first : first + int(self.row_num_words[row])],
            "sentence": np.int64(self.row_sentence[row]),
            "first_word": np.int64(self.row_first_word[row]),
        }

    def describe(self) -> str:
        context = f", up to {self.context_tokens} context tokens a side" if self.context_tokens else ""
        every = ", every piece of a word labeled" if self.label_all_subwords else ""
        return (f"{len(self.sentences)} sentences, {self.num_words} words -> {len(self)} windows of <= "
                f"{self.max_len} subwords ({self.num_split_sentences} sentences split, "
                f"{self.num_truncated_words} words truncated{context}{every})")

    def collate(self, indices: Sequence[int], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        import torch

        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths[rows]
        longest = int(lengths.max()) if len(rows) else 0
        width = longest if pad_to is None else pad_to
        if longest > width:
            raise ValueError(f"pad_to={pad_to} is shorter than row length {longest}")
        mask = np.arange(width) < lengths[:, None]
        source = np.where(mask, self.row_offsets[rows][:, None] + np.arange(width), 0)
        input_ids = np.where(mask, self.flat_ids[source], self.pad_id).astype(np.int32)
        labels = np.where(mask, self.flat_labels[source], self.pad_label).astype(np.int32)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int32)),
            "token_type_ids": torch.zeros((len(rows), width), dtype=torch.int32),
            "labels": torch.from_numpy(labels),
            "index": torch.from_numpy(rows.copy()),
        }
        if self.class_mask is not None:  # several corpora: (B, C) classes each row's corpus annotates
            batch["class_mask"] = torch.from_numpy(self.class_mask[self.row_sentence[rows]])
        if self.flat_words is not None:  # (B, T) first pieces of the row's own words
            batch["word_mask"] = torch.from_numpy(mask & self.flat_words[source])
        if self.flat_word_ids is not None:  # subword pooling: each piece's word within its row, -1 elsewhere
            batch["word_ids"] = torch.from_numpy(np.where(mask, self.flat_word_ids[source], -1).astype(np.int32))
        return batch

    # -- predictions -------------------------------------------------------------------------
    def _flat_predictions(self, predictions: dict[int, np.ndarray]) -> np.ndarray:
        """Per-row predicted ids laid out like ``flat_ids`` (every row must be present)."""
        missing = len(self) - sum(1 for r in range(len(self)) if r in predictions)
        if missing:
            raise ValueError(f"predictions for {missing} of {len(self)} rows are missing")
        parts = []
        for row, length in enumerate(self.lengths.tolist()):
            values = np.asarray(predictions[row]).reshape(-1)
            if len(values) < length:
                raise ValueError(f"row {row}: {len(values)} predictions for {length} positions")
            parts.append(values[:length])
        flat = np.concatenate(parts).astype(np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self.label_map)):
            raise ValueError(f"predicted class ids outside 0..{len(self.label_map) - 1}")
        return flat

    def _split_words(self, flat: list[str]) -> list[list[str]]:
        bounds = self.word_offsets.tolist()
        return [flat[a:b] for a, b in itertools.pairwise(bounds)]

    def word_predictions(self, predictions: dict[int, np.ndarray]) -> list[list[str]]:
        """One IOB2 label per word of every sentence, read on each word's first piece.

        Seed scheme: B/I/O as predicted (untyped); X, [CLS], [SEP] or [PAD] on a first piece -> O.
        """
        names = np.asarray(self.label_map.labels, dtype=object)
        if self.scheme == "seed":
            names = np.asarray([x if x in ("B", "I", "O") else "O" for x in self.label_map.labels],
                               dtype=object)
        flat = self._flat_predictions(predictions)
        return self._split_words(names[flat[self.word_position]].tolist())

    def word_labels(self) -> list[list[str]]:
        """Gold word labels: typed IOB2, or untyped B/I/O for the seed scheme."""
        self._require_labels()
        if self.scheme == "seed":
            return [[strip_type(x) for x in s.labels or ()] for s in self.sentences]
        return [list(s.labels or ()) for s in self.sentences]

    def token_level_ids(self, predictions: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(gold, predicted) class ids at every position that carries loss, for token-level scores."""
        self._require_labels()
        flat = self._flat_predictions(predictions)
        keep = self.flat_labels != IGNORE_INDEX
        if self.label_all_subwords:  # scored on first pieces, as without it
            keep = np.zeros_like(keep)
            keep[self.word_position] = True
        return self.flat_labels[keep].astype(np.int64), flat[keep]

    def _require_labels(self) -> None:
        if not self.labeled:
            source = next(s.source for s in self.sentences if s.labels is None)
            raise DataError(f"{source}: has no labels to score against")

