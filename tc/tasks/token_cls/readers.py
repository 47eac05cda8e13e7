"""Reading token_cls data files: CoNLL/TSV (token per line), prepared CSVs, and a dataset folder's splits.

``load_split`` reads a split ("train", "devel"/"dev", "test", or a file) of a raw or prepared dataset
folder into ``Sentence`` objects with IOB2 labels (``labels.normalise``). Document formats (PubTator,
BioC, BRAT, JSONL spans) are read by ``tc.tasks.token_cls.documents``; ``sources`` picks between them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from tc.core.errors import DataError
from tc.core.fs import atomic_writer
from tc.tasks.token_cls.labels import normalise
from tc.tasks.token_cls.sentence import LINE_SPACE, Sentence, read_text
from tc.tasks.token_cls.textio import not_a_file

__all__ = ["DOCSTART", "PREPARED_SUFFIX", "RAW_SUFFIXES", "SPLIT_ALIASES", "Sentence", "find_split_file",
           "load_split", "read_conll", "read_file", "read_prepared_csv", "write_prepared_csv"]

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


def _columns(line: str) -> list[str]:
    """Tab-separated when the line has a tab (BLURB TSV), else space-separated (CoNLL-2003)."""
    if "\t" in line:
        return [part.strip(" ") for part in line.split("\t") if part.strip(" ")]
    return [part for part in line.split(" ") if part]


def read_conll(path: Path, labeled: bool | None = None) -> list[Sentence]:
    """Sentences of a CoNLL-style file: first column the token, last column the label.

    ``-DOCSTART-`` lines (CoNLL-2003's document separator) end a sentence and start a document: with
    any of them in the file, each sentence's ``doc_index`` counts those before it, so document context
    (``context_tokens``) never crosses them; without, the file is one document.

    ``labeled=None`` decides from the first token line (one column -> unlabeled, for prediction);
    ``False`` reads only the tokens of a labeled file. Labels come back normalised to IOB2.
    """
    path = Path(path)
    text = read_text(path)
    records: list[tuple[list[str], list[str] | None, int]] = []
    documents: list[int] = []  # per record: how many -DOCSTART- lines came before it
    words: list[str] = []
    labels: list[str] = []
    start = decided_at = doc_starts = 0
    expect = labeled
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(LINE_SPACE)
        parts = _columns(line) if line else []
        if not parts or parts[0] == DOCSTART:
            if words:
                records.append((words, labels if expect else None, start))
                documents.append(doc_starts)
                words, labels = [], []
            doc_starts += bool(parts)
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
        documents.append(doc_starts)
    if not records:
        raise DataError(f"{path}: no sentences (only blank or {DOCSTART} lines)")
    return _to_sentences(str(path), records, per_line=True, documents=documents if doc_starts else None)


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
    """Sentences of a ``prepare`` CSV: columns ``tokens`` and (when labeled) ``labels``, space-joined, and
    ``document`` (each row's document index) when the source marked documents."""
    path = Path(path)
    text = read_text(path)
    rows = _csv_rows(path, text)
    header = next(rows, (1, []))[1]
    if "tokens" not in header:
        raise DataError(f"{path}:1: CSV header {header} has no 'tokens' column")
    tok_col = header.index("tokens")
    lab_col = header.index("labels") if "labels" in header else None
    doc_col = header.index("document") if "document" in header else None
    documents: list[int] = []
    records: list[tuple[list[str], list[str] | None, int]] = []
    for number, row in rows:
        if not any(cell.strip(LINE_SPACE) for cell in row):
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
        if doc_col is not None:
            documents.append(_document_cell(path, number, row[doc_col], documents))
    if not records:
        raise DataError(f"{path}: no sentences")
    return _to_sentences(str(path), records, per_line=False, documents=documents if doc_col is not None else None)


def _document_cell(path: Path, number: int, cell: str, before: list[int]) -> int:
    """A row's ``document`` index: an integer, never lower than the row before's (documents are runs)."""
    try:
        index = int(cell)
    except ValueError:
        raise DataError(f"{path}:{number}: document {cell!r} is not an integer") from None
    if index < 0:
        raise DataError(f"{path}:{number}: document {index} is negative")
    if before and index < before[-1]:
        raise DataError(f"{path}:{number}: document {index} after document {before[-1]}; "
                        "rows of one document are consecutive, in increasing order")
    return index


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
    """The inverse of ``read_prepared_csv`` (lossless: tokens never contain spaces). Sentences with
    documents (a CoNLL file's ``-DOCSTART-`` marks) get a ``document`` column, so that document context
    over the prepared split stops where it stopped over the original file."""
    labeled = all(s.labels is not None for s in sentences)
    marked = bool(sentences) and all(s.doc_index is not None for s in sentences)
    with atomic_writer(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["tokens", *(["labels"] if labeled else []), *(["document"] if marked else [])])
        for s in sentences:
            row = [" ".join(s.words)]
            if labeled:
                row.append(" ".join(s.labels or ()))
            if marked:
                row.append(str(s.doc_index))
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
        what = not_a_file(path)
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
            if candidate.is_file() or (candidate.is_symlink() and not_a_file(candidate) is not None):
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
        what = not_a_file(folder)
        raise DataError(f"{folder}: {'data directory not found' if what is None else what.split(', expected')[0]}")
    found = find_split_file(folder, split)
    if found is None:
        raise DataError(f"{folder}: no {split} split (looked for {', '.join(_candidates(split))})")
    return read_file(found)


def _to_sentences(source: str, records: list[tuple[list[str], list[str] | None, int]],
                  per_line: bool, documents: list[int] | None = None) -> list[Sentence]:
    """``documents``: each record's document index (``-DOCSTART-`` lines before it), None when unmarked."""
    docs: list[int | None] = list(documents) if documents is not None else [None] * len(records)
    return normalise([Sentence(tuple(w), None if lab is None else tuple(lab), source, line, per_line, doc)
                      for (w, lab, line), doc in zip(records, docs, strict=True)])
