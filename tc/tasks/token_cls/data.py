"""Token classification data: CoNLL/TSV reading, IOB2 normalisation, WordPiece alignment, windows.

Pipeline: ``load_split`` reads a file into ``Sentence`` objects (words plus IOB2 labels, each word
remembering its file and line so later errors can point at it); ``TokenClsDataset`` tokenizes all
words at once with a ``WordPieceEncoder``, cuts sentences that do not fit ``max_len`` into windows of
whole words and stores every row in flat numpy arrays, so ``collate`` is a handful of vectorised
gathers and ``word_predictions`` maps model outputs back to exactly one label per input word.

Two label schemes:

* ``typed`` (default): labels are the IOB2 labels seen in train (``B-Chemical``...). Only the first
  subword of each word carries a label; continuations and [CLS]/[SEP] get -100 (ignored).
* ``seed``: the Cerebras seed's fixed vocabulary ``[PAD] B I O X [CLS] [SEP]``: types stripped,
  continuations labelled ``X``, [CLS]/[SEP] labelled as themselves, padding ``[PAD]``; every real
  position carries loss (the model masks padding by ``attention_mask``).
"""

from __future__ import annotations

import csv
import errno
import functools
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tc.core.errors import DataError
from tc.core.interfaces import Dataset
from tc.core.readers import parse_json

if TYPE_CHECKING:
    import torch

__all__ = [
    "IGNORE_INDEX",
    "SCHEMES",
    "SEED_LABELS",
    "LabelMap",
    "Sentence",
    "TokenClsDataset",
    "WordPieceEncoder",
    "find_split_file",
    "load_split",
    "plan_windows",
    "read_conll",
    "read_file",
    "read_prepared_csv",
    "strip_type",
    "write_prepared_csv",
]

IGNORE_INDEX = -100
SCHEMES = ("typed", "seed")
SEED_LABELS: tuple[str, ...] = ("[PAD]", "B", "I", "O", "X", "[CLS]", "[SEP]")
"""The Cerebras seed's label vocabulary, ids 0..6 in this order."""
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

RAW_SUFFIXES = (".tsv", ".txt", ".conll")
PREPARED_SUFFIX = ".csv"
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "devel": ("devel", "dev"),
    "dev": ("dev", "devel"),
    "validation": ("devel", "dev", "validation"),
    "test": ("test",),
}
DOCSTART = "-DOCSTART-"
_LINE_SPACE = " \t\r\n"
"""Stripped from line ends. Only ASCII: a token may legitimately start with e.g. a no-break space."""
_ENCODE_CHUNK = 512
"""Unique words per pretokenized sequence handed to the tokenizer (fewer, larger Encoding objects)."""


# ---------------------------------------------------------------------------------------------
# Sentences and reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sentence:
    """Words of one sentence with IOB2 labels (``None`` for unlabeled input) and where they came from.

    ``line`` is the 1-based line of the first word; in CoNLL files word ``i`` sits on ``line + i``
    (``per_line``), in prepared CSVs the whole sentence is one row.
    """

    words: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    source: str = "<memory>"
    line: int = 0
    per_line: bool = True

    def where(self, i: int = 0) -> str:
        """``file:line`` of word ``i``, for error messages."""
        if self.per_line:
            return f"{self.source}:{self.line + i}"
        return f"{self.source}:{self.line} (word {i + 1})"


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is when something is there but it is not a regular file (a directory, a broken or
    looping symlink, a FIFO or device); None for a regular file or for nothing at all."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symlink loop (it never reaches a file)"
            return f"is a broken symlink: its target {os.readlink(path)} does not exist"
    if path.is_dir():
        return "is a directory, expected a data file"
    if path.exists() and not path.is_file():
        return "is not a regular file (a FIFO, socket or device)"
    return None


def _read_text(path: Path) -> str:
    """The file as text; missing, unreadable, non-UTF-8 or empty files are user errors."""
    what = _not_a_file(path)
    if what is not None:
        raise DataError(f"{path}: {what}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if not text.strip(_LINE_SPACE):  # not str.strip(): \x1f, \x85, \xa0... can be tokens
        raise DataError(f"{path}: file is empty")
    return text


def _columns(line: str) -> list[str]:
    """Tab-separated when the line has a tab (BLURB TSV), else space-separated (CoNLL-2003)."""
    if "\t" in line:
        return [part.strip(" ") for part in line.split("\t") if part.strip(" ")]
    return [part for part in line.split(" ") if part]


def read_conll(path: Path, labeled: bool | None = None) -> list[Sentence]:
    """Sentences of a CoNLL-style file: first column the token, last column the label.

    ``labeled=None`` decides from the first token line (one column -> unlabeled, for prediction);
    ``False`` reads only the tokens of a labeled file. Labels come back normalised to IOB2.
    """
    path = Path(path)
    text = _read_text(path)
    records: list[tuple[list[str], list[str] | None, int]] = []
    words: list[str] = []
    labels: list[str] = []
    start = decided_at = 0
    expect = labeled
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(_LINE_SPACE)
        parts = _columns(line) if line else []
        if not parts or parts[0] == DOCSTART:
            if words:
                records.append((words, labels if expect else None, start))
                words, labels = [], []
            continue
        if expect is None:
            expect, decided_at = len(parts) > 1, number
        _check_columns(path, number, line, parts, expect, labeled, decided_at)
        if not words:
            start = number
        words.append(parts[0])
        if expect:
            labels.append(parts[-1])
    if words:
        records.append((words, labels if expect else None, start))
    if not records:
        raise DataError(f"{path}: no sentences (only blank or {DOCSTART} lines)")
    return _to_sentences(str(path), records, per_line=True)


def _check_columns(path: Path, number: int, line: str, parts: list[str], expect: bool,
                   labeled: bool | None, decided_at: int) -> None:
    if " " in parts[0]:
        raise DataError(f"{path}:{number}: token {parts[0]!r} contains a space; tokens must be single words")
    if expect and len(parts) == 1:
        raise DataError(f"{path}:{number}: one column {line!r} where a token and a label are expected "
                        "(token<TAB>label)")
    if not expect and labeled is None and len(parts) > 1:
        raise DataError(f"{path}:{number}: {len(parts)} columns, but the file reads as unlabeled "
                        f"(one token per line, as on line {decided_at})")


def read_prepared_csv(path: Path) -> list[Sentence]:
    """Sentences of a ``prepare`` CSV: columns ``tokens`` and (when labeled) ``labels``, space-joined."""
    path = Path(path)
    text = _read_text(path)
    rows = _csv_rows(path, text)
    header = next(rows, (1, []))[1]
    if "tokens" not in header:
        raise DataError(f"{path}:1: CSV header {header} has no 'tokens' column")
    tok_col = header.index("tokens")
    lab_col = header.index("labels") if "labels" in header else None
    records: list[tuple[list[str], list[str] | None, int]] = []
    for number, row in rows:
        if not any(cell.strip(_LINE_SPACE) for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: {len(row)} fields, the header has {len(header)}")
        words = [w for w in row[tok_col].split(" ") if w]
        if not words:
            raise DataError(f"{path}:{number}: no tokens")
        labels = None if lab_col is None else [x for x in row[lab_col].split(" ") if x]
        if labels is not None and len(labels) != len(words):
            raise DataError(f"{path}:{number}: {len(words)} tokens but {len(labels)} labels")
        records.append((words, labels, number))
    if not records:
        raise DataError(f"{path}: no sentences")
    return _to_sentences(str(path), records, per_line=False)


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each CSV record; a malformed record is a DataError naming its line."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def write_prepared_csv(path: Path, sentences: Sequence[Sentence]) -> None:
    """The inverse of ``read_prepared_csv`` (lossless: tokens never contain spaces)."""
    labeled = all(s.labels is not None for s in sentences)
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["tokens", "labels"] if labeled else ["tokens"])
        for s in sentences:
            row = [" ".join(s.words)]
            if labeled:
                row.append(" ".join(s.labels or ()))
            writer.writerow(row)


def read_file(path: Path, labeled: bool | None = None) -> list[Sentence]:
    """A prepared CSV or a CoNLL-style file, by suffix."""
    path = Path(path)
    if path.suffix.lower() == PREPARED_SUFFIX:
        return read_prepared_csv(path)
    return read_conll(path, labeled=labeled)


def _candidates(split: str) -> list[str]:
    names = SPLIT_ALIASES.get(split, (split,))
    return [name + suffix for name in names for suffix in (*RAW_SUFFIXES, PREPARED_SUFFIX)]


def find_split_file(data_dir: Path, split: str) -> Path | None:
    """The file holding ``split`` in ``data_dir`` (raw first, then prepared CSV), or None. A candidate name
    that is there but is not a file (a directory, a broken symlink) is an error saying what it is."""
    for name in _candidates(split):
        path = Path(data_dir) / name
        if path.is_file():
            return path
        what = _not_a_file(path)
        if what is not None:
            raise DataError(f"{path}: {what}")
    return None


def load_split(data_dir: Path | None, split: str) -> list[Sentence]:
    """Sentences of ``split`` ("train", "devel"/"dev", "test") from a raw or prepared dataset folder.

    Any other ``split`` is a file path (absolute, relative to the working directory or to
    ``data_dir``) or a file stem in ``data_dir``; ``data_dir`` may itself be a file.
    """
    folder = None if data_dir is None else Path(data_dir).expanduser()
    if split not in SPLIT_ALIASES:
        direct = Path(split).expanduser()
        for candidate in (direct, *(() if folder is None else (folder / direct,))):
            if candidate.is_file() or (candidate.is_symlink() and _not_a_file(candidate) is not None):
                return read_file(candidate)  # a broken or looping symlink: read_file says which
        found = None if folder is None or not folder.is_dir() else find_split_file(folder, split)
        if found is None:
            raise DataError(f"{split}: file not found" + ("" if folder is None else f" (nor in {folder})"))
        return read_file(found)
    if folder is None:
        raise DataError(f"split {split!r}: no data directory given")
    if folder.is_file():
        return read_file(folder)
    if not folder.is_dir():
        what = _not_a_file(folder)
        raise DataError(f"{folder}: {'data directory not found' if what is None else what.split(', expected')[0]}")
    found = find_split_file(folder, split)
    if found is None:
        raise DataError(f"{folder}: no {split} split (looked for {', '.join(_candidates(split))})")
    return read_file(found)


# ---------------------------------------------------------------------------------------------
# Label normalisation (IOB1 / IOB2 / IOBES, typed or untyped -> IOB2)
# ---------------------------------------------------------------------------------------------

_LABEL_RE = re.compile(r"(?:([BIES])(?:-(.+))?|O)\Z")


@functools.lru_cache(maxsize=4096)
def _parse_label(label: str) -> tuple[str, str | None] | None:
    """(prefix, type or None) of a valid label, ``("O", None)`` for outside, None when invalid."""
    match = _LABEL_RE.match(label)
    if match is None:
        return None
    return (match.group(1) or "O", match.group(2))


def _join(prefix: str, kind: str | None) -> str:
    return prefix if kind is None else f"{prefix}-{kind}"


class _Normaliser:
    """Checks one file's labels and rewrites them to IOB2, naming the first bad ``file:line``."""

    def __init__(self, sentences: Sequence[Sentence]) -> None:
        self.sentences = sentences
        self.unique = set().union(*(s.labels or () for s in sentences))

    def _first(self, predicate: Callable[[str], bool]) -> tuple[Sentence, int, str]:
        for s in self.sentences:
            for i, label in enumerate(s.labels or ()):
                if predicate(label):
                    return s, i, label
        raise AssertionError("label not found")  # pragma: no cover - only called for labels present

    def check(self) -> bool:
        """Validate every label; True when the file uses IOBES."""
        bad = [label for label in self.unique if _parse_label(label) is None]
        if bad:
            s, i, label = self._first(lambda x: _parse_label(x) is None)
            raise DataError(f"{s.where(i)}: invalid label {label!r} (expected O, B-TYPE, I-TYPE, E-TYPE, "
                            "S-TYPE or untyped B/I/E/S)")
        parsed = {label: _parse_label(label) for label in self.unique}
        typed = {label for label, p in parsed.items() if p is not None and p[0] != "O" and p[1] is not None}
        untyped = {label for label, p in parsed.items() if p is not None and p[0] != "O" and p[1] is None}
        if typed and untyped:
            s0, i0, first = self._first(lambda x: x in typed or x in untyped)
            other = untyped if first in typed else typed
            s, i, label = self._first(lambda x: x in other)
            raise DataError(f"{s.where(i)}: inconsistent label scheme: label {label!r} is "
                            f"{'untyped' if label in untyped else 'typed'} but {s0.where(i0)} has {first!r}")
        return any(p is not None and p[0] in "ES" for p in parsed.values())

    @staticmethod
    def iob(labels: Sequence[str]) -> tuple[str, ...]:
        """IOB1 or IOB2 -> IOB2: an I- that does not continue an entity of its type begins one."""
        out: list[str] = []
        open_kind: str | None = None
        inside = False
        for label in labels:
            prefix, kind = _parse_label(label)  # type: ignore[misc]
            if prefix == "O":
                out.append(label)
                inside = False
                continue
            starts = prefix == "B" or not inside or kind != open_kind
            out.append(_join("B", kind) if starts and prefix != "B" else label)
            inside, open_kind = True, kind
        return tuple(out)

    @staticmethod
    def iobes(s: Sentence) -> tuple[str, ...]:
        """IOBES -> IOB2, rejecting sequences that break IOBES (the file mixes schemes)."""
        out: list[str] = []
        open_kind: str | None = None
        inside = False
        labels = s.labels or ()
        for i, label in enumerate(labels):
            prefix, kind = _parse_label(label)  # type: ignore[misc]
            continues = prefix in "IE" and inside and kind == open_kind
            if inside and not continues:
                _iobes_error(s, i, f"expected I-/E- continuing {labels[i - 1]!r}")
            if prefix in "IE" and not inside:
                _iobes_error(s, i, "an entity must start with B- or S-")
            out.append(_join("B" if prefix in "BS" else "I", kind) if prefix != "O" else label)
            inside, open_kind = prefix in "BI", kind
        if inside:
            _iobes_error(s, len(labels) - 1, "the entity is not closed by E-")
        return tuple(out)


def _iobes_error(s: Sentence, i: int, reason: str) -> None:
    label = (s.labels or ())[i]
    raise DataError(f"{s.where(i)}: inconsistent label scheme: label {label!r} breaks IOBES, which this file "
                    f"uses (E-/S- labels seen): {reason}")


def _to_sentences(source: str, records: list[tuple[list[str], list[str] | None, int]],
                  per_line: bool) -> list[Sentence]:
    raw = [Sentence(tuple(w), None if lab is None else tuple(lab), source, line, per_line)
           for w, lab, line in records]
    if raw[0].labels is None:
        return raw
    normaliser = _Normaliser(raw)
    if normaliser.check():
        return [Sentence(s.words, _Normaliser.iobes(s), source, s.line, per_line) for s in raw]
    return [Sentence(s.words, _Normaliser.iob(s.labels or ()), source, s.line, per_line) for s in raw]


def strip_type(label: str) -> str:
    """IOB2 ``B-Chemical`` -> ``B`` (the seed scheme's untyped labels)."""
    return label[0]


# ---------------------------------------------------------------------------------------------
# Label map
# ---------------------------------------------------------------------------------------------


class LabelMap:
    """The label vocabulary: model class ``i`` is ``labels[i]``. Saved as ``label2id.json``."""

    def __init__(self, labels: Iterable[str], source: str | None = None) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.source = source
        if not self.labels:
            raise DataError(f"{source or 'label map'}: no labels")
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"{source or 'label map'}: duplicate labels in {list(self.labels)}")
        self.label2id: dict[str, int] = {label: i for i, label in enumerate(self.labels)}
        self.id2label: dict[int, str] = dict(enumerate(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.labels == self.labels

    def __hash__(self) -> int:
        return hash(self.labels)

    def __repr__(self) -> str:
        return f"LabelMap({list(self.labels)})"

    @property
    def is_seed(self) -> bool:
        return self.labels == SEED_LABELS

    @classmethod
    def seed(cls) -> LabelMap:
        return cls(SEED_LABELS)

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sentence], scheme: str = "typed") -> LabelMap:
        """``typed``: sorted labels seen (always with ``O``); ``seed``: the seed's fixed vocabulary."""
        _check_scheme(scheme)
        if scheme == "seed":
            return cls.seed()
        unlabeled = next((s for s in sentences if s.labels is None), None)
        if unlabeled is not None or not sentences:
            where = unlabeled.source if unlabeled else "no sentences"
            raise DataError(f"{where}: cannot build a label map from unlabeled data")
        seen = set().union(*(s.labels or () for s in sentences))
        return cls(sorted(seen | {"O"}))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.label2id, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LabelMap:
        """Read ``{"label": id}`` (ids 0..n-1) or a JSON list of labels in id order."""
        path = Path(path)
        data = parse_json(_read_text(path), path, DataError)  # a duplicate key names its line
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return cls(data, source=str(path))
        if not isinstance(data, dict) or not all(type(v) is int for v in data.values()):  # true is no id
            raise DataError(f"{path}: expected a JSON object {{label: id}} or a list of labels")
        if sorted(data.values()) != list(range(len(data))):
            raise DataError(f"{path}: label ids must be 0..{len(data) - 1}, got {sorted(data.values())}")
        return cls(sorted(data, key=data.__getitem__), source=str(path))


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r} (valid: {', '.join(SCHEMES)})")


# ---------------------------------------------------------------------------------------------
# WordPiece
# ---------------------------------------------------------------------------------------------


def _read_vocab(path: Path) -> dict[str, int]:
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token.rstrip("\r"): i for i, token in enumerate(lines)}
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"{path}: not a BERT WordPiece vocabulary (no {', '.join(missing)})")
    return vocab


class WordPieceEncoder:
    """BERT WordPiece on pre-split words, as Hugging Face's BertTokenizer does it.

    Each distinct word is tokenized once (words repeat a lot in corpora) and its pieces are cached,
    so a whole corpus costs one ``encode_batch`` over its vocabulary plus numpy gathers.
    """

    def __init__(self, vocab_file: Path, do_lower_case: bool = True, max_chars_per_word: int = 100) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        self.vocab_file = Path(vocab_file)
        self.do_lower_case = do_lower_case
        vocab = _read_vocab(self.vocab_file)
        self.vocab_size = max(vocab.values()) + 1
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (vocab[t] for t in SPECIAL_TOKENS)
        wordpiece = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word)
        tokenizer = Tokenizer(wordpiece)
        # strip_accents=None follows lowercase, exactly as BertTokenizer's default.
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._tokenizer = tokenizer
        self._slot: dict[str, int] = {}
        self._starts = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pieces = np.zeros(0, dtype=np.int32)

    def _learn(self, words: list[str]) -> None:
        """Tokenize words not seen before and append their pieces to the cache."""
        chunks = [words[i : i + _ENCODE_CHUNK] for i in range(0, len(words), _ENCODE_CHUNK)]
        encodings = self._tokenizer.encode_batch(chunks, is_pretokenized=True, add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        owners = [np.asarray(e.word_ids, dtype=np.int64) + k * _ENCODE_CHUNK for k, e in enumerate(encodings)]
        ids_flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        owner_flat = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        counts = np.bincount(owner_flat, minlength=len(words)).astype(np.int64)
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # words the normaliser erases entirely (control chars...) become [UNK]
            ids_flat = np.insert(ids_flat, np.searchsorted(owner_flat, empty), self.unk_id).astype(np.int32)
            counts[empty] = 1
        base = len(self._pieces)
        starts = base + np.cumsum(counts) - counts
        for offset, word in enumerate(words):
            self._slot[word] = len(self._starts) + offset
        self._starts = np.concatenate([self._starts, starts])
        self._counts = np.concatenate([self._counts, counts])
        self._pieces = np.concatenate([self._pieces, ids_flat])

    def encode_words(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Pieces of ``words`` back to back (int32) and the number of pieces of each word (>= 1)."""
        slot = self._slot
        new = list(dict.fromkeys(w for w in words if w not in slot))
        if new:
            self._learn(new)
        slots = np.fromiter((slot[w] for w in words), dtype=np.int64, count=len(words))
        counts = self._counts[slots]
        return self._pieces[_ranges(self._starts[slots], counts)], counts

    def tokenize(self, words: Sequence[str]) -> list[list[str]]:
        """The pieces of each word as strings (for inspection and tests)."""
        pieces, counts = self.encode_words(words)
        tokens = [self._tokenizer.id_to_token(int(i)) or "[UNK]" for i in pieces]
        bounds = np.cumsum(counts)
        return [tokens[b - c : b] for b, c in zip(bounds.tolist(), counts.tolist(), strict=True)]


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shifts + np.arange(total, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------


def plan_windows(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Cut one sentence into ``(first_word, num_words)`` windows of whole words, <= ``budget`` pieces.

    Greedy and order-preserving; a word longer than ``budget`` gets a window of its own (and is
    truncated to its first ``budget`` pieces by the caller).
    """
    windows: list[tuple[int, int]] = []
    start = used = 0
    for i, count in enumerate(counts):
        if used and used + count > budget:
            windows.append((start, i - start))
            start, used = i, 0
        used += int(count)
    windows.append((start, len(counts) - start))
    return windows


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


class TokenClsDataset(Dataset):
    """Rows (windows) of WordPiece features, stored flat; one prediction per word on its first piece.

    Per row ``r``: ``lengths[r]`` positions starting at ``row_offsets[r]`` in ``flat_ids`` /
    ``flat_labels``; it covers words ``row_first_word[r] .. + row_num_words[r]`` of sentence
    ``row_sentence[r]``. Per word (all sentences back to back): ``word_position`` is the flat
    position of its first piece.
    """

    def __init__(self, sentences: Sequence[Sentence], encoder: WordPieceEncoder, label_map: LabelMap,
                 max_len: int, scheme: str = "typed") -> None:
        _check_scheme(scheme)
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
        _check_label_map(label_map, scheme)
        word_label_ids = self._word_label_ids() if self.labeled else None
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

    def _build(self, encoder: WordPieceEncoder, word_label_ids: np.ndarray | None) -> None:
        sizes = np.fromiter((len(s.words) for s in self.sentences), dtype=np.int64, count=len(self.sentences))
        if (sizes == 0).any():
            raise ValueError(f"sentence {int(np.argmax(sizes == 0))} has no words")
        self.word_offsets = np.concatenate([[0], np.cumsum(sizes)])
        pieces, counts = encoder.encode_words([w for s in self.sentences for w in s.words])
        budget = self.max_len - 2
        self._plan_rows(counts, budget)
        kept = np.minimum(counts, budget)
        self.num_truncated_words = int((counts > budget).sum())
        self.num_words = int(sizes.sum())
        self.num_subwords = int(counts.sum())

        word_row = np.repeat(np.arange(len(self.row_sentence), dtype=np.int64), self.row_num_words)
        before = np.cumsum(kept) - kept  # kept pieces of all earlier words
        piece_row = np.repeat(word_row, kept)
        pieces_per_row = np.bincount(word_row, weights=kept, minlength=len(self.row_num_words))
        self.lengths = pieces_per_row.astype(np.int64) + 2
        self.row_offsets = np.cumsum(self.lengths) - self.lengths
        self.word_position = before + 1 + 2 * word_row  # each earlier row adds [CLS] and [SEP]
        piece_starts = np.cumsum(counts) - counts
        total = int(self.lengths.sum())

        ids = np.empty(total, dtype=np.int32)
        ids[self.row_offsets] = encoder.cls_id
        ids[self.row_offsets + self.lengths - 1] = encoder.sep_id
        ids[np.arange(len(piece_row)) + 1 + 2 * piece_row] = pieces[_ranges(piece_starts, kept)]
        self.flat_ids = ids
        self.flat_labels = self._labels(total, word_label_ids)
        self.row_first_positions = self.word_position - self.row_offsets[word_row]
        if not self.labeled:
            self.loss_tokens = np.zeros(len(self.lengths), dtype=np.int64)
        elif self.scheme == "seed":
            self.loss_tokens = self.lengths.copy()
        else:
            self.loss_tokens = self.row_num_words.astype(np.int64)

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

    def _labels(self, total: int, word_label_ids: np.ndarray | None) -> np.ndarray:
        if self.scheme == "typed":
            labels = np.full(total, IGNORE_INDEX, dtype=np.int32)
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
        return (f"{len(self.sentences)} sentences, {self.num_words} words -> {len(self)} windows of <= "
                f"{self.max_len} subwords ({self.num_split_sentences} sentences split, "
                f"{self.num_truncated_words} words truncated)")

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
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int32)),
            "token_type_ids": torch.zeros((len(rows), width), dtype=torch.int32),
            "labels": torch.from_numpy(labels),
            "index": torch.from_numpy(rows.copy()),
        }

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
        return self.flat_labels[keep].astype(np.int64), flat[keep]

    def _require_labels(self) -> None:
        if not self.labeled:
            source = next(s.source for s in self.sentences if s.labels is None)
            raise DataError(f"{source}: has no labels to score against")


def _check_label_map(label_map: LabelMap, scheme: str) -> None:
    where = label_map.source or "label map"
    if scheme == "seed" and not label_map.is_seed:
        raise DataError(f"{where}: label_scheme 'seed' needs the labels {list(SEED_LABELS)}, "
                        f"this map has {list(label_map.labels)}")
    if scheme == "typed":
        bad = [x for x in label_map.labels if (_parse_label(x) or ("?",))[0] not in "BIO"]
        if bad:
            raise DataError(f"{where}: label {bad[0]!r} is not an IOB2 label; label_scheme 'typed' needs "
                            "labels like B-TYPE, I-TYPE, O (use label_scheme: seed for the seed's map)")
